//! Switchyard's load generator: the same scenarios against this product,
//! comparable servers and a bare broadcast server (the ceiling).
//!
//! Modules, one job each:
//! - [`cli`]: the command line; [`target`]: endpoints and source addresses.
//! - [`dial`]: opening client sockets; [`protocol`]: one module per server protocol.
//! - [`scenario`]: one module per scenario, plus the shared connection fleet.
//! - [`metrics`]: histograms, counters, errors; [`ledger`]: what became of each
//!   message (capacity runs); [`report`] and [`plot`]: the output.
//! - [`procfs`]: server memory and CPU; [`maildev`]: confirmation codes.
//! - [`clock`]: the run's time base; [`progress`]: the progress bar.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

pub mod cli;
pub mod clock;
pub mod dial;
pub mod ledger;
pub mod maildev;
pub mod metrics;
pub mod plot;
pub mod procfs;
pub mod progress;
pub mod protocol;
pub mod report;
pub mod scenario;
pub mod target;

use cli::{Cli, Scenario};
use metrics::{Counters, Metric, Recorder};
use protocol::bare::Bare;
use protocol::centrifugo::Centrifugo;
use protocol::switchyard::Switchyard;
use protocol::{Kind, Protocol};
use report::{Counts, Params, Report, Throughput};
use scenario::{Ctx, Findings, Options};

/// After the hard cap, how long the run may take to wrap up before the
/// process exits regardless.
const WRAP_UP: Duration = Duration::from_secs(60);

/// Runs the scenario the command line asks for and writes its report.
pub async fn run(cli: Cli) -> anyhow::Result<Report> {
    clock::start();
    check(&cli)?;
    let hard_cap = Duration::from_secs_f64(cli.max_runtime.unwrap_or(cli.duration + 600.0));
    let started = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(hard_cap + WRAP_UP).await;
        eprintln!("loadgen: the run exceeded its hard cap of {hard_cap:?}; exiting");
        std::process::exit(3);
    });
    let run_id = cli.run_id.clone().unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!("{}{:03}", now.as_secs(), now.subsec_millis())
    });
    let rate = cli.rate.unwrap_or(cli.scenario.default_rate());
    // --rate paces messages in direct and fanout, and openings or sign-ups otherwise.
    let sends_messages = sends_messages(cli.scenario);
    let options = Options {
        connections: cli.connections,
        rate: if sends_messages { rate } else { 0.0 },
        open_rate: if sends_messages { 0.0 } else { rate },
        duration: Duration::from_secs_f64(cli.duration),
        group_size: cli.group_size,
        users: cli.users,
        concurrency: cli.concurrency,
        drain: Duration::from_secs_f64(cli.drain),
        capacity: cli.capacity.then(|| scenario::capacity::Plan {
            start: rate,
            factor: cli.step_factor,
            increment: cli.step_increment,
            max: cli.max_rate,
            step: Duration::from_secs_f64(cli.step_secs),
            p99_limit: Duration::from_secs_f64(cli.p99_limit_ms / 1000.0),
            overload_factor: cli.overload_factor,
            recovery_factor: cli.recovery_factor,
            recovery: Duration::from_secs_f64(cli.recovery_secs),
        }),
    };
    let dialer = dial::Dialer {
        targets: cli.target.clone(),
        sources: cli.source_ips.0.clone(),
        default_path: cli.protocol.default_path().to_owned(),
        timeout: Duration::from_secs_f64(cli.connect_timeout),
    };
    let servers = server_pids(&cli)?;
    let watched = watched(&cli.watch)?;
    // A capacity run lasts as long as its steps do; its hard cap bounds it.
    let timeline_secs = if cli.capacity {
        hard_cap.as_secs() as usize + 120
    } else {
        (cli.duration + cli.drain) as usize + 120
    };
    let ctx = Ctx {
        options,
        dialer,
        recorder: Arc::new(Recorder::new(timeline_secs)),
        servers,
        watched,
        deadline: started + hard_cap,
    };

    let findings = match cli.protocol {
        Kind::Switchyard => {
            let switchyard = Switchyard::new(
                cli.maildev.clone(),
                cli.password.clone(),
                run_id.clone(),
                cli.accounts_file.clone(),
                cli.signup_concurrency,
            );
            if cli.scenario == Scenario::Accounts {
                scenario::accounts::run(switchyard, &ctx).await?
            } else {
                run_scenario(cli.scenario, switchyard, &ctx).await?
            }
        }
        Kind::Centrifugo => {
            run_scenario(
                cli.scenario,
                Centrifugo::new(cli.centrifugo_secret.clone(), run_id.clone()),
                &ctx,
            )
            .await?
        }
        Kind::Bare => run_scenario(cli.scenario, Bare, &ctx).await?,
    };

    let report = assemble(&cli, &ctx, findings, rate);
    report.write(&cli.out)?;
    plots(&cli, &ctx, &report)?;
    Ok(report)
}

async fn run_scenario<P: Protocol>(
    scenario: Scenario,
    protocol: P,
    ctx: &Ctx,
) -> anyhow::Result<Findings> {
    match scenario {
        Scenario::Idle => scenario::idle::run(protocol, ctx).await,
        Scenario::Storm => scenario::storm::run(protocol, ctx).await,
        Scenario::Direct => scenario::direct::run(protocol, ctx).await,
        Scenario::Fanout => scenario::fanout::run(protocol, ctx).await,
        Scenario::Accounts => bail!("the accounts scenario exists only for --protocol switchyard"),
    }
}

fn sends_messages(scenario: Scenario) -> bool {
    matches!(scenario, Scenario::Direct | Scenario::Fanout)
}

fn check(cli: &Cli) -> anyhow::Result<()> {
    if cli.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if !(cli.duration > 0.0 && cli.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if cli.rate.is_some_and(|r| !(r >= 0.0 && r.is_finite())) {
        bail!("--rate must be a non-negative number");
    }
    if cli.capacity {
        if !sends_messages(cli.scenario) {
            bail!("--capacity is for the direct and fanout scenarios");
        }
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !(positive(cli.rate.unwrap_or(cli.scenario.default_rate()))
            && positive(cli.step_secs)
            && positive(cli.p99_limit_ms)
            && positive(cli.overload_factor)
            && positive(cli.recovery_factor)
            && cli.recovery_secs >= 0.0
            && cli.max_rate >= cli.rate.unwrap_or(cli.scenario.default_rate()))
        {
            bail!(
                "--capacity needs a positive --rate, --step-secs, --p99-limit-ms, --overload-factor \
                 and --recovery-factor, and --max-rate at least --rate"
            );
        }
        if !(cli.step_factor >= 1.0 && cli.step_increment >= 0.0)
            || (cli.step_factor == 1.0 && cli.step_increment == 0.0)
        {
            bail!(
                "--step-factor must be at least 1 and --step-increment at least 0, and one must raise the rate"
            );
        }
        if cli.max_runtime.is_none() {
            bail!("--capacity needs --max-runtime: its length depends on where it stops");
        }
    }
    let maildev_host = cli
        .maildev
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    if !matches!(maildev_host, "127.0.0.1" | "localhost" | "[::1]") {
        bail!("--maildev must be a loopback http:// URL, e.g. http://127.0.0.1:1080");
    }
    Ok(())
}

/// The servers to measure: given, found by name, or listening on the targets' ports.
fn server_pids(cli: &Cli) -> anyhow::Result<Vec<u32>> {
    if let Some(raw) = &cli.gateway_pids {
        return procfs::parse_pids(raw);
    }
    if let Some(name) = &cli.gateway_name {
        let pids = procfs::pids_named(name);
        if pids.is_empty() {
            bail!("no process is named {name:?}");
        }
        return Ok(pids);
    }
    let mut pids = Vec::new();
    for target in &cli.target {
        match procfs::pids_listening_on(target.addr.port()) {
            Ok(found) => pids.extend(found),
            Err(e) => eprintln!(
                "loadgen: no memory or CPU figures for {}: {e:#}",
                target.addr
            ),
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn watched(raw: &[String]) -> anyhow::Result<Vec<(String, u32)>> {
    raw.iter()
        .filter(|w| !w.is_empty())
        .map(|w| {
            let (name, pid) = w
                .split_once('=')
                .with_context(|| format!("--watch {w:?} must be NAME=PID"))?;
            Ok((
                name.to_owned(),
                pid.parse()
                    .with_context(|| format!("{pid:?} is not a pid"))?,
            ))
        })
        .collect()
}

fn assemble(cli: &Cli, ctx: &Ctx, findings: Findings, rate: f64) -> Report {
    let recorder = &ctx.recorder;
    let c = &recorder.counters;
    let window = findings.window_secs.max(1e-9);
    let opened = Counters::get(&c.opened);
    let sent = Counters::get(&c.sent);
    let delivered = Counters::get(&c.delivered);
    let accounts = Counters::get(&c.accounts);
    let sending = findings
        .cpu
        .as_ref()
        .map_or(window, |cpu| cpu.sending_secs.max(1e-9));
    let mut notes = findings.notes;
    if cli.protocol == Kind::Bare {
        notes.push(
            "bare-broadcast: no bus and no storage; the same WebSocket buffer settings as the gateway; \
             a message goes to every other connection in its room"
                .to_owned(),
        );
    }
    Report {
        scenario: cli.scenario.name().to_owned(),
        protocol: cli.protocol.name().to_owned(),
        targets: cli
            .target
            .iter()
            .map(|t| t.url(cli.protocol.default_path()))
            .collect(),
        started_unix_secs: started_unix_secs(),
        params: Params {
            connections: cli.connections,
            users: cli.users,
            rate,
            duration_secs: cli.duration,
            group_size: cli.group_size,
            concurrency: cli.concurrency,
            source_ips: cli.source_ips.0.len(),
        },
        counts: Counts {
            connections_opened: opened,
            sent,
            expected_deliveries: Counters::get(&c.expected),
            delivered,
            echoes: Counters::get(&c.echoes),
            accounts,
        },
        throughput: Throughput {
            window_secs: findings.window_secs,
            sent_per_sec: sent as f64 / sending,
            delivered_per_sec: delivered as f64 / window,
            connections_per_sec: findings
                .open_secs
                .map_or(0.0, |secs| opened as f64 / secs.max(1e-9)),
            accounts_per_sec: accounts as f64 / window,
        },
        latency_us: recorder.percentiles(),
        errors: recorder.errors(),
        error_total: recorder.error_count(),
        memory: findings.memory,
        cpu: findings.cpu,
        timeline: recorder.timeline(findings.timeline_secs),
        notes,
        capacity: findings.capacity,
    }
}

fn plots(cli: &Cli, ctx: &Ctx, report: &Report) -> anyhow::Result<()> {
    let title = |what: &str| format!("{what}: {} {}", report.protocol, report.scenario);
    let (metric, what) = match cli.scenario {
        Scenario::Direct | Scenario::Fanout => (Metric::Delivery, "delivery latency"),
        Scenario::Idle | Scenario::Storm => (Metric::Open, "connect + login latency"),
        Scenario::Accounts => (Metric::SignUp, "sign-up latency"),
    };
    let histogram = ctx.recorder.histogram(metric);
    if !histogram.is_empty() {
        plot::latency_curve(&histogram, &title(what), &cli.out.join("latency.svg"))?;
    }
    if !report.timeline.is_empty() {
        plot::throughput(
            &report.timeline,
            &title("throughput"),
            &cli.out.join("throughput.svg"),
        )?;
    }
    Ok(())
}

/// When the run started, in seconds since 1970.
fn started_unix_secs() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now.saturating_sub(clock::now_us() / 1_000_000)
}

/// Prints the short summary a person running the tool sees at the end.
pub fn print_summary(report: &Report, out: &Path) {
    eprintln!("\n{}", report.markdown());
    eprintln!("loadgen: report written to {}", out.display());
}
