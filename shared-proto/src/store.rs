//! What every service's store module shares about MongoDB: the connection,
//! the one error type, the readiness ping and recognising a duplicate key.
//!
//! The collections themselves, their documents and indexes stay with the
//! service that owns them.

use std::time::Duration;

use mongodb::Database;
use mongodb::bson::doc;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;

use crate::settings::MongoSettings;

/// MongoDB's code for a unique index refusing a write.
pub const DUPLICATE_KEY: i32 = 11000;

/// The database is unreachable, refused the operation, or did not answer in
/// time.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("mongodb did not answer within {}s", .0.as_secs())]
    Timeout(Duration),
}

impl From<mongodb::bson::ser::Error> for StoreError {
    fn from(err: mongodb::bson::ser::Error) -> Self {
        StoreError::Mongo(err.into())
    }
}

impl StoreError {
    /// True if a unique index refused the write.
    pub fn is_duplicate_key(&self) -> bool {
        match self {
            StoreError::Mongo(err) => is_duplicate_key(err),
            StoreError::Timeout(_) => false,
        }
    }
}

/// How a service's client waits for the database.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// Shown in the server's logs and connection list.
    pub app_name: Option<String>,
    /// How long an operation waits for a server (and a connection to it)
    /// before failing; `None` leaves the driver's default of 30 s.
    pub server_timeout: Option<Duration>,
}

impl ClientSettings {
    /// Operations fail after a few seconds when the server is down, so
    /// clients hear about it instead of waiting.
    pub fn failing_fast(app_name: &str) -> Self {
        ClientSettings {
            app_name: Some(app_name.into()),
            server_timeout: Some(Duration::from_secs(3)),
        }
    }
}

/// Parses the URI and opens the database. The connection itself is made on
/// first use (the driver retries by itself), so a service starts even while
/// MongoDB is still coming up.
pub async fn connect(
    settings: &MongoSettings,
    client: ClientSettings,
) -> Result<Database, StoreError> {
    let mut options = ClientOptions::parse(settings.uri.expose()).await?;
    if let Some(app_name) = client.app_name {
        options.app_name = Some(app_name);
    }
    if let Some(timeout) = client.server_timeout {
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
    }
    // Round trips, not latency, are what a real MongoDB makes of a change
    // here (a development database without indexes says little about
    // time): every command is counted, by name.
    options.command_event_handler = Some(mongodb::event::EventHandler::callback(
        |event: mongodb::event::command::CommandEvent| {
            if let mongodb::event::command::CommandEvent::Started(started) = event {
                metrics::counter!("switchyard_store_commands_total", "command" => started.command_name)
                    .increment(1);
            }
        },
    ));
    let client = mongodb::Client::with_options(options)?;
    Ok(client.database(&settings.database))
}

/// True if the database answers.
pub async fn ping(database: &Database) -> bool {
    database.run_command(doc! {"ping": 1}).await.is_ok()
}

/// True if a unique index refused the write.
pub fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        _ => err.to_string().contains("E11000"),
    }
}
