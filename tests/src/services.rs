//! The Switchyard binaries as a test runs them: the launcher's definitions
//! (the same `./stack up` uses) with the tests' own settings layered on top.
//!
//! Settings are layered: the wiring to this stack's infrastructure first,
//! then the tests' defaults, then the test's overrides for every service,
//! then its overrides for one binary.

use switchyard_launcher::infra::{Launch, Placement};
use switchyard_launcher::services::{self as launch, Wiring};
pub use switchyard_launcher::services::{AUTH, CHAT, GATEWAY, MAILER};

/// The database every service of a test stack uses.
pub const DATABASE: &str = "switchyard";

/// Where this stack's infrastructure listens.
pub(crate) struct Endpoints {
    pub redis_url: String,
    pub mongo_uri: String,
    pub smtp_port: u16,
}

impl Endpoints {
    fn wiring(&self) -> Wiring {
        Wiring {
            redis_url: Some(self.redis_url.clone()),
            mongo_uri: Some(self.mongo_uri.clone()),
            smtp: Some(("127.0.0.1".to_owned(), self.smtp_port)),
        }
    }
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
    endpoints: &Endpoints,
    overrides: &Overrides,
    replica: usize,
    port: u16,
) -> Launch {
    // The local stack's own allow-list, so tests prove what `./stack up` runs.
    let mut launch = launch::gateway(
        at,
        &switchyard_launcher::locate::service_bin_dir(),
        &endpoints.wiring(),
        &replica_name(GATEWAY, replica),
        &format!("gw-{replica}"),
        port,
        &local_allowed_origins(),
    );
    test_settings(&mut launch, overrides, GATEWAY);
    launch
}

/// The `Origin` values the local stack's gateways accept, from
/// `deploy/local/allowed-origins`: the file `./stack up` reads too. Test
/// gateways get this list unless a test sets its own.
///
/// # Panics
/// If the file cannot be read or lists no origin.
pub fn local_allowed_origins() -> Vec<String> {
    launch::local_allowed_origins(&crate::front_door::repository_root())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `chat-service` replica `replica`, serving `/files` on `files_port`.
pub(crate) fn chat(
    at: &Placement,
    endpoints: &Endpoints,
    overrides: &Overrides,
    replica: usize,
    files_port: u16,
) -> Launch {
    let mut launch = launch::chat(
        at,
        &switchyard_launcher::locate::service_bin_dir(),
        &endpoints.wiring(),
        &replica_name(CHAT, replica),
        files_port,
    );
    test_settings(&mut launch, overrides, CHAT);
    launch
}

/// Replica `replica` of a service that has no port of its own
/// (`auth-service`, `chat-service`, `mailer`).
pub(crate) fn backend(
    at: &Placement,
    endpoints: &Endpoints,
    overrides: &Overrides,
    binary: &str,
    replica: usize,
) -> Launch {
    let mut launch = launch::backend(
        at,
        &switchyard_launcher::locate::service_bin_dir(),
        &endpoints.wiring(),
        binary,
        &replica_name(binary, replica),
    );
    test_settings(&mut launch, overrides, binary);
    launch
}

/// The name a replica goes by in logs and messages, e.g. `auth-service-1`.
pub(crate) fn replica_name(binary: &str, replica: usize) -> String {
    format!("{binary}-{replica}")
}

/// The tests' defaults, then the test's overrides.
fn test_settings(launch: &mut Launch, overrides: &Overrides, binary: &str) {
    let env = &mut launch.spec.env;
    env.extend(
        [
            ("SWITCHYARD__MONGODB__DATABASE", DATABASE),
            // Short, so that a killed replica's work is taken over quickly.
            ("SWITCHYARD__BUS__CLAIM_IDLE_MS", "1500"),
            ("SWITCHYARD__BUS__PARTITION_LEASE_MS", "1500"),
            // Long: unoptimised builds sharing a machine with other tests keep
            // messages waiting for seconds at loads far from what the bound
            // is for. `message_overload.rs` sets the bound it tests.
            ("SWITCHYARD__GATEWAY__MAX_QUEUE_WAIT_MS", "30000"),
            ("SWITCHYARD__LOG__FILTER", "info"),
            ("RUST_BACKTRACE", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env.extend(overrides.for_binary(binary));
}
