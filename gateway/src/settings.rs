//! The gateway's settings (see docs/configuration.md).

use std::time::Duration;

use serde::Deserialize;
use shared_proto::bus::admission::Budget;
use shared_proto::routing::ActionClass;
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
    /// Frames one connection may send: `rate_burst` at once, then
    /// `rate_per_sec` a second.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    /// What one user may do, across all its connections and every gateway,
    /// per kind of action.
    pub user_limits: UserLimits,
    /// Connections one user may have logged in at once, on all gateways.
    pub max_connections_per_user: usize,
    /// Entries a service's stream may hold before new actions for it are
    /// answered `BUSY`; about what its replicas finish within the action
    /// timeout. Each partition of the messages (`bus.chat_partitions`) may
    /// hold its part of it.
    pub max_backlog: u64,
    /// How long the messages on a partition may lately have waited before
    /// they were done (as chat-service reports), or events before a gateway
    /// handed them out (as each gateway reports), before new messages are
    /// answered `BUSY`: past capacity the queue stays about this short, so
    /// latency is back to normal about this soon after the load drops.
    pub max_queue_wait_ms: u64,
    /// The wait a `BUSY` answer suggests.
    pub busy_retry_ms: u64,
    /// Frames that may wait for one client once its socket's send buffer is
    /// full; a client that lets them reach this many is disconnected.
    pub outbox_frames: usize,
    /// On shutdown, how long to wait for answers to requests in flight.
    pub drain_ms: u64,
    /// How long a login reply may wait for the connection's subscriptions
    /// (its user's channel, and its groups' as chat-service tells them);
    /// after that it is sent anyway.
    pub login_setup_ms: u64,
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
            user_limits: UserLimits::default(),
            max_connections_per_user: 20,
            max_backlog: 2_000,
            max_queue_wait_ms: 1_000,
            busy_retry_ms: 1_000,
            outbox_frames: 256,
            drain_ms: 10_000,
            login_setup_ms: 3_000,
        }
    }
}

/// Per-user budgets, one per [`ActionClass`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UserLimits {
    pub send: Budget,
    pub read: Budget,
    pub search: Budget,
    pub account: Budget,
}

impl Default for UserLimits {
    fn default() -> Self {
        UserLimits {
            // A person types a few messages a second at most; bursts cover
            // pasting, resending after a reconnect and a client's start-up.
            send: Budget {
                per_sec: 10.0,
                burst: 30.0,
            },
            read: Budget {
                per_sec: 10.0,
                burst: 30.0,
            },
            search: Budget {
                per_sec: 2.0,
                burst: 10.0,
            },
            // Logging in again, resuming, logging out: a client does a
            // handful at start-up and after each reconnect.
            account: Budget {
                per_sec: 5.0,
                burst: 30.0,
            },
        }
    }
}

impl UserLimits {
    pub fn budget(&self, class: ActionClass) -> Budget {
        match class {
            ActionClass::Send => self.send,
            ActionClass::Read => self.read,
            ActionClass::Search => self.search,
            ActionClass::Account => self.account,
        }
    }
}

impl GatewaySettings {
    pub fn busy_retry(&self) -> Duration {
        Duration::from_millis(self.busy_retry_ms)
    }

    pub fn action_timeout(&self) -> Duration {
        Duration::from_millis(self.action_timeout_ms)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }

    pub fn login_setup(&self) -> Duration {
        Duration::from_millis(self.login_setup_ms)
    }
}
