//! `down`, `status`, `print-env`, `pid` and `stop`: what the pid files say
//! about a deployment started by `up`.

use std::net::TcpStream;
use std::time::Duration;

use anyhow::bail;
use switchyard_launcher::detached::stop_all;
use switchyard_launcher::infra::{FERRETDB, MAILDEV, REDIS, loopback};

use crate::plan::{External, FRONT_DOOR, INFRA, Plan};
use crate::say;

/// Stops everything with a pid file: the front door first, so it never hands
/// a connection to a gateway that is gone; then the services, while the bus
/// and the database they shut down against are still there; then those.
pub fn down(plan: &Plan<'_>) {
    let pids = plan.pids();
    if !pids.exists() {
        say("nothing to stop");
        return;
    }
    let grace = Duration::from_secs(plan.layout.stop_timeout);
    let mut services = plan.services();
    // Anything else with a pid file here, e.g. started with other options.
    for name in recorded(plan) {
        if name != FRONT_DOOR && !INFRA.contains(&name.as_str()) && !services.contains(&name) {
            services.push(name);
        }
    }
    services.reverse();
    let infra: Vec<String> = INFRA.iter().rev().map(|n| (*n).to_owned()).collect();
    let mut stopped = |name: &str| say(&format!("stopped {name}"));
    for group in [vec![FRONT_DOOR.to_owned()], services, infra] {
        stop_all(&pids, &group, grace, &mut stopped);
    }
    for name in INFRA {
        let _ = std::fs::remove_file(plan.external_marker(name));
    }
    say("everything is stopped");
}

/// Stops the named components.
pub fn stop(plan: &Plan<'_>, names: &[String]) {
    let grace = Duration::from_secs(plan.layout.stop_timeout);
    stop_all(&plan.pids(), names, grace, &mut |name| {
        say(&format!("stopped {name}"));
    });
}

/// Prints the pid of each named component.
pub fn pid(plan: &Plan<'_>, names: &[String]) -> anyhow::Result<()> {
    let pids = plan.pids();
    for name in names {
        match pids.running(name) {
            Some(pid) => println!("{pid}"),
            None => bail!("{name} is not running"),
        }
    }
    Ok(())
}

pub fn status(plan: &Plan<'_>) {
    let pids = plan.pids();
    let layout = plan.layout;
    let mut names: Vec<String> = INFRA.iter().map(|n| (*n).to_owned()).collect();
    names.extend(plan.services());
    names.push(FRONT_DOOR.to_owned());
    for name in names {
        let (port, mut place) = match name.as_str() {
            REDIS => (
                Some(layout.redis_port),
                format!("127.0.0.1:{}", layout.redis_port),
            ),
            FERRETDB => (
                Some(layout.ferretdb_port),
                format!("127.0.0.1:{}", layout.ferretdb_port),
            ),
            MAILDEV => (
                Some(layout.smtp_port),
                format!(
                    "127.0.0.1:{} (SMTP), http://127.0.0.1:{}",
                    layout.smtp_port, layout.maildev_web_port
                ),
            ),
            FRONT_DOOR => (
                Some(layout.front_door_port),
                format!(
                    "ws://127.0.0.1:{}/ (front door to the gateways)",
                    layout.front_door_port
                ),
            ),
            other => match other
                .strip_prefix("gateway-")
                .and_then(|p| p.parse::<u16>().ok())
            {
                Some(port) => (Some(port), format!("ws://127.0.0.1:{port}/")),
                None => match plan.files_port_of(other) {
                    Some(port) => (
                        Some(port),
                        format!("http://127.0.0.1:{port}/files (and a Redis stream consumer)"),
                    ),
                    None => (None, "- (Redis stream consumer)".to_owned()),
                },
            },
        };
        let state = if let Some(pid) = pids.running(&name) {
            format!("running (pid {pid})")
        } else if plan.external_marker(&name).exists() {
            place = External::variable(&name).to_owned();
            "external".to_owned()
        } else if port.is_some_and(listening) {
            "not started here (port in use)".to_owned()
        } else {
            "stopped".to_owned()
        };
        println!("{name:<16} {state:<32} {place}");
    }
}

/// The settings that point a service at the infrastructure this layout
/// starts; nothing for what the environment already names.
pub fn print_env(plan: &Plan<'_>) {
    for (key, value) in plan.wiring(&External::from_env()).env() {
        println!("{key}={value}");
    }
}

/// The names of every pid file.
fn recorded(plan: &Plan<'_>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(plan.layout.dir.join("pids")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".pid")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&loopback(port), Duration::from_secs(2)).is_ok()
}
