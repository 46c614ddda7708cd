//! The gateway's settings (see docs/configuration.md).

use std::time::Duration;

use serde::Deserialize;
use shared_proto::settings::{BusSettings, LogSettings, RedisSettings};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub log: LogSettings,
    pub bus: BusSettings,
    pub gateway: GatewaySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GatewaySettings {
    pub listen: String,
    /// This replica's name on the bus; random when unset, which is right for
    /// replicas that come and go.
    pub id: Option<String>,
    /// `Origin` values accepted on upgrade. Empty: any origin (development).
    pub allowed_origins: Vec<String>,
    /// A request header that carries the client's address, set by the front
    /// door (`X-Real-IP` in the configurations under deploy/). Unset: the
    /// address is the TCP peer's. Set it only where clients cannot reach the
    /// gateway except through that front door, or they can name any address.
    pub client_addr_header: Option<String>,
    pub action_timeout_ms: u64,
    pub max_frame_bytes: usize,
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    /// Frames that may wait for one client once its socket's send buffer is
    /// full; a client that lets them reach this many is disconnected.
    pub outbox_frames: usize,
    /// On shutdown, how long to wait for answers to requests in flight.
    pub drain_ms: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: "127.0.0.1:8000".into(),
            id: None,
            allowed_origins: Vec::new(),
            client_addr_header: None,
            action_timeout_ms: 10_000,
            max_frame_bytes: 64 * 1024,
            rate_per_sec: 20.0,
            rate_burst: 40.0,
            outbox_frames: 256,
            drain_ms: 10_000,
        }
    }
}

impl GatewaySettings {
    pub fn action_timeout(&self) -> Duration {
        Duration::from_millis(self.action_timeout_ms)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }
}
