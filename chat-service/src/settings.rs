//! chat-service settings (see docs/configuration.md).

use serde::Deserialize;
use shared_proto::settings::{BusSettings, LogSettings, MongoSettings, RedisSettings};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub mongodb: MongoSettings,
    pub log: LogSettings,
    pub bus: BusSettings,
    pub chat: ChatSettings,
    pub http: shared_proto::settings::HttpSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ChatSettings {
    /// Longest message text, in characters, after trimming.
    pub max_text_chars: usize,
    /// Most messages one HISTORY page returns.
    pub max_page: i64,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            max_text_chars: 4000,
            max_page: 100,
        }
    }
}
