//! Reads one stream through a consumer group and hands each entry to a
//! handler, so that the replicas of a service share the work and each entry
//! is handled once.
//!
//! Delivery guarantees, and how they are kept:
//! - An entry is acknowledged (and deleted) only after its handler returned
//!   [`Disposition::Done`] and the handler's publications went out. A replica
//!   that dies before that leaves the entry pending.
//! - Every replica periodically claims entries that have been pending longer
//!   than `claim_idle` (XAUTOCLAIM), so a dead replica's work is finished by
//!   the living. Handlers must therefore be idempotent by entry content.
//! - A replica keeps the entries it is still working on fresh (XCLAIM to
//!   itself), so a slow but living replica's work is not stolen.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncConnectionConfig, Value};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::{Bus, ENTRY_FIELD, Publication};

/// How one worker reads its stream.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub stream: String,
    pub group: String,
    /// This replica's name in the group; unique per process.
    pub consumer: String,
    /// How long an entry may stay pending with a silent consumer before
    /// another replica claims it.
    pub claim_idle: Duration,
    /// Entries handled at once by this replica.
    pub max_in_flight: usize,
    /// How long to wait, once stopping, for entries already being handled.
    pub drain_timeout: Duration,
}

/// What a handler decided about an entry.
#[derive(Debug)]
pub enum Disposition {
    /// Its effect is durable: publish these, then acknowledge the entry.
    Done(Vec<Publication>),
    /// It could not be handled now; leave it pending so that it is claimed
    /// and tried again after `claim_idle`.
    Retry,
}

/// Facts about one delivery of an entry.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entry_id: String,
    /// True when the entry was claimed from another (presumably dead) replica.
    pub reclaimed: bool,
}

/// Handles the entries of one stream.
pub trait EntryHandler<T>: Send + Sync + 'static {
    fn handle(&self, entry: T, delivery: Delivery) -> impl Future<Output = Disposition> + Send;
}

/// A unique consumer name for this process.
pub fn consumer_name(role: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!(
        "{role}-{host}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Runs until `shutdown` is cancelled, then waits (up to the drain timeout)
/// for the entries in hand.
pub async fn run<T, H>(bus: Bus, config: WorkerConfig, handler: Arc<H>, shutdown: CancellationToken)
where
    T: DeserializeOwned + Send + 'static,
    H: EntryHandler<T>,
{
    let worker = Arc::new(Worker {
        bus,
        config,
        handler,
        in_flight: Mutex::new(HashSet::new()),
        permits: Arc::new(Semaphore::new(0)),
        tasks: TaskTracker::new(),
        _entry: std::marker::PhantomData,
    });
    worker
        .permits
        .add_permits(worker.config.max_in_flight.max(1));
    info!(stream = %worker.config.stream, consumer = %worker.config.consumer, "worker started");

    let keeper = tokio::spawn(worker.clone().keep_claiming(shutdown.clone()));
    worker.clone().read_new_entries(shutdown.clone()).await;
    keeper.abort();

    worker.tasks.close();
    if tokio::time::timeout(worker.config.drain_timeout, worker.tasks.wait())
        .await
        .is_err()
    {
        warn!("stopping with entries still in hand; another replica will claim them");
    }
    info!(stream = %worker.config.stream, "worker stopped");
}

struct Worker<T, H> {
    bus: Bus,
    config: WorkerConfig,
    handler: Arc<H>,
    /// Entry ids being handled by this process right now.
    in_flight: Mutex<HashSet<String>>,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
    _entry: std::marker::PhantomData<fn() -> T>,
}

impl<T, H> Worker<T, H>
where
    T: DeserializeOwned + Send + 'static,
    H: EntryHandler<T>,
{
    /// The main loop: blocking reads of entries never delivered before.
    async fn read_new_entries(self: Arc<Self>, shutdown: CancellationToken) {
        let block = Duration::from_secs(2);
        let mut connection: Option<MultiplexedConnection> = None;
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let result = async {
                if connection.is_none() {
                    connection = Some(self.blocking_connection(block).await?);
                    self.ensure_group().await?;
                }
                let conn = connection.as_mut().expect("connected just above");
                let count = self.permits.available_permits().clamp(1, 32);
                let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(&self.config.group)
                    .arg(&self.config.consumer)
                    .arg("COUNT")
                    .arg(count)
                    .arg("BLOCK")
                    .arg(u64::try_from(block.as_millis()).unwrap_or(2000))
                    .arg("STREAMS")
                    .arg(&self.config.stream)
                    .arg(">")
                    .query_async(conn)
                    .await?;
                Ok::<_, redis::RedisError>(reply)
            };
            let reply = tokio::select! {
                _ = shutdown.cancelled() => break,
                reply = result => reply,
            };
            match reply {
                Ok(reply) => {
                    failures = 0;
                    let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
                    for entry in entries {
                        self.clone().dispatch(entry, false, &shutdown).await;
                    }
                }
                Err(err) => {
                    connection = None;
                    failures += 1;
                    if is_missing_group(&err) {
                        continue;
                    }
                    warn!(error = %err, stream = %self.config.stream, "reading the stream failed; retrying");
                    let pause = Duration::from_millis(200 * u64::from(failures.min(25)));
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Claims entries abandoned by dead replicas, and keeps our own fresh.
    async fn keep_claiming(self: Arc<Self>, shutdown: CancellationToken) {
        let mut claim_tick = tokio::time::interval(self.config.claim_idle / 2);
        let mut refresh_tick = tokio::time::interval(self.config.claim_idle / 3);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = refresh_tick.tick() => {
                    if let Err(err) = self.refresh_in_flight().await {
                        debug!(error = %err, "refreshing entries in hand failed");
                    }
                }
                _ = claim_tick.tick() => {
                    if let Err(err) = self.claim_abandoned(&shutdown).await {
                        debug!(error = %err, "claiming abandoned entries failed");
                    }
                    if let Err(err) = self.report_lag().await {
                        debug!(error = %err, "reading the stream's lag failed");
                    }
                }
            }
        }
    }

    async fn claim_abandoned(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> redis::RedisResult<()> {
        let mut connection = self.bus.connection();
        let mut cursor = "0-0".to_owned();
        // Bounded: a few pages per tick; the rest waits for the next tick.
        for _ in 0..8 {
            let count = self.permits.available_permits();
            if count == 0 {
                return Ok(());
            }
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&self.config.consumer)
                .arg(u64::try_from(self.config.claim_idle.as_millis()).unwrap_or(u64::MAX))
                .arg(&cursor)
                .arg("COUNT")
                .arg(count.min(32))
                .query_async(&mut connection)
                .await?;
            for entry in reply.claimed {
                info!(entry = %entry.id, stream = %self.config.stream, "claimed an abandoned entry");
                metrics::counter!("switchyard_bus_entries_claimed_total", "stream" => self.config.stream.clone())
                    .increment(1);
                self.clone().dispatch(entry, true, shutdown).await;
            }
            if reply.next_stream_id == "0-0" {
                return Ok(());
            }
            cursor = reply.next_stream_id;
        }
        Ok(())
    }

    /// Publishes how far behind the group is: entries not yet acknowledged
    /// (acknowledged ones are deleted, so that is the stream's length) and,
    /// of those, entries delivered to a consumer and not yet done.
    async fn report_lag(&self) -> redis::RedisResult<()> {
        let mut connection = self.bus.connection();
        let (length, pending): (u64, Value) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.config.stream)
            .cmd("XPENDING")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .query_async(&mut connection)
            .await?;
        let pending = match pending {
            Value::Array(fields) => match fields.first() {
                Some(Value::Int(count)) => *count as f64,
                _ => 0.0,
            },
            _ => 0.0,
        };
        let stream = self.config.stream.clone();
        metrics::gauge!("switchyard_bus_backlog_entries", "stream" => stream.clone())
            .set(length as f64);
        metrics::gauge!("switchyard_bus_pending_entries", "stream" => stream).set(pending);
        Ok(())
    }

    async fn refresh_in_flight(&self) -> redis::RedisResult<()> {
        let ids: Vec<String> = self.lock_in_flight().iter().cloned().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut connection = self.bus.connection();
        redis::cmd("XCLAIM")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg(0)
            .arg(&ids)
            .arg("JUSTID")
            .query_async::<Value>(&mut connection)
            .await?;
        Ok(())
    }

    /// Starts handling one entry once a slot is free.
    async fn dispatch(
        self: Arc<Self>,
        entry: StreamId,
        reclaimed: bool,
        shutdown: &CancellationToken,
    ) {
        if !self.lock_in_flight().insert(entry.id.clone()) {
            return; // already in hand here
        }
        let permit = tokio::select! {
            permit = self.permits.clone().acquire_owned() => permit,
            _ = shutdown.cancelled() => {
                self.lock_in_flight().remove(&entry.id);
                return;
            }
        };
        let Ok(permit) = permit else { return };
        let span = info_span!("entry", stream = %self.config.stream, entry = %entry.id);
        let worker = self.clone();
        self.tasks.spawn(
            async move {
                worker.handle(entry, reclaimed).await;
                drop(permit);
            }
            .instrument(span),
        );
    }

    async fn handle(&self, entry: StreamId, reclaimed: bool) {
        let id = entry.id.clone();
        let body: Option<String> = entry.get(ENTRY_FIELD);
        let parsed = body.as_deref().map(serde_json::from_str::<T>);
        let disposition = match parsed {
            Some(Ok(value)) => {
                let delivery = Delivery {
                    entry_id: id.clone(),
                    reclaimed,
                };
                // Run the handler as its own task so that a panic in it is
                // caught here instead of taking the worker down.
                let handler = self.handler.clone();
                let handling = async move { handler.handle(value, delivery).await };
                match tokio::spawn(handling).await {
                    Ok(disposition) => disposition,
                    Err(panic) => {
                        error!(error = %panic, "handler panicked; the entry stays pending and will be retried");
                        Disposition::Retry
                    }
                }
            }
            Some(Err(err)) => {
                error!(error = %err, "dropping an entry that cannot be decoded");
                Disposition::Done(Vec::new())
            }
            None => {
                error!("dropping an entry without a body");
                Disposition::Done(Vec::new())
            }
        };
        if let Disposition::Done(publications) = disposition {
            if let Err(err) = self.finish(&id, &publications).await {
                warn!(error = %err, "could not publish or acknowledge; the entry will be retried");
            }
        }
        self.lock_in_flight().remove(&id);
    }

    /// Publishes the handler's messages, then acknowledges and deletes the
    /// entry: in that order, so a crash in between repeats the publication
    /// rather than losing it.
    async fn finish(&self, id: &str, publications: &[Publication]) -> Result<(), super::BusError> {
        self.bus.publish_all(publications).await?;
        let mut connection = self.bus.connection();
        redis::pipe()
            .atomic()
            .xack(&self.config.stream, &self.config.group, &[id])
            .ignore()
            .xdel(&self.config.stream, &[id])
            .ignore()
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    async fn blocking_connection(
        &self,
        block: Duration,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(block + Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(3)));
        self.bus
            .client()
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Creates the group (reading from the stream's start, so entries added
    /// before any replica ever ran are not skipped).
    async fn ensure_group(&self) -> redis::RedisResult<()> {
        let mut connection = self.bus.connection();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut connection)
            .await;
        match created {
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set holds plain strings; a panic elsewhere cannot leave it torn.
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn is_missing_group(err: &redis::RedisError) -> bool {
    err.code() == Some("NOGROUP")
}
