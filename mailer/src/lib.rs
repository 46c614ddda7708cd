//! The mailer: reads mail jobs from the bus and sends each one over SMTP,
//! once, or hands it to an operator through the dead-letter stream.
//!
//! - [`settings`]: what the binary reads from defaults, file and environment.
//! - [`startup`]: builds the service from settings and runs it until stopped.
//! - [`smtp`]: the SMTP transport and how a job becomes a message.
//! - [`handler`]: what happens to one job: skip, send, retry or give up.
//! - [`store`]: the `mail_log` collection that remembers what was sent.

pub mod handler;
pub mod settings;
pub mod smtp;
pub mod startup;
pub mod store;
