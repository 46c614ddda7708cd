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
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            code_ttl_secs: 15 * 60,
            code_max_attempts: 5,
            session_ttl_secs: 30 * 24 * 3600,
            resend_interval_secs: 60,
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
}
