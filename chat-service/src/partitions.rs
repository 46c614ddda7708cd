//! Which partitions of the messages (see `shared_proto::partitions`) this
//! replica reads. Each partition is held by one replica at a time through a
//! lease in Redis, so two replicas never write one conversation at once: its
//! numbers come from one replica's memory (`message_log`), in stream order.
//!
//! Every replica says it is alive (a sorted set, scored by time) and aims at
//! an equal share of the partitions: it takes free ones while it holds
//! fewer, and hands back the extra ones (after finishing what it read from
//! them) while it holds more, so a replica that joins gets its share within
//! a few renewals. A replica that dies stops renewing; its leases lapse
//! after `partition_lease_ms`, and whoever takes a partition first claims
//! every entry the dead one had read and not finished. One that is stopped
//! hands its partitions back at once.
//!
//! A replica that cannot renew a lease in time (Redis away, or the process
//! stalled) stops reading that partition, since another may have it by
//! then, and from a little before the lease lapses finishes nothing it
//! read from it (neither its answer nor its events go out, see
//! `worker::Fence`): the next holder claims those entries and finishes them
//! once. The unique (conversation, seq) index keeps the numbers right even
//! in that moment.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use shared_proto::bus::actions::ActionHandler;
use shared_proto::bus::worker::{self, Fence, WorkerConfig};
use shared_proto::bus::{Bus, BusError};
use shared_proto::envelope::ActionRequest;
use shared_proto::routing::Service;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::service::ChatService;

/// How a replica shares the partitions.
pub struct Plan {
    pub count: u32,
    pub lease: Duration,
    /// This replica's name: the holder named by its leases, and its
    /// consumer name on each partition's stream.
    pub replica: String,
    /// The settings of the service's own stream, which each partition's
    /// worker shares out.
    pub base: WorkerConfig,
}

/// Renews each lease of KEYS still held by ARGV[1]: one round trip for all
/// of a replica's partitions. Answers 1 or 0 per key, in order.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    renewed[i] = redis.call('PEXPIRE', key, ARGV[2])
  else
    renewed[i] = 0
  end
end
return renewed
",
    )
});

static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

struct Held {
    stop: CancellationToken,
    worker: JoinHandle<()>,
    /// When the last renewal that succeeded was sent.
    renewed_at: Instant,
    /// What the partition's worker may finish until.
    fence: Fence,
}

/// Holds this replica's share of the partitions until `shutdown`, then
/// hands them all back.
pub async fn run(
    bus: Bus,
    plan: Plan,
    handler: Arc<ActionHandler<ChatService>>,
    shutdown: CancellationToken,
) {
    let mut held: BTreeMap<u32, Held> = BTreeMap::new();
    let mut releasing: Vec<JoinHandle<()>> = Vec::new();
    let mut tick = tokio::time::interval(plan.lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(partitions = plan.count, replica = %plan.replica, "sharing the message partitions");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        releasing.retain(|task| !task.is_finished());
        renew(&bus, &plan, &mut held, started).await;
        let target = match replicas_alive(&bus, &plan).await {
            Ok(alive) => plan.count.div_ceil(alive.max(1)) as usize,
            Err(err) => {
                warn!(error = %err, "cannot tell how many replicas share the partitions");
                continue;
            }
        };
        if held.len() < target {
            take_free(&bus, &plan, &handler, &mut held, target, started).await;
        }
        while held.len() > target {
            let Some((partition, extra)) = held.pop_last() else {
                break;
            };
            releasing.push(tokio::spawn(hand_back(
                bus.clone(),
                plan.lease_key(&bus, partition),
                plan.replica.clone(),
                extra,
            )));
            info!(partition, "handing a partition to a replica with fewer");
        }
        metrics::gauge!("switchyard_chat_partitions_held").set(held.len() as f64);
    }
    // Stopping: every partition goes back at once, once its work in hand is
    // done, so that the others need not wait for the leases to lapse.
    for (partition, extra) in std::mem::take(&mut held) {
        releasing.push(tokio::spawn(hand_back(
            bus.clone(),
            plan.lease_key(&bus, partition),
            plan.replica.clone(),
            extra,
        )));
    }
    for task in releasing {
        let _ = task.await;
    }
    let mut connection = bus.connection();
    let key = bus.names().partition_replicas(Service::Chat);
    let _ = shared_proto::bus::bounded(connection.zrem::<_, _, ()>(key, &plan.replica)).await;
    metrics::gauge!("switchyard_chat_partitions_held").set(0.0);
}

impl Plan {
    fn lease_key(&self, bus: &Bus, partition: u32) -> String {
        bus.names().partition_lease(Service::Chat, partition)
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// When a hold renewed (or taken) at `sent` stops being trusted here: a
    /// fifth of the lease before it lapses in Redis, for the time a command
    /// takes and clocks that run apart.
    fn fenced_from(&self, sent: Instant) -> Instant {
        sent + self.lease - self.lease / 5
    }

    /// The worker settings of one partition: an equal part of the replica's
    /// handling slots and read-ahead, taking over what is left pending, and
    /// finishing nothing once its hold lapsed.
    fn worker_config(&self, bus: &Bus, partition: u32, fence: Fence) -> WorkerConfig {
        let parts = self.count.max(1) as usize;
        WorkerConfig {
            stream: bus.names().partition_stream(Service::Chat, partition),
            consumer: self.replica.clone(),
            max_in_flight: (self.base.max_in_flight / parts).max(4),
            per_key_in_flight: self.base.per_key_in_flight,
            max_held: (self.base.max_held / parts).max(16),
            adopt_at_start: true,
            fence: Some(fence),
            ..self.base.clone()
        }
    }
}

/// Renews every lease held; stops reading a partition whose lease is gone,
/// or could not be renewed before it lapsed.
async fn renew(bus: &Bus, plan: &Plan, held: &mut BTreeMap<u32, Held>, now: Instant) {
    if held.is_empty() {
        return;
    }
    let partitions: Vec<u32> = held.keys().copied().collect();
    let mut invocation = RENEW.prepare_invoke();
    for &partition in &partitions {
        invocation.key(plan.lease_key(bus, partition));
    }
    invocation.arg(&plan.replica).arg(plan.lease_ms());
    let mut connection = bus.connection();
    let renewed =
        shared_proto::bus::bounded(invocation.invoke_async::<Vec<i64>>(&mut connection)).await;
    let mut lost = Vec::new();
    match renewed {
        Ok(renewed) => {
            for (partition, renewed) in partitions
                .iter()
                .zip(renewed.into_iter().chain(std::iter::repeat(0)))
            {
                match held.get_mut(partition) {
                    Some(hold) if renewed == 1 => {
                        hold.renewed_at = now;
                        hold.fence.extend_to(plan.fenced_from(now));
                    }
                    _ => lost.push(*partition),
                }
            }
        }
        Err(err) => {
            // Each is still ours until its lease would lapse; no longer after.
            for (&partition, hold) in held.iter() {
                if hold.renewed_at.elapsed() >= plan.lease {
                    warn!(partition, error = %err, "cannot renew a partition's lease in time");
                    lost.push(partition);
                }
            }
        }
    }
    for partition in lost {
        if let Some(hold) = held.remove(&partition) {
            warn!(partition, "lost a partition; no longer reading it");
            hold.stop.cancel();
        }
    }
}

/// Says this replica is alive and counts those that are.
async fn replicas_alive(bus: &Bus, plan: &Plan) -> Result<u32, BusError> {
    let key = bus.names().partition_replicas(Service::Chat);
    let now = shared_proto::now_ms();
    // Alive: heard from within three renewals' time.
    let oldest = now - i64::try_from(plan.lease.as_millis()).unwrap_or(i64::MAX / 2);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .zadd(&key, &plan.replica, now)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(&key)
        .arg("-inf")
        .arg(format!("({oldest}"))
        .ignore()
        .zcard(&key)
        .pexpire(&key, plan.lease_ms().saturating_mul(10) as i64)
        .ignore();
    let mut connection = bus.connection();
    let (alive,): (u32,) = shared_proto::bus::bounded(pipe.query_async(&mut connection)).await?;
    Ok(alive)
}

/// Takes free partitions until this replica holds `target`, starting from a
/// place of its own so that replicas starting together try different ones.
async fn take_free(
    bus: &Bus,
    plan: &Plan,
    handler: &Arc<ActionHandler<ChatService>>,
    held: &mut BTreeMap<u32, Held>,
    target: usize,
    now: Instant,
) {
    let start = shared_proto::partitions::partition_of(
        &shared_proto::action::ConversationId::new(plan.replica.as_str()),
        plan.count,
    );
    for offset in 0..plan.count {
        if held.len() >= target {
            return;
        }
        let partition = (start + offset) % plan.count;
        if held.contains_key(&partition) {
            continue;
        }
        let mut connection = bus.connection();
        let taken: Result<Option<String>, _> = shared_proto::bus::bounded(
            redis::cmd("SET")
                .arg(plan.lease_key(bus, partition))
                .arg(&plan.replica)
                .arg("NX")
                .arg("PX")
                .arg(plan.lease_ms())
                .query_async(&mut connection),
        )
        .await;
        match taken {
            Ok(Some(_)) => {
                info!(partition, "took a partition");
                let stop = CancellationToken::new();
                let fence = Fence::until(plan.fenced_from(now));
                let worker = tokio::spawn(worker::run::<ActionRequest, _>(
                    bus.clone(),
                    plan.worker_config(bus, partition, fence.clone()),
                    handler.clone(),
                    stop.clone(),
                ));
                held.insert(
                    partition,
                    Held {
                        stop,
                        worker,
                        renewed_at: now,
                        fence,
                    },
                );
            }
            Ok(None) => {}
            Err(err) => {
                warn!(partition, error = %err, "cannot take a partition");
                return;
            }
        }
    }
}

/// Stops reading a partition, waits for what was read from it, then gives
/// its lease up.
async fn hand_back(bus: Bus, lease_key: String, replica: String, hold: Held) {
    hold.stop.cancel();
    let _ = hold.worker.await;
    let mut connection = bus.connection();
    let mut invocation = RELEASE.prepare_invoke();
    invocation.key(&lease_key).arg(&replica);
    if let Err(err) =
        shared_proto::bus::bounded(invocation.invoke_async::<i64>(&mut connection)).await
    {
        // It lapses by itself.
        warn!(lease = %lease_key, error = %err, "cannot hand a partition back");
    }
}
