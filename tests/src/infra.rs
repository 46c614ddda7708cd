//! How the infrastructure a stack needs is launched: Redis (the bus), FerretDB
//! on SQLite (the MongoDB-compatible store) and MailDev (the SMTP catcher).
//!
//! Each gets its own directory inside the stack's temporary directory, listens
//! on 127.0.0.1 only, keeps nothing after the test, and never collides with a
//! server a developer already runs on the usual ports.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::locate;
use crate::process::ProcessSpec;
use crate::ready::Probe;

/// Where a component keeps its files and writes its log.
pub(crate) struct Placement {
    /// The component's own working directory (already created).
    pub dir: PathBuf,
    /// The directory that collects every log of the stack.
    pub logs: PathBuf,
}

/// `redis-server` on `port`, without persistence.
pub(crate) fn redis(at: &Placement, port: u16) -> (ProcessSpec, Probe) {
    let spec = ProcessSpec {
        name: "redis".to_owned(),
        program: locate::redis_server(),
        args: args([
            "--port".into(),
            port.to_string().into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            at.dir.as_os_str().to_owned(),
        ]),
        env: Vec::new(),
        cwd: at.dir.to_path_buf(),
        log_path: at.logs.join("redis.log"),
    };
    (spec, Probe::RedisPing(loopback(port)))
}

/// FerretDB with the SQLite handler, its databases and state in its directory.
///
/// The debug HTTP listener (metrics, pprof) is switched off with
/// `--debug-addr=-`, since its fixed default port would collide between
/// stacks; telemetry is disabled so nothing leaves the machine.
pub(crate) fn ferretdb(at: &Placement, port: u16) -> (ProcessSpec, Probe) {
    let mut sqlite_url = OsString::from("--sqlite-url=file:");
    sqlite_url.push(at.dir.as_os_str());
    sqlite_url.push("/");
    let mut state_dir = OsString::from("--state-dir=");
    state_dir.push(at.dir.as_os_str());
    let spec = ProcessSpec {
        name: "ferretdb".to_owned(),
        program: locate::ferretdb(),
        args: args([
            "--handler=sqlite".into(),
            sqlite_url,
            format!("--listen-addr=127.0.0.1:{port}").into(),
            state_dir,
            "--debug-addr=-".into(),
            "--telemetry=disable".into(),
            "--log-level=warn".into(),
        ]),
        env: Vec::new(),
        cwd: at.dir.to_path_buf(),
        log_path: at.logs.join("ferretdb.log"),
    };
    (spec, Probe::Tcp(loopback(port)))
}

/// MailDev with its SMTP server and web API on loopback, mails kept in memory.
///
/// It runs in its own directory because it reads configuration files from its
/// working directory and the parents of it.
pub(crate) fn maildev(at: &Placement, smtp_port: u16, web_port: u16) -> (ProcessSpec, Probe) {
    let spec = ProcessSpec {
        name: "maildev".to_owned(),
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
        cwd: at.dir.to_path_buf(),
        log_path: at.logs.join("maildev.log"),
    };
    let probe = Probe::All(vec![
        Probe::HttpOk(format!("http://127.0.0.1:{web_port}/api/healthz")),
        Probe::Tcp(loopback(smtp_port)),
    ]);
    (spec, probe)
}

pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn args<const N: usize>(list: [OsString; N]) -> Vec<OsString> {
    list.into()
}
