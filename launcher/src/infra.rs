//! How the infrastructure a deployment needs is launched: Redis (the bus),
//! FerretDB on SQLite (the MongoDB-compatible store) and MailDev (the SMTP
//! catcher). `./stack up`, the end-to-end tests and the benchmark all start
//! them from these definitions, on the ports they choose.
//!
//! Each gets its own directory, listens on 127.0.0.1 only and never touches
//! anything outside that directory.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::locate;
use crate::probe::Probe;
use crate::spec::ProcessSpec;

/// Component name of the bus.
pub const REDIS: &str = "redis";
/// Component name of the MongoDB-compatible store.
pub const FERRETDB: &str = "ferretdb";
/// Component name of the SMTP catcher.
pub const MAILDEV: &str = "maildev";

/// A process to start and what "ready" means for it.
#[derive(Debug, Clone)]
pub struct Launch {
    pub spec: ProcessSpec,
    pub probe: Probe,
}

/// Where a component keeps its files and writes its log.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The component's own working directory (already created).
    pub dir: PathBuf,
    /// The directory that collects every log; the component's log is
    /// `<logs>/<name>.log`.
    pub logs: PathBuf,
}

impl Placement {
    /// The log file of the component `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }
}

/// `redis-server` on `port`, with append-only persistence as in production:
/// a restart keeps the streams, their consumer groups and pending entries,
/// losing at most the last second of writes (`appendfsync everysec`).
/// `max_clients` raises the connection limit above Redis's default of
/// 10,000 (for the benchmark).
pub fn redis(at: &Placement, port: u16, max_clients: Option<u32>) -> Launch {
    let mut args = args([
        "--port".into(),
        port.to_string().into(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        "".into(),
        "--appendonly".into(),
        "yes".into(),
        "--appendfsync".into(),
        "everysec".into(),
        "--dir".into(),
        at.dir.as_os_str().to_owned(),
    ]);
    if let Some(max) = max_clients {
        args.extend(["--maxclients".into(), max.to_string().into()]);
    }
    let spec = ProcessSpec {
        name: REDIS.to_owned(),
        program: locate::redis_server(),
        args,
        env: Vec::new(),
        cwd: at.dir.clone(),
        log_path: at.log_path(REDIS),
    };
    Launch {
        spec,
        probe: Probe::RedisPing(loopback(port)),
    }
}

/// FerretDB with the SQLite handler, its databases and state in its directory.
///
/// The debug HTTP listener (metrics, pprof) is switched off with
/// `--debug-addr=-`, since its fixed default port would collide between
/// deployments; telemetry is disabled so nothing leaves the machine; only
/// warnings are logged, since it logs every connection otherwise.
pub fn ferretdb(at: &Placement, port: u16) -> Launch {
    let spec = ProcessSpec {
        name: FERRETDB.to_owned(),
        program: locate::ferretdb(),
        args: args([
            "--handler=sqlite".into(),
            prefixed("--sqlite-url=file:", &at.dir, "/"),
            format!("--listen-addr=127.0.0.1:{port}").into(),
            prefixed("--state-dir=", &at.dir, ""),
            "--debug-addr=-".into(),
            "--telemetry=disable".into(),
            "--log-level=warn".into(),
        ]),
        env: Vec::new(),
        cwd: at.dir.clone(),
        log_path: at.log_path(FERRETDB),
    };
    Launch {
        spec,
        probe: Probe::Tcp(loopback(port)),
    }
}

/// MailDev with its SMTP server and web API on loopback, mails kept in memory.
///
/// It runs in its own directory because it reads configuration files from its
/// working directory and the parents of it. Ready when both its web API and
/// its SMTP port answer.
pub fn maildev(at: &Placement, smtp_port: u16, web_port: u16) -> Launch {
    let spec = ProcessSpec {
        name: MAILDEV.to_owned(),
        program: locate::maildev(),
        args: args([
            "--smtp".into(),
            smtp_port.to_string().into(),
            "--ip".into(),
            "127.0.0.1".into(),
            "--web".into(),
            web_port.to_string().into(),
            "--web-ip".into(),
            "127.0.0.1".into(),
        ]),
        env: Vec::new(),
        cwd: at.dir.clone(),
        log_path: at.log_path(MAILDEV),
    };
    let probe = Probe::All(vec![
        Probe::HttpOk(format!("http://127.0.0.1:{web_port}/api/healthz")),
        Probe::Tcp(loopback(smtp_port)),
    ]);
    Launch { spec, probe }
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// `<before><path><after>` without assuming the path is UTF-8.
fn prefixed(before: &str, path: &Path, after: &str) -> OsString {
    let mut arg = OsString::from(before);
    arg.push(path.as_os_str());
    arg.push(after);
    arg
}

fn args<const N: usize>(list: [OsString; N]) -> Vec<OsString> {
    list.into()
}
