//! Deciding that a started process is ready to be used: what "ready" means
//! for each kind of component, and a bounded wait for it.
//!
//! The wait is told how to see that the process exited, so that a process
//! which dies on startup is reported at once rather than at the deadline.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

/// How long one probe attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause between two attempts.
const RETRY_EVERY: Duration = Duration::from_millis(100);

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

/// Why a process did not become ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// It exited first; how, as the operating system tells it.
    Exited(String),
    /// The deadline passed; the last attempt's error.
    TimedOut(String),
}

/// Waits until `probe` holds, for at most `limit`. `exited` says how the
/// process ended, or `None` while it runs.
///
/// # Errors
/// [`NotReady`] if the process exits first or the deadline passes.
pub async fn wait_until_ready(
    probe: &Probe,
    limit: Duration,
    exited: &mut dyn FnMut() -> Option<String>,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + limit;
    let http = http_client();
    loop {
        if let Some(status) = exited() {
            return Err(NotReady::Exited(status));
        }
        let last_error = match check(probe, &http, exited).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut(last_error));
        }
        sleep(RETRY_EVERY).await;
    }
}

/// A plain HTTP client for loopback probes; never goes through a proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .expect("a reqwest client without TLS or proxy settings always builds")
}

/// One attempt at `probe`.
async fn check(
    probe: &Probe,
    http: &reqwest::Client,
    exited: &mut dyn FnMut() -> Option<String>,
) -> Result<(), String> {
    match probe {
        Probe::Tcp(addr) => tcp(*addr).await.map(drop),
        Probe::RedisPing(addr) => redis_ping(*addr).await,
        Probe::HttpOk(url) => http_ok(http, url).await,
        Probe::Alive(after) => {
            sleep(*after).await;
            match exited() {
                None => Ok(()),
                Some(status) => Err(format!("the process exited ({status})")),
            }
        }
        Probe::All(probes) => {
            for p in probes {
                Box::pin(check(p, http, exited)).await?;
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

/// Whether something accepts TCP connections at `addr` right now.
pub async fn port_open(addr: SocketAddr) -> bool {
    tcp(addr).await.is_ok()
}
