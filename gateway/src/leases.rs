//! The per-user limit on open connections, across every gateway, and who is
//! online.
//!
//! Each logged-in connection holds a lease in Redis: a member of its user's
//! sorted set, scored by when the lease lapses. A login is let in only if the
//! user holds fewer than the limit. A gateway renews the leases of its
//! connections while they live and gives them back when they log out or
//! close; a gateway that dies stops renewing, so its leases lapse by
//! themselves within [`LEASE_TTL`].
//!
//! A user is online while they hold a lease. The first lease taken and the
//! last one given back or found lapsed (every gateway sweeps for those) are
//! told to chat-service as `PRESENCE_CHANGED`, which tells the user's
//! friends. The scripts below decide those moments atomically, so each is
//! announced by one gateway.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use shared_proto::action::UserId;
use shared_proto::bus::Bus;
use shared_proto::envelope::{ActionRequest, Identity, Origin};
use shared_proto::routing::{PRESENCE_CHANGED, Service};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::hub::Hub;

/// How long a lease lives unless renewed: also how long a user of a gateway
/// that died without a word still looks online, at most.
pub const LEASE_TTL: Duration = Duration::from_secs(25);
/// How often a gateway renews its leases: two renewals may fail before one
/// lapses.
const RENEW_EVERY: Duration = Duration::from_secs(8);
/// How often a gateway looks for users whose every lease lapsed.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Users looked at per sweep, so that one sweep is a bounded amount of work.
const SWEEP_BATCH: usize = 200;
/// How often ended logins give their leases back.
const RELEASE_EVERY: Duration = Duration::from_millis(250);
/// A Redis call here may take this long before the caller moves on.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS[1] the user's leases, KEYS[2] the online users;
-- ARGV: member, limit, now ms, ttl ms, user id.
-- 0: refused; 1: taken; 2: taken, and the user was offline until now.
local now = tonumber(ARGV[3])
local expiry = now + tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and held >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[2], 'GT', expiry, ARGV[5])
if held == 0 then
  return 2
end
return 1
",
    )
});

/// Gives a lease back, or looks at a user whose latest lease may have
/// lapsed; either way, if the user holds no live lease any more, they leave
/// the online users.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS[1] the user's leases, KEYS[2] the online users;
-- ARGV: member ('' for none), now ms, user id.
-- 1: the user just went offline; 0: otherwise.
if ARGV[1] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]))
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if latest[2] then
  redis.call('ZADD', KEYS[2], latest[2], ARGV[3])
  return 0
end
return redis.call('ZREM', KEYS[2], ARGV[3])
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
            .key(self.bus.names().online_users())
            .arg(self.member(connection_id))
            .arg(self.max_per_user)
            .arg(shared_proto::now_ms())
            .arg(ttl_ms())
            .arg(user_id);
        let call = invocation.invoke_async::<i64>(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok(2)) => {
                self.announce(user_id);
                true
            }
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

    /// Gives back the leases of logins that ended; announces the users who
    /// held no other.
    async fn release(&self, ended: &[(String, u64)]) -> Result<(), LeaseError> {
        let now = shared_proto::now_ms();
        let mut pipe = release_pipe();
        for (user_id, connection_id) in ended {
            self.release_call(&mut pipe, user_id, &self.member(*connection_id), now);
        }
        let offline: Vec<i64> = self.query(pipe).await?;
        for ((user_id, _), went_offline) in ended.iter().zip(offline) {
            if went_offline == 1 {
                self.announce(user_id);
            }
        }
        Ok(())
    }

    /// Finds users whose every lease lapsed (their gateway died, or could
    /// not give them back) and announces them offline.
    async fn sweep(&self) -> Result<(), LeaseError> {
        let now = shared_proto::now_ms();
        let mut find = redis::pipe();
        find.cmd("ZRANGEBYSCORE")
            .arg(self.bus.names().online_users())
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH);
        let (lapsed,): (Vec<String>,) = self.query(find).await?;
        if lapsed.is_empty() {
            return Ok(());
        }
        let mut pipe = release_pipe();
        for user_id in &lapsed {
            self.release_call(&mut pipe, user_id, "", now);
        }
        let offline: Vec<i64> = self.query(pipe).await?;
        for (user_id, went_offline) in lapsed.iter().zip(offline) {
            if went_offline == 1 {
                self.announce(user_id);
            }
        }
        Ok(())
    }

    fn release_call(&self, pipe: &mut redis::Pipeline, user_id: &str, member: &str, now: i64) {
        let mut invocation = RELEASE.prepare_invoke();
        invocation
            .key(self.bus.names().user_connections(user_id))
            .key(self.bus.names().online_users())
            .arg(member)
            .arg(now)
            .arg(user_id);
        pipe.invoke_script(&invocation);
    }

    /// Tells chat-service that `user_id` may have come online or gone
    /// offline; it reads which and tells the user's friends. Not awaited: a
    /// lost announcement leaves friends with a stale view until the next.
    fn announce(&self, user_id: &str) {
        let request = ActionRequest::internal(
            uuid::Uuid::now_v7().to_string(),
            PRESENCE_CHANGED,
            Origin {
                gateway_id: self.gateway_id.clone(),
                connection_id: 0,
            },
            Some(Identity {
                user_id: UserId::new(user_id),
                session_id: String::new(),
                email: String::new(),
            }),
            [("userId".to_owned(), user_id.into())]
                .into_iter()
                .collect(),
        );
        let bus = self.bus.clone();
        tokio::spawn(async move {
            if let Err(err) = bus.submit(Service::Chat, &request).await {
                warn!(error = %err, "could not announce a change of presence");
            }
        });
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
                pipe.cmd("ZADD")
                    .arg(self.bus.names().online_users())
                    .arg("GT")
                    .arg(until)
                    .arg(*user_id)
                    .ignore();
            }
            self.run(pipe).await?;
        }
        Ok(())
    }

    async fn run(&self, pipe: redis::Pipeline) -> Result<(), LeaseError> {
        self.query::<()>(pipe).await
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: redis::Pipeline,
    ) -> Result<T, LeaseError> {
        let mut connection = self.bus.connection();
        Ok(
            tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<T>(&mut connection))
                .await
                .map_err(|_| LeaseError::Timeout)??,
        )
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

/// A pipeline for [`RELEASE`] calls. A script called in a pipeline is not
/// loaded on demand, so the pipeline loads it first (cheap, and it survives
/// a Redis restart that forgot it).
fn release_pipe() -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.load_script(&RELEASE).ignore();
    pipe
}

fn ttl_ms() -> i64 {
    i64::try_from(LEASE_TTL.as_millis()).unwrap_or(60_000)
}

/// Gives back ended logins' leases and renews the living ones until `stop`.
pub async fn keep(leases: Leases, hub: Arc<Hub>, stop: CancellationToken) {
    let mut release_tick = tokio::time::interval(RELEASE_EVERY);
    let mut renew_tick = tokio::time::interval(RENEW_EVERY);
    renew_tick.tick().await; // the first tick is immediate; nothing to renew yet
    let mut sweep_tick = tokio::time::interval(SWEEP_EVERY);
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
            _ = sweep_tick.tick() => {
                if let Err(err) = leases.sweep().await {
                    debug!(error = %err, "could not look for lapsed connection leases");
                }
            }
        }
    }
}
