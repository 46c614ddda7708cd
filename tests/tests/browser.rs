//! The web client in a real browser: `tests/browser/run.mjs` drives headless
//! Chromium (Debian's `chromium` package) with playwright-core through three
//! people on two gateways, each gateway behind its own front door. This test
//! runs the stack, starts the script, and stops and starts a gateway when the
//! script asks (`CONTROL stop-gateway` / `CONTROL start-gateway` on its
//! output, answered with a line on its input).
//!
//! It needs `chromium` (or `SWITCHYARD_CHROMIUM`) and the script's packages
//! (`npm ci` in `tests/browser/`); `./stack install` installs both. Set
//! `SWITCHYARD_SCREENSHOTS` to a directory (relative to the repository, e.g.
//! `docs`) to keep the screenshots it takes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use switchyard_tests::front_door::{FrontDoor, FrontDoorKind};
use switchyard_tests::ports::free_port;
use switchyard_tests::{GATEWAY, Stack};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The whole scenario, the gateway restart included.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("SWITCHYARD_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "the browser test needs Chromium at {} (Debian's `chromium` package; `./stack install` \
         installs it, or set SWITCHYARD_CHROMIUM)",
        path.display()
    );
    path
}

#[tokio::test]
async fn three_people_use_the_web_client_through_a_gateway_restart() {
    let chromium = chromium();
    let dir = browser_dir();
    assert!(
        dir.join("node_modules").join("playwright-core").is_dir(),
        "the browser test's packages are missing: run `./stack install` (or `npm ci` in {})",
        dir.display()
    );

    // The gateways admit a browser page only from an origin they know: the
    // two front doors' addresses, chosen before anything starts.
    let ports = [free_port(), free_port()];
    let origins = ports.map(|p| format!("http://127.0.0.1:{p}")).join(",");
    let mut stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .generous_limits()
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ALLOWED_ORIGINS", origins)
        .start()
        .await;
    let door_a = FrontDoor::start_at(FrontDoorKind::Nginx, &stack, &[0], ports[0]).await;
    let door_b = FrontDoor::start_at(FrontDoorKind::Nginx, &stack, &[1], ports[1]).await;

    let mut command = Command::new("node");
    command
        .arg("run.mjs")
        .current_dir(&dir)
        .env("SWITCHYARD_WEB_A", format!("{}/", door_a.http()))
        .env("SWITCHYARD_WEB_B", format!("{}/", door_b.http()))
        .env("SWITCHYARD_MAILDEV", stack.maildev().web_url())
        .env("SWITCHYARD_CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(shots) = std::env::var_os("SWITCHYARD_SCREENSHOTS") {
        // Relative to the repository, whatever directory the test runs in.
        let root = dir
            .parent()
            .and_then(Path::parent)
            .expect("tests/browser's root");
        command.env("SWITCHYARD_SCREENSHOTS", root.join(shots));
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting node (Node.js is needed for this test): {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();

    let mut transcript = String::new();
    let scenario = async {
        while let Some(line) = lines
            .next_line()
            .await
            .expect("reading the script's output")
        {
            println!("browser: {line}");
            transcript.push_str(&line);
            transcript.push('\n');
            match line.strip_prefix("CONTROL ") {
                Some("stop-gateway") => stack.stop_service(GATEWAY, 0).await,
                Some("start-gateway") => stack.start_service(GATEWAY, 0).await,
                Some(other) => panic!("the script asked for {other:?}"),
                None => continue,
            }
            input
                .write_all(b"done\n")
                .await
                .expect("answering the script");
        }
        child.wait().await.expect("the script's exit status")
    };
    let status = tokio::time::timeout(SCENARIO_TIMEOUT, scenario)
        .await
        .unwrap_or_else(|_| panic!("the browser scenario took over {SCENARIO_TIMEOUT:?}"));
    assert!(
        status.success(),
        "the browser scenario failed ({status}):\n{transcript}"
    );
}
