//! The gateway: holds client WebSockets and knows nothing of the database.
//!
//! - [`connection`]: one client's read loop: size, rate and envelope checks,
//!   then onto the bus.
//! - [`hub`]: the connections on this replica, who they are logged in as,
//!   and the requests waiting for an answer.
//! - [`listener`]: the Redis subscriptions that bring replies and events, and
//!   their dispatch to the hub.
//! - [`http`]: the routes: the WebSocket upgrade, `/healthz`, `/readyz`.
//! - [`startup`]: builds all of it from settings and runs it until stopped.

pub mod connection;
pub mod http;
pub mod hub;
pub mod listener;
pub mod rate_limit;
pub mod settings;
pub mod startup;

pub use settings::Settings;
pub use startup::Application;
