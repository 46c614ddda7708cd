//! How the Switchyard binaries are launched: which binary, which settings
//! (environment variables, see `docs/configuration.md`) and what "started"
//! means for each. The settings here are the wiring every deployment needs;
//! whoever starts a service layers its own on top (the tests' short claim
//! timeout, `./stack up`'s trust in the front door's `X-Real-IP`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::infra::{Launch, Placement, loopback};
use crate::locate;
use crate::probe::Probe;
use crate::spec::ProcessSpec;

/// Binary name of the WebSocket gateway.
pub const GATEWAY: &str = "gateway";
/// Binary name of the account service.
pub const AUTH: &str = "auth-service";
/// Binary name of the chat service.
pub const CHAT: &str = "chat-service";
/// Binary name of the mail sender.
pub const MAILER: &str = "mailer";

/// The services without a port of their own, in start order.
pub const BACKENDS: [&str; 3] = [AUTH, CHAT, MAILER];

/// Services without a port count as started once alive this long: one that
/// cannot reach its Redis or database exits within it.
const SETTLE_TIME: Duration = Duration::from_millis(500);

/// Where the infrastructure listens. `None` leaves a setting to the
/// environment the service inherits (an external server given by the caller).
#[derive(Debug, Clone, Default)]
pub struct Wiring {
    pub redis_url: Option<String>,
    pub mongo_uri: Option<String>,
    /// SMTP host and port.
    pub smtp: Option<(String, u16)>,
}

impl Wiring {
    /// The settings that point a service at this infrastructure.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(url) = &self.redis_url {
            env.push(("SWITCHYARD__REDIS__URL".to_owned(), url.clone()));
        }
        if let Some(uri) = &self.mongo_uri {
            env.push(("SWITCHYARD__MONGODB__URI".to_owned(), uri.clone()));
        }
        if let Some((host, port)) = &self.smtp {
            env.push(("SWITCHYARD__SMTP__HOST".to_owned(), host.clone()));
            env.push(("SWITCHYARD__SMTP__PORT".to_owned(), port.to_string()));
        }
        env
    }
}

/// The gateway `name` (e.g. `gateway-8000`), known as `id` on the bus,
/// serving on `127.0.0.1:port` and admitting browser pages from `origins`.
/// Ready when `GET /readyz` answers 200.
pub fn gateway(
    at: &Placement,
    bin_dir: &Path,
    wiring: &Wiring,
    name: &str,
    id: &str,
    port: u16,
    origins: &[String],
) -> Launch {
    let mut env = service_env(wiring);
    env.push((
        "SWITCHYARD__GATEWAY__LISTEN".into(),
        loopback(port).to_string(),
    ));
    env.push(("SWITCHYARD__GATEWAY__ID".into(), id.to_owned()));
    env.push((
        "SWITCHYARD__GATEWAY__ALLOWED_ORIGINS".into(),
        origins.join(","),
    ));
    Launch {
        spec: spec(at, bin_dir, GATEWAY, name, env),
        probe: Probe::HttpOk(format!("http://{}/readyz", loopback(port))),
    }
}

/// A `chat-service` replica named `name`, serving attachments (`/files`) on
/// `127.0.0.1:files_port`: the port the front door routes `/files` to.
/// Ready when it has stayed alive a moment and its file port accepts
/// connections.
pub fn chat(
    at: &Placement,
    bin_dir: &Path,
    wiring: &Wiring,
    name: &str,
    files_port: u16,
) -> Launch {
    let mut env = service_env(wiring);
    env.push((
        "SWITCHYARD__FILES__LISTEN".into(),
        loopback(files_port).to_string(),
    ));
    Launch {
        spec: spec(at, bin_dir, CHAT, name, env),
        probe: Probe::All(vec![
            Probe::Alive(SETTLE_TIME),
            Probe::Tcp(loopback(files_port)),
        ]),
    }
}

/// A service without a port of its own (`auth-service`, `mailer`; a
/// `chat-service` started this way serves its files on a free port nobody
/// routes to, see [`chat`]), named `name` in logs and pid files.
pub fn backend(
    at: &Placement,
    bin_dir: &Path,
    wiring: &Wiring,
    binary: &str,
    name: &str,
) -> Launch {
    Launch {
        spec: spec(at, bin_dir, binary, name, service_env(wiring)),
        probe: Probe::Alive(SETTLE_TIME),
    }
}

/// The `Origin` values the local stack's gateways accept, from
/// `deploy/local/allowed-origins` under `root`: `./stack up` and the tests
/// read the same file.
///
/// # Errors
/// If the file cannot be read or lists no origin.
pub fn local_allowed_origins(root: &Path) -> Result<Vec<String>, String> {
    let path = root.join("deploy/local/allowed-origins");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let origins: Vec<String> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if origins.is_empty() {
        return Err(format!(
            "{} lists no origin; an empty list would let every site in",
            path.display()
        ));
    }
    Ok(origins)
}

/// The workspace this crate was built in, where `deploy/` is.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the launcher crate lives inside the workspace")
        .to_path_buf()
}

fn spec(
    at: &Placement,
    bin_dir: &Path,
    binary: &str,
    name: &str,
    env: Vec<(String, String)>,
) -> ProcessSpec {
    ProcessSpec {
        name: name.to_owned(),
        program: locate::service_in(bin_dir, binary),
        args: Vec::new(),
        env,
        cwd: at.dir.clone(),
        log_path: at.log_path(name),
    }
}

fn service_env(wiring: &Wiring) -> Vec<(String, String)> {
    let mut env = wiring.env();
    // Log files are read by people and grep, not terminals.
    env.push(("NO_COLOR".to_owned(), "1".to_owned()));
    env
}
