//! `up`: starts what is not running yet, in dependency order, and waits for
//! each part to be ready before the next needs it. Running it again starts
//! only what is missing.

use std::process::Child;
use std::time::Duration;

use anyhow::{Context, bail};
use switchyard_launcher::front_door::{self, FrontDoorKind};
use switchyard_launcher::infra::{self, FERRETDB, Launch, REDIS, loopback};
use switchyard_launcher::probe::{NotReady, port_open, wait_until_ready};
use switchyard_launcher::services::{self, repository_root};
use switchyard_launcher::spec::log_since_start;
use switchyard_launcher::{detached, locate};

use crate::cli::{Part, Up};
use crate::plan::{External, FRONT_DOOR, INFRA, Plan};
use crate::say;

/// Log lines quoted when a component fails to start.
const TAIL_LINES: usize = 25;

/// A component this run started, with its process kept to see it exit.
struct Started {
    launch: Launch,
    child: Child,
}

pub async fn up(plan: &Plan<'_>, opts: &Up) -> anyhow::Result<()> {
    let wanted = |part: Part| opts.only.is_empty() || opts.only.contains(&part);
    let layout = plan.layout;
    let pids = plan.pids();
    let external = External::from_env();
    record_external(plan, &external)?;
    let port_timeout = Duration::from_secs(opts.port_timeout);
    let ready_timeout = Duration::from_secs(opts.ready_timeout);

    for (name, part) in INFRA
        .into_iter()
        .zip([Part::Redis, Part::Ferretdb, Part::Maildev])
    {
        if !wanted(part) {
            continue;
        }
        if external.has(name) {
            say(&format!(
                "{name}: using the server at {}",
                External::variable(name)
            ));
            continue;
        }
        let port = plan.infra_port(name);
        if let Some(pid) = pids.running(name) {
            say(&format!("{name} already running (pid {pid})"));
            continue;
        }
        if port_open(loopback(port)).await {
            say(&format!(
                "127.0.0.1:{port} is already taken by a process this command did not start; using it as {name}"
            ));
            pids.forget(name);
            continue;
        }
        let at = plan.placement(name)?;
        let launch = match name {
            REDIS => infra::redis(&at, port, opts.redis_max_clients),
            FERRETDB => infra::ferretdb(&at, port),
            _ => infra::maildev(&at, port, layout.maildev_web_port),
        };
        say(&format!("starting {name} on 127.0.0.1:{port}"));
        let mut started = start(&launch, &pids)?;
        ready(&mut started, port_timeout).await?;
    }

    let root = opts.root.clone().unwrap_or_else(repository_root);
    let bin_dir = opts.bin_dir.clone().unwrap_or_else(locate::service_bin_dir);
    let wiring = plan.wiring(&external);
    let mut starting = Vec::new();
    if wanted(Part::Gateways) {
        for &port in &layout.gateway_ports {
            if pids.running(&Plan::gateway_name(port)).is_none() && port_open(loopback(port)).await
            {
                bail!(
                    "127.0.0.1:{port} is taken by a process this command did not start; free it and start again"
                );
            }
        }
        let origins = services::local_allowed_origins(&root).map_err(anyhow::Error::msg)?;
        for &port in &layout.gateway_ports {
            let name = Plan::gateway_name(port);
            let at = plan.placement(&name)?;
            let mut launch = services::gateway(
                &at,
                &bin_dir,
                &wiring,
                &name,
                &format!("gw-{port}"),
                port,
                &origins,
            );
            if wanted(Part::FrontDoor) {
                // The front door passes the client's address in X-Real-IP. The gateways also
                // listen on loopback for direct use, so on this machine a direct client could
                // name any address there.
                launch.spec.env.push((
                    "SWITCHYARD__GATEWAY__CLIENT_ADDR_HEADER".into(),
                    "X-Real-IP".into(),
                ));
            }
            starting.extend(start_service(plan, launch, opts)?);
        }
    }
    if wanted(Part::Backends) {
        let mut files_ports = plan.files_ports().into_iter();
        for (binary, name) in plan.backends() {
            let at = plan.placement(&name)?;
            let files_port = (binary == services::CHAT)
                .then(|| files_ports.next())
                .flatten();
            let launch = match files_port {
                Some(port) => services::chat(&at, &bin_dir, &wiring, &name, port),
                None => services::backend(&at, &bin_dir, &wiring, binary, &name),
            };
            starting.extend(start_service(plan, launch, opts)?);
        }
    }
    for started in &mut starting {
        ready(started, ready_timeout).await?;
    }

    if wanted(Part::FrontDoor) {
        start_front_door(plan, &root, ready_timeout).await?;
    }
    Ok(())
}

/// Starts a service unless it already runs; its readiness is waited for
/// with the others'.
fn start_service(
    plan: &Plan<'_>,
    mut launch: Launch,
    opts: &Up,
) -> anyhow::Result<Option<Started>> {
    let name = launch.spec.name.clone();
    let pids = plan.pids();
    if let Some(pid) = pids.running(&name) {
        say(&format!(
            "{name} already running (pid {pid}); './stack down && ./stack up' restarts it on a fresh build"
        ));
        return Ok(None);
    }
    launch.spec.env.extend(opts.env.iter().cloned());
    say(&format!("starting {name}"));
    start(&launch, &pids).map(Some)
}

async fn start_front_door(
    plan: &Plan<'_>,
    root: &std::path::Path,
    ready_timeout: Duration,
) -> anyhow::Result<()> {
    let layout = plan.layout;
    let pids = plan.pids();
    let port = layout.front_door_port;
    if let Some(pid) = pids.running(FRONT_DOOR) {
        say(&format!("{FRONT_DOOR} already running (pid {pid})"));
        return Ok(());
    }
    if port_open(loopback(port)).await {
        bail!(
            "127.0.0.1:{port} is taken by a process this command did not start; free it and start again"
        );
    }
    let kind = FrontDoorKind::Nginx;
    let program = front_door::program(kind).map_err(anyhow::Error::msg)?;
    let at = plan.placement(FRONT_DOOR)?;
    let gateways: Vec<_> = layout.gateway_ports.iter().map(|&p| loopback(p)).collect();
    let files: Vec<_> = plan.files_ports().into_iter().map(loopback).collect();
    let config = front_door::write_config(root, kind, &at.dir, port, &gateways, &files)
        .map_err(anyhow::Error::msg)?;
    front_door::check_config(kind, &program, &at.dir, &config).map_err(anyhow::Error::msg)?;
    let list: Vec<String> = gateways.iter().map(ToString::to_string).collect();
    say(&format!(
        "starting {FRONT_DOOR} on 127.0.0.1:{port} (gateways {})",
        list.join(" ")
    ));
    let launch = front_door::front_door(
        kind,
        program,
        FRONT_DOOR,
        &at.dir,
        &config,
        at.log_path(FRONT_DOOR),
        port,
    );
    let mut started = start(&launch, &pids)?;
    ready(&mut started, ready_timeout).await
}

fn start(launch: &Launch, pids: &detached::PidFiles) -> anyhow::Result<Started> {
    let child = detached::spawn(&launch.spec, pids)?;
    Ok(Started {
        launch: launch.clone(),
        child,
    })
}

/// Waits for a started component; on failure, says why with the end of its log.
async fn ready(started: &mut Started, limit: Duration) -> anyhow::Result<()> {
    let Started { launch, child } = started;
    let mut exited = || match child.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        Ok(None) => None,
        Err(e) => Some(format!("unknown: {e}")),
    };
    let outcome = wait_until_ready(&launch.probe, limit, &mut exited).await;
    let what = match outcome {
        Ok(()) => return Ok(()),
        Err(NotReady::Exited(status)) => {
            format!("exited ({status}) before it was ready ({})", launch.probe)
        }
        Err(NotReady::TimedOut(last)) => format!(
            "was not ready within {}s ({}); last error: {last}",
            limit.as_secs(),
            launch.probe
        ),
    };
    let log = &launch.spec.log_path;
    let tail: String = log_since_start(log, TAIL_LINES)
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    bail!(
        "{} {what}\nlast lines of {}:\n{tail}whatever did start is still running; `./stack status` shows it, `./stack down` stops it",
        launch.spec.name,
        log.display()
    )
}

/// Records which infrastructure is external, for `status`.
fn record_external(plan: &Plan<'_>, external: &External) -> anyhow::Result<()> {
    std::fs::create_dir_all(&plan.layout.dir)
        .with_context(|| format!("creating {}", plan.layout.dir.display()))?;
    for name in INFRA {
        let marker = plan.external_marker(name);
        if external.has(name) {
            std::fs::write(&marker, "").with_context(|| format!("writing {}", marker.display()))?;
        } else {
            let _ = std::fs::remove_file(&marker);
        }
    }
    Ok(())
}
