//! What crosses a process boundary in Switchyard.
//!
//! - [`client`]: the WebSocket envelope the existing clients speak, and the
//!   frames the server sends back.
//! - [`status`]: the machine-readable error codes of that envelope.
//! - [`routing`]: which service owns which client action.
//! - [`action`]: each service's actions as an enum with typed payloads, and
//!   the typed ids they carry.
//! - [`envelope`]: what the gateway puts on the bus and what services send back.
//! - [`names`]: Redis stream and channel names, in one place.
//! - [`profiles`]: what auth-service tells chat-service of a user's profile.
//! - [`position`]: where a pushed event stands, for `SYNC`.
//!
//! With the `runtime` feature, also the pieces every binary shares: the Redis
//! bus client and stream worker ([`bus`]), layered settings ([`settings`]),
//! logging ([`telemetry`]), metrics and probes ([`observability`]) and
//! graceful shutdown ([`shutdown`]), and the one way a stream-consuming
//! service starts ([`service`]); how chat-service's messages are split ([`partitions`]). With the `store` feature, the MongoDB
//! connection and error type every service's store module uses ([`store`]).

pub mod action;
pub mod client;
pub mod envelope;
pub mod mail;
pub mod names;
pub mod partitions;
pub mod position;
pub mod profiles;
pub mod routing;
pub mod status;

#[cfg(feature = "runtime")]
pub mod bus;
#[cfg(feature = "runtime")]
pub mod observability;
#[cfg(feature = "runtime")]
pub mod service;
#[cfg(feature = "runtime")]
pub mod settings;
#[cfg(feature = "runtime")]
pub mod shutdown;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "runtime")]
pub mod telemetry;

/// Milliseconds since the Unix epoch, the one clock format on the bus.
pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
