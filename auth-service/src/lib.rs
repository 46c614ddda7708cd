//! auth-service: accounts and sessions.
//!
//! - [`handler`]: routes each action to the module that handles it.
//! - [`service`]: the state every action is handed.
//! - [`registration`]: REGISTER, CONFIRMATION, RESEND_CONFIRMATION.
//! - [`sessions`]: LOGIN, FASTLOGIN, LOGOUT.
//! - [`profiles`]: UPDATE_PROFILE, and what chat-service is told of profiles.
//! - [`replies`]: the data of the replies that carry any, one struct each.
//! - [`credentials`]: e-mail and password parsing, hashing, codes and tokens.
//! - [`store`]: the `users` and `sessions` collections.
//! - [`limits`]: bounds on guessing codes and passwords, in Redis.
//! - [`outcome`]: what an action produces, and the one mapping of failures to
//!   client frames.

pub mod credentials;
pub mod handler;
pub mod limits;
pub mod mail;
pub mod outcome;
pub mod profiles;
pub mod registration;
pub mod replies;
pub mod resume_cache;
pub mod service;
pub mod sessions;
pub mod settings;
pub mod startup;
pub mod store;

pub use settings::Settings;
