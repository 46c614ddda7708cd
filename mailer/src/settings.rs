//! The mailer's settings: the common sections from `shared-proto` plus SMTP
//! and retry policy. Defaults match docs/configuration.md.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use shared_proto::settings::{BusSettings, LogSettings, MongoSettings, RedisSettings, Secret};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub mongodb: MongoSettings,
    pub log: LogSettings,
    pub bus: BusSettings,
    pub smtp: SmtpSettings,
    pub mailer: MailerSettings,
    pub http: shared_proto::settings::HttpSettings,
}

impl Settings {
    /// Defaults, then `file`, then `SWITCHYARD__…` environment variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        shared_proto::settings::load(file)
    }
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text: only for a catcher on the same machine.
    #[default]
    None,
    /// Plain connection upgraded with STARTTLS; refuses to go on without it.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Credentials are used only when both are set and not empty.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The `From` mailbox, e.g. `Switchyard <no-reply@switchyard.local>`.
    pub from: String,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port: 1025,
            tls: TlsMode::None,
            username: None,
            password: None,
            from: "Switchyard <no-reply@switchyard.local>".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MailerSettings {
    /// Tries before a job goes to the dead-letter stream.
    pub max_attempts: u32,
    /// The first retry delay; it doubles on each try.
    pub backoff_ms: u64,
}

impl Default for MailerSettings {
    fn default() -> Self {
        MailerSettings {
            max_attempts: 5,
            backoff_ms: 500,
        }
    }
}

impl MailerSettings {
    pub fn first_backoff(&self) -> Duration {
        Duration::from_millis(self.backoff_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let settings = Settings::default();
        assert_eq!(settings.smtp.host, "127.0.0.1");
        assert_eq!(settings.smtp.port, 1025);
        assert_eq!(settings.smtp.tls, TlsMode::None);
        assert!(settings.smtp.username.is_none());
        assert!(settings.smtp.password.is_none());
        assert_eq!(settings.smtp.from, "Switchyard <no-reply@switchyard.local>");
        assert_eq!(settings.mailer.max_attempts, 5);
        assert_eq!(settings.mailer.backoff_ms, 500);
    }

    #[test]
    fn tls_modes_are_read_in_lowercase() {
        let parsed: SmtpSettings =
            serde_json::from_str(r#"{"tls": "starttls", "password": "hunter2"}"#)
                .expect("valid settings");
        assert_eq!(parsed.tls, TlsMode::Starttls);
        assert_eq!(parsed.port, 1025, "unset keys keep their defaults");
        assert!(
            !format!("{parsed:?}").contains("hunter2"),
            "the password must not show in Debug"
        );
    }
}
