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
//! - An entry that fails on each of `max_deliveries` deliveries, or cannot be
//!   decoded, is moved to the dead-letter stream rather than retried forever
//!   (see [`super::dead_letters`]); its handler may answer its requester first
//!   ([`EntryHandler::given_up`]).
//!
//! Fairness and stale work:
//! - Entries are read ahead of the handlers (up to `max_held`), and each
//!   waits for a slot of its own key (a user) before it waits for one of the
//!   `max_in_flight` slots. Slots are handed out first come, first served, so
//!   one key with a thousand entries holds at most `per_key_in_flight` places
//!   in that line: another key's entry waits behind a few entries of each
//!   busy key, not behind the whole backlog of one.
//! - An entry the handler marks with a deadline ([`Admission::shed_at_ms`])
//!   that passes before it starts is acknowledged without being handled: its
//!   requester has been told `TIMEOUT` and no longer waits.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncConnectionConfig, Value};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::dead_letters::{self, GivenUp, Reason, Verdict};
pub use super::fence::Fence;
use super::key_slots::KeySlots;
use super::queue_delay::{self, QueueDelay, admitted_at};
use super::{Bus, ENTRY_FIELD, Publication};

mod contract;
mod waits;

pub use contract::{Admission, Delivery, Disposition, EntryHandler, WorkerConfig};
use waits::Waits;

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
    let key_slots = KeySlots::new(config.per_key_in_flight);
    let waits = Waits::of(&config.stream);
    let finished_in = (
        Arc::from(config.stream.as_str()),
        Arc::from(config.group.as_str()),
    );
    let worker = Arc::new(Worker {
        bus,
        config,
        handler,
        in_flight: Mutex::new(HashSet::new()),
        permits: Arc::new(Semaphore::new(0)),
        held: Arc::new(Semaphore::new(0)),
        key_slots,
        finished_in,
        queue_delay: QueueDelay::default(),
        waits,
        tasks: TaskTracker::new(),
        _entry: std::marker::PhantomData,
    });
    worker
        .permits
        .add_permits(worker.config.max_in_flight.max(1));
    worker.held.add_permits(
        worker
            .config
            .max_held
            .max(worker.config.max_in_flight)
            .max(1),
    );
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
    /// Entry ids read by this process and not finished.
    in_flight: Mutex<HashSet<String>>,
    /// Slots for handling, shared by every key.
    permits: Arc<Semaphore>,
    /// Places for entries read and not finished.
    held: Arc<Semaphore>,
    /// Slots per key, while the key has entries here.
    key_slots: Arc<KeySlots>,
    /// The stream and group of `config`, shared with each finished entry.
    finished_in: (Arc<str>, Arc<str>),
    /// How long entries wait here, for the gateways.
    queue_delay: QueueDelay,
    /// How long entries wait here, by stage, for the operators.
    waits: Waits,
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
                let count = self.held.available_permits().clamp(1, 64);
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
                        let delivery = Delivery {
                            entry_id: entry.id.clone(),
                            reclaimed: false,
                            deliveries: 1,
                        };
                        self.clone().dispatch(entry, delivery, &shutdown).await;
                    }
                }
                Err(err) => {
                    connection = None;
                    failures += 1;
                    if is_missing_group(&err) {
                        continue;
                    }
                    warn!(error = %err, stream = %self.config.stream, "reading the stream failed; retrying");
                    // Capped at a second: work waits while this replica does.
                    let pause = Duration::from_millis(200 * u64::from(failures.min(5)));
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
        if self.config.adopt_at_start
            && let Err(err) = self.claim_abandoned(&shutdown, Duration::ZERO).await
        {
            // Claimed after `claim_idle` instead.
            debug!(error = %err, "adopting the entries left pending failed");
        }
        let mut claim_tick = tokio::time::interval(self.config.claim_idle / 2);
        let mut refresh_tick = tokio::time::interval(self.config.claim_idle / 3);
        let mut delay_tick = queue_delay::publish_ticks();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = delay_tick.tick() => {
                    if let Some(delay_ms) = self.queue_delay.take_sample(crate::now_ms()) {
                        metrics::gauge!("switchyard_bus_queue_delay_ms", "stream" => self.config.stream.clone())
                            .set(delay_ms as f64);
                        let published = self.bus.publish_queue_delay(&self.config.stream, &self.config.consumer, delay_ms);
                        if let Err(err) = published.await {
                            debug!(error = %err, "publishing the queue delay failed");
                        }
                    }
                }
                _ = refresh_tick.tick() => {
                    if let Err(err) = self.refresh_in_flight().await {
                        debug!(error = %err, "refreshing entries in hand failed");
                    }
                }
                _ = claim_tick.tick() => {
                    if let Err(err) = self.claim_abandoned(&shutdown, self.config.claim_idle).await {
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
        min_idle: Duration,
    ) -> Result<(), super::BusError> {
        let mut connection = self.bus.connection();
        let mut cursor = "0-0".to_owned();
        // Bounded: a few pages per tick; the rest waits for the next tick.
        for _ in 0..8 {
            let count = self.held.available_permits();
            if count == 0 {
                return Ok(());
            }
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&self.config.consumer)
                .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
                .arg(&cursor)
                .arg("COUNT")
                .arg(count.min(32))
                .query_async(&mut connection)
                .await?;
            // Claiming counted a delivery; how many there have been decides
            // whether the entry gets another try. Entries whose count cannot
            // be read stay claimed, to be claimed again later.
            let ids: Vec<&str> = reply.claimed.iter().map(|e| e.id.as_str()).collect();
            let counts = self
                .bus
                .delivery_counts(&self.config.stream, &self.config.group, &ids)
                .await?;
            for entry in reply.claimed {
                let Some(&deliveries) = counts.get(&entry.id) else {
                    continue;
                };
                info!(entry = %entry.id, stream = %self.config.stream, deliveries, "claimed an abandoned entry");
                metrics::counter!("switchyard_bus_entries_claimed_total", "stream" => self.config.stream.clone())
                    .increment(1);
                let delivery = Delivery {
                    entry_id: entry.id.clone(),
                    reclaimed: true,
                    deliveries,
                };
                self.clone().dispatch(entry, delivery, shutdown).await;
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

    /// Takes one entry into this replica's hands (waiting for a place if
    /// `max_held` are here), then schedules it without waiting for it.
    async fn dispatch(
        self: Arc<Self>,
        entry: StreamId,
        delivery: Delivery,
        shutdown: &CancellationToken,
    ) {
        if !self.lock_in_flight().insert(entry.id.clone()) {
            return; // already in hand here
        }
        let place = tokio::select! {
            place = self.held.clone().acquire_owned() => place,
            _ = shutdown.cancelled() => {
                self.lock_in_flight().remove(&entry.id);
                return;
            }
        };
        let Ok(place) = place else { return };
        let span = info_span!("entry", stream = %self.config.stream, entry = %entry.id);
        let worker = self.clone();
        // Only a first delivery's age measures the queue.
        let admitted = admitted_at(&entry.id).filter(|_| delivery.deliveries == 1);
        if let Some(at) = admitted {
            self.queue_delay.took(at);
            self.waits.queued(at, crate::now_ms());
        }
        self.tasks.spawn(
            async move {
                let finished = worker.clone().schedule(entry, delivery).await;
                if let Some(at) = admitted {
                    worker
                        .queue_delay
                        .released(at, finished.then(crate::now_ms));
                }
                drop(place);
            }
            .instrument(span),
        );
    }

    /// Waits for the entry's key slot, then for a handling slot, then
    /// handles it; or sheds it if its deadline passes first, or gives up on
    /// it if it cannot be decoded or has had its deliveries. True if it was
    /// handled and acknowledged.
    async fn schedule(self: Arc<Self>, entry: StreamId, delivery: Delivery) -> bool {
        let id = entry.id.clone();
        let body: Option<String> = entry.get(ENTRY_FIELD);
        let parsed = match body.as_deref().map(serde_json::from_str::<T>) {
            Some(Ok(value)) => value,
            Some(Err(err)) => {
                let reason = Reason::Undecodable(err.to_string());
                self.give_up(&delivery, body.as_deref(), &reason).await;
                return false;
            }
            None => {
                let reason = Reason::Undecodable("the entry has no body".into());
                self.give_up(&delivery, None, &reason).await;
                return false;
            }
        };
        let max = self.config.max_deliveries;
        if dead_letters::before_handling(delivery.deliveries, max) == Verdict::GiveUp {
            self.give_up(&delivery, body.as_deref(), &Reason::NeverFinished)
                .await;
            return false;
        }
        let admission = self.handler.admission(&parsed);
        let asked_for_slots = Instant::now();
        let waiting = async {
            let key_slot = match &admission.key {
                Some(key) => Some(self.key_slots.acquire(key).await),
                None => None,
            };
            let permit = self.permits.clone().acquire_owned().await;
            (key_slot, permit)
        };
        let slots = match admission.shed_at_ms {
            Some(at) => tokio::time::timeout(time_until(at), waiting).await.ok(),
            None => Some(waiting.await),
        };
        let Some((key_slot, Ok(permit))) = slots else {
            self.shed(&id).await;
            return false;
        };
        if admission.shed_at_ms.is_some_and(|at| crate::now_ms() >= at) {
            drop((key_slot, permit));
            self.shed(&id).await;
            return false;
        }
        self.waits
            .slot
            .record(asked_for_slots.elapsed().as_secs_f64());
        // Run the handler as its own task so that a panic in it is caught
        // here instead of taking the worker down, and so that a handling
        // stuck on something that never answers can be abandoned.
        let handler = self.handler.clone();
        let handled = delivery.clone();
        let handling = tokio::spawn(async move { handler.handle(parsed, handled).await });
        let abandon = handling.abort_handle();
        let limit = self.handling_limit(admission.shed_at_ms);
        let (disposition, failure) = match tokio::time::timeout(limit, handling).await {
            Ok(Ok(disposition)) => (disposition, Reason::Failed),
            Ok(Err(panic)) => {
                let reason = Reason::panicked(panic);
                error!(%reason, deliveries = delivery.deliveries, "handler failed");
                (Disposition::Retry, reason)
            }
            Err(_elapsed) => {
                abandon.abort();
                metrics::counter!("switchyard_bus_handlings_abandoned_total", "stream" => self.config.stream.clone())
                    .increment(1);
                if admission.shed_at_ms.is_some() {
                    drop((key_slot, permit));
                    self.shed(&id).await;
                    return false;
                }
                warn!(
                    entry = %id,
                    stream = %self.config.stream,
                    limit_ms = limit.as_millis() as u64,
                    deliveries = delivery.deliveries,
                    "handling took too long and was abandoned; the entry will be handled again",
                );
                (Disposition::Retry, Reason::TimedOut(limit))
            }
        };
        drop(permit);
        drop(key_slot);
        if matches!(disposition, Disposition::Retry)
            && dead_letters::after_failure(delivery.deliveries, max) == Verdict::GiveUp
        {
            self.give_up(&delivery, body.as_deref(), &failure).await;
            return false;
        }
        self.conclude(&id, disposition).await
    }

    /// How long a handling may run: the handle timeout, or less when its
    /// requester stops waiting sooner.
    fn handling_limit(&self, shed_at_ms: Option<i64>) -> Duration {
        let limit = self.config.handle_timeout;
        match shed_at_ms {
            Some(at) => limit.min(time_until(at)),
            None => limit,
        }
    }

    /// Moves an entry to the dead-letter stream, after publishing what its
    /// handler has to say about it. If either fails the entry stays pending,
    /// to be given up on again at its next delivery.
    async fn give_up(&self, delivery: &Delivery, body: Option<&str>, reason: &Reason) {
        let id = delivery.entry_id.as_str();
        let publications = body
            .and_then(|body| serde_json::from_str::<T>(body).ok())
            .map(|entry| self.handler.given_up(&entry, delivery.deliveries, reason))
            .unwrap_or_default();
        let given_up = GivenUp {
            stream: &self.config.stream,
            group: &self.config.group,
            entry_id: id,
            body,
            deliveries: delivery.deliveries,
            reason,
        };
        let moved = async {
            self.bus.publish_all(&publications).await?;
            self.bus
                .move_to_dead_letters(&self.config.dead_letters, &given_up)
                .await
        };
        match moved.await {
            Ok(()) => {
                metrics::counter!("switchyard_bus_entries_dead_lettered_total", "stream" => self.config.stream.clone())
                    .increment(1);
                error!(
                    entry = %id,
                    stream = %self.config.stream,
                    dead_letters = %self.config.dead_letters,
                    deliveries = delivery.deliveries,
                    reason = %reason,
                    "giving up on an entry; it is on the dead-letter stream",
                );
            }
            Err(err) => {
                warn!(error = %err, "could not move an entry to the dead-letter stream; it stays pending");
            }
        }
        self.lock_in_flight().remove(id);
    }

    /// Acknowledges an entry whose requester stopped waiting, unhandled.
    async fn shed(&self, id: &str) {
        debug!(entry = %id, "shedding an entry nobody waits for any more");
        metrics::counter!("switchyard_bus_entries_shed_total", "stream" => self.config.stream.clone())
            .increment(1);
        self.conclude(id, Disposition::Done(Vec::new())).await;
    }

    /// Publishes and acknowledges what was done, unless this replica may no
    /// longer; true if the entry was acknowledged.
    async fn conclude(&self, id: &str, disposition: Disposition) -> bool {
        if self
            .config
            .fence
            .as_ref()
            .is_some_and(|fence| !fence.holds())
        {
            // Possibly another replica's now: it claims the entry and, its
            // handling being idempotent, finishes it once.
            warn!(entry = %id, stream = %self.config.stream, "lease lapsed; leaving the entry to the stream's next holder");
            metrics::counter!("switchyard_bus_entries_fenced_total", "stream" => self.config.stream.clone())
                .increment(1);
            self.lock_in_flight().remove(id);
            return false;
        }
        let mut acknowledged = false;
        if let Disposition::Done(publications) = disposition {
            let handled_at = Instant::now();
            match self.finish(id, publications).await {
                Ok(()) => {
                    self.waits.finish.record(handled_at.elapsed().as_secs_f64());
                    acknowledged = true;
                }
                Err(err) => {
                    warn!(error = %err, "could not publish or acknowledge; the entry will be retried");
                }
            }
        }
        self.lock_in_flight().remove(id);
        acknowledged
    }

    /// Publishes (and keeps) the handler's messages and acknowledges and
    /// deletes the entry, in one atomic step (with other entries finishing
    /// at the same moment, see [`Bus::finish_entry`]): a crash can neither
    /// lose the messages of an acknowledged entry nor, by handling it
    /// again, publish and keep them twice.
    async fn finish(
        &self,
        id: &str,
        publications: Vec<Publication>,
    ) -> Result<(), Arc<super::BusError>> {
        self.bus
            .finish_entry(super::Finished {
                stream: self.finished_in.0.clone(),
                group: self.finished_in.1.clone(),
                entry_id: id.to_owned(),
                publications,
            })
            .await
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
        lock(&self.in_flight)
    }
}

/// From now until `at_ms` (ms since the epoch); zero once it has passed.
fn time_until(at_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(at_ms - crate::now_ms()).unwrap_or(0))
}

fn lock<V>(mutex: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    // Plain bookkeeping; a panic elsewhere cannot leave it torn.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_missing_group(err: &redis::RedisError) -> bool {
    err.code() == Some("NOGROUP")
}
