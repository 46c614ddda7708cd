//! The Redis bus: one stream per service for actions, pub/sub for replies
//! and pushed events. Every binary speaks Redis through this module only.
//!
//! - [`Bus`]: a cheap-to-clone handle for submitting, publishing and the
//!   bookkeeping commands.
//! - [`worker`]: reads a stream through a consumer group, hands entries to a
//!   handler, and acknowledges them once the handler says they are done.
//! - [`dead_letters`]: where the worker puts entries it gives up on.
//! - [`history`]: the events kept for `SYNC`, and how they are published.
//! - `finishing`: entries finishing at once, published and acknowledged
//!   together.
//! - [`versioned_map`]: copies of maps whose entries only move up.

pub mod actions;
pub mod admission;
pub mod dead_letters;
mod fence;
mod finishing;
pub mod history;
mod key_slots;
pub mod presence;
mod queue_delay;
pub mod sessions;
pub mod versioned_map;
pub mod worker;

pub use finishing::Finished;
pub use queue_delay::{LeastDelay, PUBLISH_EVERY as DELAY_REPORTED_EVERY, publish_ticks};

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;

use crate::envelope::{ActionRequest, ToGateway};
use crate::names::Names;
use crate::routing::Service;

/// The field under which every stream entry carries its JSON body.
pub const ENTRY_FIELD: &str = "e";

/// How long a plain (non-blocking) Redis command may take before it counts as
/// failed. Generous, because a failure here means "service unavailable".
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("encoding a bus message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed answer from redis: {0}")]
    Malformed(String),
}

/// Bounds a Redis command: while the connection manager reconnects, commands
/// wait for it, and a client must hear "unavailable" sooner than that.
pub async fn bounded<T>(
    command: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BusError::Timeout(COMMAND_TIMEOUT)),
    }
}

/// A message to publish, and the channel to publish it on.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub channel: String,
    pub message: ToGateway,
    /// The history it is also kept in, for a client that misses it to
    /// `SYNC` it (see [`history`]); `None` for what is live only: replies,
    /// and signals such as typing that are worth nothing later.
    pub kept_in: Option<String>,
}

impl Publication {
    /// A message for whoever listens now, kept nowhere.
    pub fn live(channel: String, message: ToGateway) -> Publication {
        Publication {
            channel,
            message,
            kept_in: None,
        }
    }
}

/// A handle on the bus. Clones share one multiplexed connection, which
/// reconnects by itself after Redis comes back.
#[derive(Clone)]
pub struct Bus {
    client: redis::Client,
    connection: ConnectionManager,
    names: Names,
    history: history::HistoryLimits,
    /// Shared by every clone: entries finishing at once, finished together.
    finishing: std::sync::Arc<finishing::Finishing>,
}

impl Bus {
    /// Connects, retrying with backoff until Redis answers or `give_up` ends.
    pub async fn connect(
        url: &str,
        names: Names,
        give_up: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Bus> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            // Reconnect attempts stay short, so the bus is usable again soon
            // after Redis is.
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let connection = crate::shutdown::retry_until_ok(give_up, "connect to redis", || {
            client.get_connection_manager_with_config(config.clone())
        })
        .await?;
        Ok(Bus {
            client,
            connection,
            names,
            history: history::HistoryLimits::default(),
            finishing: Default::default(),
        })
    }

    /// The names of streams and channels.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The underlying client, for connections that must not be shared (a
    /// blocking read, a subscription).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// True if Redis answers a PING.
    pub async fn is_reachable(&self) -> bool {
        let mut connection = self.connection.clone();
        bounded(redis::cmd("PING").query_async::<String>(&mut connection))
            .await
            .is_ok()
    }

    /// Puts a client action on its service's stream.
    pub async fn submit(&self, service: Service, request: &ActionRequest) -> Result<(), BusError> {
        self.append(&self.names.action_stream(service), request)
            .await
    }

    /// Appends a JSON entry to a stream.
    pub async fn append(&self, stream: &str, body: &impl Serialize) -> Result<(), BusError> {
        let body = serde_json::to_string(body)?;
        let mut connection = self.connection.clone();
        let _: String = bounded(connection.xadd(stream, "*", &[(ENTRY_FIELD, body)])).await?;
        Ok(())
    }

    /// Appends a JSON entry to a stream unless an entry with the same `job_id`
    /// was appended before (within `remember`). Returns whether it appended.
    ///
    /// This is what keeps a redelivered action from enqueueing a second mail:
    /// the marker and the entry are written by one atomic script.
    pub async fn append_once(
        &self,
        stream: &str,
        job_id: &str,
        remember: Duration,
        body: &impl Serialize,
    ) -> Result<bool, BusError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                r"if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
                    redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
                    return 1
                  end
                  return 0",
            )
        });
        let body = serde_json::to_string(body)?;
        let mut connection = self.connection.clone();
        let appended: i64 = bounded(
            SCRIPT
                .key(self.names.mail_enqueued_marker(job_id))
                .key(stream)
                .arg(u64::try_from(remember.as_millis()).unwrap_or(u64::MAX))
                .arg(ENTRY_FIELD)
                .arg(body)
                .invoke_async(&mut connection),
        )
        .await?;
        Ok(appended == 1)
    }

    /// True the first time it is called for `key` within `window`, on any
    /// replica; false until the window has passed (a throttle shared by all).
    pub async fn first_within(&self, key: &str, window: Duration) -> Result<bool, BusError> {
        let mut command = redis::cmd("SET");
        command
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let mut connection = self.connection.clone();
        let set: Option<String> = bounded(command.query_async(&mut connection)).await?;
        Ok(set.is_some())
    }

    /// Counts one more event under `key` and returns the count within the
    /// window that started with the first one (a fixed window shared by every
    /// replica): one round trip.
    pub async fn count_within(&self, key: &str, window: Duration) -> Result<u64, BusError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(key)
            .arg(0)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1))
            .ignore()
            .incr(key, 1);
        let mut connection = self.connection.clone();
        let (count,): (u64,) = bounded(pipe.query_async(&mut connection)).await?;
        Ok(count)
    }

    /// The value shared under `key` by every replica: `candidate` if nobody
    /// set one yet, else the one already there.
    pub async fn shared_value(&self, key: &str, candidate: &str) -> Result<String, BusError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(key)
            .arg(candidate)
            .arg("NX")
            .ignore()
            .get(key);
        let mut connection = self.connection.clone();
        let (value,): (String,) = bounded(pipe.query_async(&mut connection)).await?;
        Ok(value)
    }

    /// True if [`Bus::append_once`] appended the job with this id (within the
    /// time it remembers jobs).
    pub async fn was_appended(&self, job_id: &str) -> Result<bool, BusError> {
        let mut connection = self.connection.clone();
        bounded(connection.exists(self.names.mail_enqueued_marker(job_id))).await
    }

    /// Publishes one message, kept nowhere.
    pub async fn publish(&self, channel: &str, message: &ToGateway) -> Result<(), BusError> {
        self.publish_all(&[Publication::live(channel.to_owned(), message.clone())])
            .await
    }

    /// Publishes several messages in one round trip, in order, keeping those
    /// that have a history.
    pub async fn publish_all(&self, publications: &[Publication]) -> Result<(), BusError> {
        if publications.is_empty() {
            return Ok(());
        }
        if publications.iter().any(|p| p.kept_in.is_some()) {
            return self.publish_kept(publications, &[]).await;
        }
        let mut pipe = redis::pipe();
        for publication in publications {
            pipe.publish(
                &publication.channel,
                serde_json::to_string(&publication.message)?,
            )
            .ignore();
        }
        let mut connection = self.connection.clone();
        bounded(pipe.query_async::<()>(&mut connection)).await?;
        Ok(())
    }

    /// Publishes a notice between services' replicas, kept nowhere.
    pub async fn publish_notice(&self, channel: &str, notice: &str) -> Result<(), BusError> {
        let mut connection = self.connection.clone();
        bounded(connection.publish::<_, _, ()>(channel, notice)).await?;
        Ok(())
    }

    /// Entries of a stream not yet acknowledged, read or not. Workers delete
    /// what they acknowledge, so this is simply the stream's length.
    pub async fn backlog(&self, stream: &str) -> Result<u64, BusError> {
        let mut connection = self.connection.clone();
        bounded(connection.xlen(stream)).await
    }

    /// The shared multiplexed connection, for commands this module has no
    /// method for. Bound every use with a timeout: while Redis is away the
    /// manager waits for it.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }
}
