//! auth-service settings (see docs/configuration.md).

use std::time::Duration;

use serde::Deserialize;
use shared_proto::settings::{BusSettings, LogSettings, MongoSettings, RedisSettings};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub mongodb: MongoSettings,
    pub log: LogSettings,
    pub bus: BusSettings,
    pub auth: AuthSettings,
    pub http: shared_proto::settings::HttpSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    pub code_ttl_secs: u64,
    pub code_max_attempts: u32,
    pub session_ttl_secs: u64,
    /// Shortest time between two confirmation mails to one account.
    pub resend_interval_secs: u64,
    /// Failed password logins of one account that go through at once; after
    /// them each further try waits (see [`crate::limits::reserve_login`]).
    pub login_free_tries_per_account: u32,
    /// The same for one source address. Larger, because many people can
    /// share an address (an office, a mobile carrier's NAT).
    pub login_free_tries_per_address: u32,
    /// The wait after the first failure beyond the free ones; it doubles
    /// with each further failure.
    pub login_first_wait_ms: u64,
    /// The longest wait between two tries.
    pub login_max_wait_secs: u64,
    /// Failures are forgotten this long after the last wait ended.
    pub login_forget_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            code_ttl_secs: 15 * 60,
            code_max_attempts: 5,
            session_ttl_secs: 30 * 24 * 3600,
            resend_interval_secs: 60,
            login_free_tries_per_account: 5,
            login_free_tries_per_address: 20,
            login_first_wait_ms: 1000,
            login_max_wait_secs: 15 * 60,
            login_forget_secs: 3600,
        }
    }
}

impl AuthSettings {
    pub fn code_ttl(&self) -> Duration {
        Duration::from_secs(self.code_ttl_secs)
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }

    pub fn login_max_wait(&self) -> Duration {
        Duration::from_secs(self.login_max_wait_secs)
    }

    pub fn login_forget(&self) -> Duration {
        Duration::from_secs(self.login_forget_secs)
    }
}
