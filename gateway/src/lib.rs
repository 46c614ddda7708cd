//! The gateway: holds client WebSockets and knows nothing of the database.
//!
//! - [`connection`]: one client's read loop: size, rate and envelope checks,
//!   then onto the bus.
//! - [`hub`]: the connections on this replica, who they are logged in as,
//!   and the requests waiting for an answer; [`handle`]: one of them.
//! - [`leases`]: the per-user limit on open connections, held in Redis.
//! - [`listener`]: the Redis subscriptions that bring replies and events, and
//!   their dispatch to the hub.
//! - [`login`]: letting a connection in as a user, and answering its login
//!   once it is ready.
//! - [`sync`]: `SYNC`, the events a client missed, answered here from the
//!   event histories ([`missed`]); [`replay`]: which events those are;
//!   [`catch_up`]: what this replica's clients missed while it was not
//!   listening to Redis.
//! - [`socket_writer`]: writes a connection's [`frame`]s to its socket,
//!   straight away while the socket has room.
//! - [`http`]: the routes: the WebSocket upgrade ([`upgrade`]), the web
//!   client ([`web`]), `/healthz`, `/readyz`, `/metrics`; [`server`] serves
//!   them.
//! - [`startup`]: builds all of it from settings and runs it until stopped.

pub mod catch_up;
pub mod connection;
pub mod delivery_delay;
pub mod frame;
pub mod handle;
pub mod http;
pub mod hub;
pub mod leases;
pub mod listener;
pub mod login;
pub mod missed;
pub mod rate_limit;
pub mod refusals;
pub mod replay;
pub mod server;
pub mod settings;
pub mod socket_writer;
pub mod startup;
pub mod sync;
pub mod upgrade;
pub mod web;

pub use settings::Settings;
pub use startup::Application;
