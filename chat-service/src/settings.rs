//! chat-service settings (see docs/configuration.md).

use serde::Deserialize;
use shared_proto::settings::{BusSettings, LogSettings, MongoSettings, RedisSettings, Secret};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub mongodb: MongoSettings,
    pub log: LogSettings,
    pub bus: BusSettings,
    pub chat: ChatSettings,
    pub http: shared_proto::settings::HttpSettings,
    pub files: FilesSettings,
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

/// The attachments: where they are served over HTTP and what they may be.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FilesSettings {
    /// Where `/files` is served; the front door routes `/files` here.
    /// `127.0.0.1:0` picks a free port; containers set `0.0.0.0:8090`.
    pub listen: String,
    /// Signs the URLs messages carry. Every replica must share it; when
    /// empty, the replicas agree on one through Redis (lost with Redis, which
    /// only makes URLs handed out before then stop working early).
    pub url_secret: Secret,
    /// How long a signed URL works.
    pub url_ttl_secs: u64,
    /// Largest picture, in bytes.
    pub max_picture_bytes: u64,
    /// Largest other file, in bytes.
    pub max_file_bytes: u64,
    /// Most pixels a picture may decode into: a few kilobytes of PNG can
    /// announce gigabytes of pixels, and are refused before decoding.
    pub max_pixels: u64,
    /// Longest side of a thumbnail.
    pub thumbnail_side: u32,
    /// Whether files other than pictures may be sent to groups.
    pub files_in_groups: bool,
    /// How long an uploaded file waits to be attached before it is deleted.
    pub unattached_ttl_secs: u64,
    /// How often never-attached files are looked for.
    pub sweep_interval_secs: u64,
    /// Uploads one user may start per minute.
    pub uploads_per_minute: u64,
    /// Bytes one user may keep in files not yet attached to a message.
    pub max_pending_bytes_per_user: u64,
}

impl Default for FilesSettings {
    fn default() -> Self {
        FilesSettings {
            listen: "127.0.0.1:0".into(),
            url_secret: Secret::default(),
            url_ttl_secs: 3600,
            max_picture_bytes: 10 * 1024 * 1024,
            max_file_bytes: 25 * 1024 * 1024,
            max_pixels: 40_000_000,
            thumbnail_side: 320,
            files_in_groups: false,
            unattached_ttl_secs: 24 * 3600,
            sweep_interval_secs: 600,
            uploads_per_minute: 30,
            max_pending_bytes_per_user: 200 * 1024 * 1024,
        }
    }
}
