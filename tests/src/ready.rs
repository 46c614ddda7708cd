//! Deciding that a started process is ready to be used.
//!
//! Every wait is bounded. A process that exits while being waited for, or is
//! still not ready at the deadline, is a panic that quotes the end of its log.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::process::ManagedProcess;

/// How long any process may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one probe attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Log lines quoted in a failure message.
const TAIL_LINES: usize = 40;

/// What "ready" means for one process.
#[derive(Debug, Clone)]
pub enum Probe {
    /// A TCP connection to this address is accepted.
    Tcp(SocketAddr),
    /// A Redis server at this address answers `PING` with `PONG`.
    RedisPing(SocketAddr),
    /// `GET` on this URL answers 200.
    HttpOk(String),
    /// The process is still alive after this long (for processes without a port).
    Alive(Duration),
    /// Every one of these holds.
    All(Vec<Probe>),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp(addr) => write!(f, "TCP connect to {addr}"),
            Probe::RedisPing(addr) => write!(f, "Redis PING at {addr}"),
            Probe::HttpOk(url) => write!(f, "GET {url} answering 200"),
            Probe::Alive(after) => write!(f, "process alive after {after:?}"),
            Probe::All(probes) => {
                let parts: Vec<String> = probes.iter().map(ToString::to_string).collect();
                write!(f, "{}", parts.join(" and "))
            }
        }
    }
}

/// Waits until `probe` holds for `process`, for at most `limit`.
///
/// # Panics
/// If the process exits first or the deadline passes; the message names the
/// process, the probe, the last probe error and the end of the log.
pub async fn wait_ready(process: &mut ManagedProcess, probe: &Probe, limit: Duration) {
    let deadline = Instant::now() + limit;
    let http = http_client();
    loop {
        if let Some(status) = process.exit_status() {
            panic!(
                "{} exited ({status}) before it was ready ({probe}).\n{}",
                process.name(),
                log_excerpt(process)
            );
        }
        let last_error = match check(process, probe, &http).await {
            Ok(()) => return,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!(
                "{} was not ready after {limit:?} ({probe}); last error: {last_error}.\n{}",
                process.name(),
                log_excerpt(process)
            );
        }
        sleep(Duration::from_millis(100)).await;
    }
}

fn log_excerpt(process: &ManagedProcess) -> String {
    format!(
        "Last lines of {}:\n{}",
        process.log_path().display(),
        process.log_tail(TAIL_LINES)
    )
}

/// A plain HTTP client for loopback probes; never goes through a proxy.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .expect("a reqwest client without TLS or proxy settings always builds")
}

async fn check(
    process: &mut ManagedProcess,
    probe: &Probe,
    http: &reqwest::Client,
) -> Result<(), String> {
    match probe {
        Probe::Tcp(addr) => tcp(*addr).await.map(drop),
        Probe::RedisPing(addr) => redis_ping(*addr).await,
        Probe::HttpOk(url) => http_ok(http, url).await,
        Probe::Alive(after) => {
            sleep(*after).await;
            if process.is_running() {
                Ok(())
            } else {
                Err("the process exited".to_owned())
            }
        }
        Probe::All(probes) => {
            for p in probes {
                Box::pin(check(process, p, http)).await?;
            }
            Ok(())
        }
    }
}

async fn tcp(addr: SocketAddr) -> Result<TcpStream, String> {
    match timeout(ATTEMPT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
        Err(_) => Err(format!("connect {addr}: timed out")),
    }
}

async fn redis_ping(addr: SocketAddr) -> Result<(), String> {
    let mut stream = tcp(addr).await?;
    let exchange = async {
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&reply[..n]).into_owned())
    };
    match timeout(ATTEMPT_TIMEOUT, exchange).await {
        Ok(Ok(reply)) if reply.starts_with("+PONG") => Ok(()),
        Ok(Ok(reply)) => Err(format!("PING answered {:?}", reply.trim_end())),
        Ok(Err(e)) => Err(format!("PING: {e}")),
        Err(_) => Err("PING: no answer".to_owned()),
    }
}

async fn http_ok(http: &reqwest::Client, url: &str) -> Result<(), String> {
    match http.get(url).send().await {
        Ok(response) if response.status() == reqwest::StatusCode::OK => Ok(()),
        Ok(response) => Err(format!("GET {url} answered {}", response.status())),
        Err(e) => Err(format!("GET {url}: {e}")),
    }
}
