//! Every scenario of the load generator, at a tiny scale, against the real
//! product (and the bare ceiling), so CI proves the tool works: each run must
//! finish without errors and measure something.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Stack, bare_broadcast};

/// Longest one loadgen run may take here.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs loadgen with `args`, then returns its report, failing with its
/// output and the servers' logs if it did not succeed.
fn loadgen(out: &Path, args: &[&str], logs: impl Fn() -> String) -> Value {
    let log = out.with_extension("log");
    let file = std::fs::File::create(&log).expect("creating the loadgen log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args([
            "--out",
            &out.display().to_string(),
            "--max-runtime",
            "50",
            "--fail-on-errors",
        ])
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("starting loadgen");
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for loadgen") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "loadgen {args:?} took longer than {RUN_LIMIT:?}:\n{}\n{}",
                read(&log),
                logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "loadgen {args:?} failed ({status}):\n{}\n{}",
        read(&log),
        logs()
    );
    let report: Value =
        serde_json::from_str(&read(&out.join("report.json"))).expect("report.json is JSON");
    assert_eq!(
        report["error_total"], 0,
        "errors in {args:?}: {}",
        report["errors"]
    );
    assert!(out.join("report.md").is_file(), "report.md is written");
    report
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

fn number(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report}"))
}

#[test]
fn every_scenario_runs_against_the_product() {
    let stack = Stack::start();
    let dir = stack.dir();
    let target = format!("ws://127.0.0.1:{}/", stack.gateway_port);
    let maildev = format!("http://127.0.0.1:{}", stack.maildev_web_port);
    let accounts = dir.join("accounts.json").display().to_string();
    let common = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        args.extend(
            [
                "--target",
                &target,
                "--maildev",
                &maildev,
                "--accounts-file",
                &accounts,
            ]
            .map(str::to_owned),
        );
        args
    };
    let run = |name: &str, extra: &[&str]| {
        let args = common(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        loadgen(&dir.join(name), &args, || stack.logs())
    };

    // Direct first: it signs up the 20 users the others reuse from the file.
    let direct = run(
        "direct",
        &[
            "direct",
            "--connections",
            "20",
            "--rate",
            "20",
            "--duration",
            "2",
        ],
    );
    assert!(number(&direct, "/counts/delivered") > 0.0);
    assert_eq!(
        direct["counts"]["delivered"],
        direct["counts"]["expected_deliveries"]
    );
    assert!(number(&direct, "/throughput/delivered_per_sec") > 0.0);
    assert!(number(&direct, "/latency_us/delivery/p99") > 0.0);
    assert!(
        dir.join("direct/latency.svg").is_file() && dir.join("direct/throughput.svg").is_file()
    );
    assert!(
        number(&direct, "/cpu/server_seconds") > 0.0,
        "the gateway's CPU is found by its port"
    );

    // Capacity, briefly: three small steps, the overload step and a recovery.
    // The latency limit is generous on purpose: this proves the steps, the
    // replies and the receipts are counted, not how fast a CI machine is.
    let capacity = run(
        "capacity",
        &[
            "direct",
            "--connections",
            "20",
            "--capacity",
            "--rate",
            "5",
            "--step-factor",
            "2",
            "--max-rate",
            "20",
            "--step-secs",
            "2",
            "--recovery-secs",
            "2",
            "--p99-limit-ms",
            "5000",
            "--drain",
            "3",
        ],
    );
    let steps = capacity["capacity"]["steps"]
        .as_array()
        .expect("the steps are reported");
    assert_eq!(
        steps.len(),
        3,
        "5, 10 and 20 msg/s: {}",
        capacity["capacity"]
    );
    assert!(
        number(&capacity, "/capacity/held_rate") > 0.0,
        "a rate was held: {}",
        capacity["capacity"]
    );
    assert_eq!(steps[0]["held"], true);
    assert!(number(&capacity, "/capacity/steps/0/acked") > 0.0);
    let overload = &capacity["capacity"]["overload"];
    assert_eq!(
        number(&capacity, "/capacity/overload/rate"),
        3.0 * number(&capacity, "/capacity/held_rate")
    );
    assert!(number(&capacity, "/capacity/overload/sent") > 0.0);
    assert_eq!(
        overload["lost_acked"], 0,
        "every acknowledged message was delivered: {overload}"
    );
    assert_eq!(
        number(&capacity, "/capacity/overload/acked")
            + number(&capacity, "/capacity/overload/busy"),
        number(&capacity, "/capacity/overload/sent"),
        "every message of the overload step was acknowledged or refused with BUSY: {overload}"
    );
    assert_eq!(
        capacity["capacity"]["recovery"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(capacity.to_string().contains("recovered_after_secs"));

    let fanout = run(
        "fanout",
        &[
            "fanout",
            "--connections",
            "20",
            "--group-size",
            "5",
            "--rate",
            "10",
            "--duration",
            "2",
        ],
    );
    assert_eq!(
        fanout["counts"]["delivered"],
        fanout["counts"]["expected_deliveries"]
    );
    assert!(number(&fanout, "/counts/delivered") >= 4.0 * number(&fanout, "/counts/sent"));
    assert!(number(&fanout, "/cpu/delivered_per_cpu_second") > 0.0);

    let idle = run(
        "idle",
        &[
            "idle",
            "--connections",
            "20",
            "--users",
            "5",
            "--duration",
            "2",
        ],
    );
    assert_eq!(idle["counts"]["connections_opened"], 20);
    assert!(number(&idle, "/memory/rss_after_bytes") > 0.0);

    let storm = run(
        "storm",
        &[
            "storm",
            "--connections",
            "20",
            "--users",
            "5",
            "--duration",
            "1",
        ],
    );
    assert_eq!(storm["counts"]["connections_opened"], 20);
    assert!(number(&storm, "/throughput/connections_per_sec") > 0.0);
    assert!(number(&storm, "/latency_us/login/p50") > 0.0);

    let accounts = run(
        "accounts",
        &[
            "accounts",
            "--connections",
            "4",
            "--concurrency",
            "2",
            "--duration",
            "1",
        ],
    );
    assert_eq!(accounts["counts"]["accounts"], 4);
    assert!(number(&accounts, "/throughput/accounts_per_sec") > 0.0);
    assert!(number(&accounts, "/latency_us/mail_wait/count") == 4.0);
}

#[test]
fn the_bare_ceiling_broadcasts_to_rooms() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (server, port) = bare_broadcast(dir.path());
    let target = format!("ws://127.0.0.1:{port}/");
    let report = loadgen(
        &dir.path().join("fanout"),
        &[
            "fanout",
            "--protocol",
            "bare",
            "--target",
            &target,
            "--connections",
            "20",
            "--group-size",
            "5",
            "--rate",
            "50",
            "--duration",
            "2",
        ],
        || server.log_tail(),
    );
    assert_eq!(
        report["counts"]["delivered"],
        report["counts"]["expected_deliveries"]
    );
    assert!(number(&report, "/counts/delivered") > 0.0);
    assert_eq!(
        report["cpu"]["server_pids"][0],
        server.pid(),
        "the server is found by its port"
    );

    // Capacity without acknowledgements: receipts alone decide a step.
    let capacity = loadgen(
        &dir.path().join("capacity"),
        &[
            "fanout",
            "--protocol",
            "bare",
            "--target",
            &target,
            "--connections",
            "20",
            "--group-size",
            "5",
            "--capacity",
            "--rate",
            "20",
            "--step-factor",
            "2",
            "--max-rate",
            "40",
            "--step-secs",
            "1",
            "--recovery-secs",
            "1",
            "--p99-limit-ms",
            "5000",
        ],
        || server.log_tail(),
    );
    assert_eq!(number(&capacity, "/capacity/held_rate"), 40.0);
    assert_eq!(number(&capacity, "/capacity/overload/rate"), 120.0);
    assert_eq!(
        capacity["capacity"]["overload"]["delivered"],
        capacity["capacity"]["overload"]["expected"]
    );
}
