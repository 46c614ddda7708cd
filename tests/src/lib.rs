//! Test support for Switchyard's end-to-end tests.
//!
//! Every test starts its own deployment: Redis, FerretDB (on SQLite) and
//! MailDev on free loopback ports in a temporary directory, then the
//! Switchyard binaries as real processes wired to them. Everything is killed
//! when the [`Stack`] is dropped. Nothing is skipped: a missing binary is a
//! panic that says how to install or build it.
//!
//! ```no_run
//! use switchyard_tests::{Client, Stack, signed_up_user};
//!
//! # async fn scenario() {
//! let stack = Stack::builder().gateways(2).start().await;
//! let mut ana = Client::connect(&stack.gateway_url(0)).await;
//! let session = signed_up_user(&stack, &mut ana, "ana@example.com").await;
//! let mut other_tab = Client::connect(&stack.gateway_url(1)).await;
//! let reply = other_tab.fastlogin(&session.email, &session.token).await;
//! assert_eq!(reply["rocketStatus"], "USER_LOGGED");
//! # }
//! ```
//!
//! Modules, one job each:
//! - [`stack`]: the deployment of one test, its builder and its controls.
//! - [`services`]: the tests' settings over the launcher's definitions.
//! - How each process is launched, found, started and checked is the
//!   `switchyard-launcher` crate's, shared with `./stack up` and the
//!   benchmark; [`process`], [`ports`] and [`locate`] are re-exported here.
//! - [`client`]: the WebSocket client; [`flows`]: the account actions on it.
//! - [`mail`]: what MailDev caught, and the confirmation code in it.
//! - [`stored`]: what the services wrote to the database.
//! - [`received`]: the kept events a client had, live and through `SYNC`.
//! - [`files`]: attachments over HTTP, and the pictures tests send.
//! - [`stalling_database`]: a relay that makes the database stop answering.

pub mod chat;
pub mod client;
pub mod files;
pub mod flows;
pub mod front_door;
pub mod mail;
pub mod received;
pub mod redis_commands;
pub mod services;
pub mod stack;
pub mod stalling_database;
pub mod stored;

pub use switchyard_launcher::{locate, ports, process};

pub use client::{Client, CloseCode, CloseFrame, REQUEST_TIMEOUT};
pub use flows::{
    DEFAULT_PASSWORD, Session, assert_status, register_request, signed_up_user, status,
    without_request_id,
};
pub use mail::{Mail, MailDev, extract_confirmation_code};
pub use services::{AUTH, CHAT, GATEWAY, MAILER};
pub use stack::{FERRETDB, MAILDEV, REDIS, Stack, StackBuilder};
pub use stored::{SESSIONS, USERS};
