//! Layered settings: built-in defaults, then an optional TOML file, then
//! environment variables `SWITCHYARD__SECTION__KEY`. Each binary declares its
//! own settings type from the common sections here.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The environment variable prefix; levels are separated by `__`.
pub const ENV_PREFIX: &str = "SWITCHYARD";

/// The command-line arguments every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// A TOML settings file; environment variables SWITCHYARD__SECTION__KEY
    /// override it (see docs/configuration.md).
    #[arg(long, env = "SWITCHYARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Loads settings of type `T` from defaults, `file` and the environment.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> anyhow::Result<T> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(config::File::from(file).required(true));
    }
    let settings = builder
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("gateway.allowed_origins")
                .try_parsing(true),
        )
        .build()?;
    Ok(settings.try_deserialize()?)
}

/// A value that must never reach a log: `Debug` prints a placeholder.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    pub url: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: "redis://127.0.0.1:6379".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MongoSettings {
    /// May carry credentials, hence a secret.
    pub uri: Secret,
    pub database: String,
    /// How long one write of chat-service's message log may take before it
    /// is abandoned (the messages in it are handled again): the driver has
    /// no time limit of its own on a command the server never answers.
    pub operation_timeout_ms: u64,
}

impl Default for MongoSettings {
    fn default() -> Self {
        MongoSettings {
            uri: Secret::new("mongodb://127.0.0.1:27017"),
            database: "switchyard".into(),
            operation_timeout_ms: 10_000,
        }
    }
}

impl MongoSettings {
    pub fn operation_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.operation_timeout_ms.max(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info,auth_service=debug`.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BusSettings {
    /// Prefix of every Redis key and channel.
    pub prefix: String,
    /// How long an entry may stay pending with a silent replica before
    /// another one claims it.
    pub claim_idle_ms: u64,
    /// Entries one replica handles at once.
    pub max_in_flight: usize,
    /// Entries of one user one replica handles at once, so that one user's
    /// backlog waits in its own line instead of everyone's.
    pub max_in_flight_per_user: usize,
    /// Entries one replica reads ahead of its handlers, at most.
    pub max_held: usize,
    /// How long after a gateway took an action its client stops waiting:
    /// the gateways' `action_timeout_ms`. A read or account action older
    /// than this is dropped unhandled.
    pub stale_after_ms: u64,
    /// Deliveries an entry gets before it is given up on and moved to the
    /// service's dead-letter stream: its handling failed each time, or the
    /// replica handling it died each time.
    pub max_deliveries: u64,
    /// How old a position `SYNC` can still replay from, in seconds; each
    /// user's and group's history keeps its events this long.
    pub history_window_secs: u64,
    /// The most events one `SYNC` replays; each history keeps at least this
    /// many (docs/protocol.md, "SYNC", for the memory this costs).
    pub history_max_events: usize,
    /// Partitions of chat-service's messages (see `partitions`): at most
    /// this many replicas share them. The first process to start fixes the
    /// number in Redis; the others follow it.
    pub chat_partitions: u32,
    /// How long a replica's hold on a partition lasts unless renewed: how
    /// soon the others take over the partitions of a replica that died.
    pub partition_lease_ms: u64,
    /// How long handling one action may take before it is abandoned, as if
    /// its replica had died: a change is handled again on its next
    /// delivery, a read whose requester stopped waiting is dropped. A
    /// database that stops answering would otherwise hold every handling
    /// slot for ever.
    pub handle_timeout_ms: u64,
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings {
            prefix: "switchyard".into(),
            claim_idle_ms: 10_000,
            max_in_flight: 64,
            max_in_flight_per_user: 4,
            max_held: 1024,
            stale_after_ms: 10_000,
            max_deliveries: 5,
            history_window_secs: 3600,
            history_max_events: 1000,
            chat_partitions: 16,
            partition_lease_ms: 5000,
            handle_timeout_ms: 30_000,
        }
    }
}

impl BusSettings {
    /// How long a client waits for an answer.
    pub fn stale_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.stale_after_ms)
    }

    pub fn names(&self) -> crate::names::Names {
        crate::names::Names::new(self.prefix.clone())
    }

    /// What the event histories keep.
    pub fn history(&self) -> crate::bus::history::HistoryLimits {
        crate::bus::history::HistoryLimits {
            window: std::time::Duration::from_secs(self.history_window_secs),
            max_events: self.history_max_events.max(1),
        }
    }
}

/// The probe and metrics server of a service (the gateway uses its own port).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// `127.0.0.1:0` picks a free port (several replicas on one machine);
    /// containers set `0.0.0.0:9090`.
    pub listen: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:0".into(),
        }
    }
}
