//! How the Switchyard binaries are launched in a test stack: which binary,
//! which settings (environment variables, see `docs/configuration.md`) and
//! what "started" means for each.
//!
//! Settings are layered: the wiring to this stack's infrastructure first,
//! then the test's overrides for every service, then its overrides for one
//! binary.

use std::time::Duration;

use crate::infra::{Placement, loopback};
use crate::locate;
use crate::process::ProcessSpec;
use crate::ready::Probe;

/// Binary name of the WebSocket gateway.
pub const GATEWAY: &str = "gateway";
/// Binary name of the account service.
pub const AUTH: &str = "auth-service";
/// Binary name of the chat service.
pub const CHAT: &str = "chat-service";
/// Binary name of the mail sender.
pub const MAILER: &str = "mailer";

/// The database every service of a test stack uses.
pub const DATABASE: &str = "switchyard";

/// Services without a port count as started once alive this long; tests then
/// wait for their replies anyway.
const SETTLE_TIME: Duration = Duration::from_millis(500);

/// Where this stack's infrastructure listens.
pub(crate) struct Wiring {
    pub redis_url: String,
    pub mongo_uri: String,
    pub smtp_port: u16,
}

/// A test's own settings, applied over the defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    /// Set for every service.
    pub all: Vec<(String, String)>,
    /// Set for one binary: (binary, key, value).
    pub per_binary: Vec<(String, String, String)>,
}

impl Overrides {
    fn for_binary<'a>(&'a self, binary: &'a str) -> impl Iterator<Item = (String, String)> + 'a {
        let all = self.all.iter().cloned();
        let own = self
            .per_binary
            .iter()
            .filter(move |(b, _, _)| b == binary)
            .map(|(_, k, v)| (k.clone(), v.clone()));
        all.chain(own)
    }
}

/// Gateway replica `replica`, named `gw-<replica>` on the bus, serving on `port`.
/// Ready when `GET /readyz` answers 200.
pub(crate) fn gateway(
    at: &Placement,
    wiring: &Wiring,
    overrides: &Overrides,
    replica: usize,
    port: u16,
) -> (ProcessSpec, Probe) {
    let mut env = wiring_env(wiring);
    env.push((
        "SWITCHYARD__GATEWAY__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    ));
    env.push(("SWITCHYARD__GATEWAY__ID".into(), format!("gw-{replica}")));
    // The local stack's own allow-list, so tests prove what `./stack up` runs.
    env.push((
        "SWITCHYARD__GATEWAY__ALLOWED_ORIGINS".into(),
        local_allowed_origins().join(","),
    ));
    env.extend(overrides.for_binary(GATEWAY));
    let spec = spec(at, GATEWAY, replica, env);
    let probe = Probe::HttpOk(format!("http://{}/readyz", loopback(port)));
    (spec, probe)
}

/// The `Origin` values the local stack's gateways accept, from
/// `deploy/local/allowed-origins`: the file `./stack up` reads too. Test
/// gateways get this list unless a test sets its own.
///
/// # Panics
/// If the file cannot be read or lists no origin.
pub fn local_allowed_origins() -> Vec<String> {
    let path = crate::front_door::repository_root().join("deploy/local/allowed-origins");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let origins: Vec<String> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!origins.is_empty(), "{} lists no origin", path.display());
    origins
}

/// Replica `replica` of a service that has no port of its own
/// (`auth-service`, `chat-service`, `mailer`).
pub(crate) fn backend(
    at: &Placement,
    wiring: &Wiring,
    overrides: &Overrides,
    binary: &str,
    replica: usize,
) -> (ProcessSpec, Probe) {
    let mut env = wiring_env(wiring);
    env.extend(overrides.for_binary(binary));
    (spec(at, binary, replica, env), Probe::Alive(SETTLE_TIME))
}

/// The name a replica goes by in logs and messages, e.g. `auth-service-1`.
pub(crate) fn replica_name(binary: &str, replica: usize) -> String {
    format!("{binary}-{replica}")
}

fn spec(at: &Placement, binary: &str, replica: usize, env: Vec<(String, String)>) -> ProcessSpec {
    let name = replica_name(binary, replica);
    ProcessSpec {
        program: locate::service(binary),
        args: Vec::new(),
        env,
        cwd: at.dir.to_path_buf(),
        log_path: at.logs.join(format!("{name}.log")),
        name,
    }
}

fn wiring_env(wiring: &Wiring) -> Vec<(String, String)> {
    [
        ("SWITCHYARD__REDIS__URL", wiring.redis_url.clone()),
        ("SWITCHYARD__MONGODB__URI", wiring.mongo_uri.clone()),
        ("SWITCHYARD__MONGODB__DATABASE", DATABASE.to_owned()),
        ("SWITCHYARD__SMTP__HOST", "127.0.0.1".to_owned()),
        ("SWITCHYARD__SMTP__PORT", wiring.smtp_port.to_string()),
        // Short, so that a killed replica's work is taken over quickly.
        ("SWITCHYARD__BUS__CLAIM_IDLE_MS", "1500".to_owned()),
        ("SWITCHYARD__LOG__FILTER", "info".to_owned()),
        ("RUST_BACKTRACE", "1".to_owned()),
        // Log files are read by people and grep, not terminals.
        ("NO_COLOR", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
