//! The per-user limit on open connections, across every gateway.
//!
//! Each logged-in connection holds a lease in Redis: a member of its user's
//! sorted set, scored by when the lease lapses. A login is let in only if the
//! user holds fewer than the limit. A gateway renews the leases of its
//! connections while they live and gives them back when they log out or
//! close; a gateway that dies stops renewing, so its leases lapse by
//! themselves within [`LEASE_TTL`].

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use shared_proto::bus::Bus;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::hub::Hub;

/// How long a lease lives unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// How often a gateway renews its leases.
const RENEW_EVERY: Duration = Duration::from_secs(20);
/// How often ended logins give their leases back.
const RELEASE_EVERY: Duration = Duration::from_millis(250);
/// A Redis call here may take this long before the caller moves on.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS[1] the user's leases; ARGV: member, limit, now ms, ttl ms.
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
",
    )
});

/// Takes and gives back this gateway's connection leases.
#[derive(Clone)]
pub struct Leases {
    bus: Bus,
    gateway_id: String,
    max_per_user: usize,
}

impl Leases {
    pub fn new(bus: Bus, gateway_id: String, max_per_user: usize) -> Self {
        Leases {
            bus,
            gateway_id,
            max_per_user,
        }
    }

    pub fn max_per_user(&self) -> usize {
        self.max_per_user
    }

    /// Takes a lease for a connection that is logging in; false if the user
    /// already holds the limit. If Redis does not answer the login is let in:
    /// refusing every login while Redis is away would help nobody.
    pub async fn acquire(&self, user_id: &str, connection_id: u64) -> bool {
        let mut connection = self.bus.connection();
        let mut invocation = ACQUIRE.prepare_invoke();
        invocation
            .key(self.bus.names().user_connections(user_id))
            .arg(self.member(connection_id))
            .arg(self.max_per_user)
            .arg(shared_proto::now_ms())
            .arg(ttl_ms());
        let call = invocation.invoke_async::<i64>(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok(granted)) => granted == 1,
            Ok(Err(err)) => {
                warn!(error = %err, "could not count the user's connections; letting the login in");
                true
            }
            Err(_) => {
                warn!("counting the user's connections timed out; letting the login in");
                true
            }
        }
    }

    /// Gives back the leases of logins that ended.
    async fn release(&self, ended: &[(String, u64)]) -> Result<(), LeaseError> {
        let mut pipe = redis::pipe();
        for (user_id, connection_id) in ended {
            pipe.zrem(
                self.bus.names().user_connections(user_id),
                self.member(*connection_id),
            )
            .ignore();
        }
        self.run(pipe).await
    }

    /// Extends the leases of the connections still logged in here.
    async fn renew(&self, held: &[(String, u64)]) -> Result<(), LeaseError> {
        let until = shared_proto::now_ms() + ttl_ms();
        let mut by_user: BTreeMap<&str, Vec<(i64, String)>> = BTreeMap::new();
        for (user_id, connection_id) in held {
            by_user
                .entry(user_id)
                .or_default()
                .push((until, self.member(*connection_id)));
        }
        // A few thousand commands a pipeline, so that one round trip never
        // carries an unbounded amount.
        let users: Vec<_> = by_user.into_iter().collect();
        for chunk in users.chunks(1000) {
            let mut pipe = redis::pipe();
            for (user_id, members) in chunk {
                let key = self.bus.names().user_connections(user_id);
                pipe.zadd_multiple(&key, members).ignore();
                pipe.pexpire(&key, ttl_ms()).ignore();
            }
            self.run(pipe).await?;
        }
        Ok(())
    }

    async fn run(&self, pipe: redis::Pipeline) -> Result<(), LeaseError> {
        let mut connection = self.bus.connection();
        tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(&mut connection))
            .await
            .map_err(|_| LeaseError::Timeout)??;
        Ok(())
    }

    fn member(&self, connection_id: u64) -> String {
        format!("{}:{connection_id}", self.gateway_id)
    }
}

#[derive(Debug, thiserror::Error)]
enum LeaseError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
}

fn ttl_ms() -> i64 {
    i64::try_from(LEASE_TTL.as_millis()).unwrap_or(60_000)
}

/// Gives back ended logins' leases and renews the living ones until `stop`.
pub async fn keep(leases: Leases, hub: Arc<Hub>, stop: CancellationToken) {
    let mut release_tick = tokio::time::interval(RELEASE_EVERY);
    let mut renew_tick = tokio::time::interval(RENEW_EVERY);
    renew_tick.tick().await; // the first tick is immediate; nothing to renew yet
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                // The connections closed on the way out give theirs back now,
                // so their users can log in elsewhere at once.
                let _ = leases.release(&hub.take_ended_logins()).await;
                return;
            }
            _ = release_tick.tick() => {
                let ended = hub.take_ended_logins();
                if !ended.is_empty() {
                    if let Err(err) = leases.release(&ended).await {
                        // They lapse on their own within the lease's life.
                        debug!(error = %err, "could not give back connection leases");
                    }
                }
            }
            _ = renew_tick.tick() => {
                if let Err(err) = leases.renew(&hub.logged_in()).await {
                    warn!(error = %err, "could not renew connection leases");
                }
            }
        }
    }
}
