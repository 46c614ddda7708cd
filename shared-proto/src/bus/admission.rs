//! Admits a client action onto its service's stream in one atomic step:
//! the session must not be revoked, the user must have budget left for the
//! action's kind, and the stream must not be over its backlog bound: in
//! entries, and where given, in how long its entries have lately waited
//! and how late the gateways have lately handed out events (see
//! `queue_delay`). Because the checks and the append are one script,
//! every gateway sees the same
//! state: opening more connections buys a user no more budget, and no
//! gateway accepts an action of a session after its `LOGOUT` was answered.

use std::sync::LazyLock;
use std::time::Duration;

use crate::envelope::ActionRequest;
use crate::routing::ActionClass;

use super::{Bus, BusError, ENTRY_FIELD, bounded};

/// A token bucket: `burst` at once, then `per_sec` a second.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct Budget {
    pub per_sec: f64,
    pub burst: f64,
}

/// The limits one action is admitted under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The user's budget for the action's class. Not checked for an
    /// anonymous connection: its per-connection limit applies at the gateway,
    /// and guessing is bounded by the service (see auth-service).
    pub budget: Budget,
    /// Entries the stream may hold before new work is refused as `BUSY`.
    pub max_backlog: u64,
    /// How long the entries on the stream may have lately waited before
    /// they were done (as its replicas report), and the events published to
    /// a gateway before it handed them out (as each gateway reports), before
    /// new work is refused as `BUSY`; `None` for a stream bounded in entries
    /// only.
    pub max_wait: Option<Duration>,
    /// What a `BUSY` answer suggests waiting.
    pub busy_retry_after: Duration,
}

/// What became of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// On the stream.
    Accepted,
    /// Its session was ended (`LOGOUT`); nothing was appended.
    Revoked,
    /// The user spent the budget of this kind of action; one more token
    /// comes after the given time.
    Limited { retry_after_ms: u64 },
    /// The service's backlog is over its bound.
    Busy { retry_after_ms: u64 },
}

/// Fewer entries than this are never refused for how long entries waited:
/// a queue this short drains soon anyway, and when the entries that waited
/// were slow for another reason (a slow database) refusing does not help.
const MIN_ENTRIES_TIMED: u64 = 8;

/// Lua functions for a user's token bucket, shared by every script that
/// charges an action to it: `budget_check` says how long until a token is
/// there (0 if one is), `budget_spend` takes it.
pub(super) const BUDGET_LUA: &str = r"
local function budget_check(bucket, rate, burst)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local state = redis.call('HMGET', bucket, 't', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
  if tokens < 1 then
    return math.ceil((1 - tokens) * 1000 / rate), tokens, now
  end
  return 0, tokens, now
end
local function budget_spend(bucket, tokens, now, rate, burst)
  redis.call('HSET', bucket, 't', tostring(tokens - 1), 'at', now)
  redis.call('PEXPIRE', bucket, math.ceil(burst * 1000 / rate) + 1000)
end
";

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{BUDGET_LUA}{}",
        r"
-- KEYS[1] the stream, KEYS[2] its replicas' queue delays, KEYS[3] the
-- gateways' delivery delays; KEYS[4] the user's bucket and KEYS[5] the
-- session's revocation marker, both only for a logged-in connection.
-- ARGV: max backlog, busy retry ms, per second, burst, entry field, body,
-- max wait ms (0: none), fewest entries refused for their wait.
if #KEYS >= 5 and redis.call('EXISTS', KEYS[5]) == 1 then
  return {'revoked', 0}
end
local rate = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local wait, tokens, now
if #KEYS >= 4 then
  wait, tokens, now = budget_check(KEYS[4], rate, burst)
  if wait > 0 then
    return {'limited', wait}
  end
end
local retry = tonumber(ARGV[2])
local length = redis.call('XLEN', KEYS[1])
if length >= tonumber(ARGV[1]) then
  return {'busy', retry}
end
-- The longest delay reported in `reports` that is still valid; stale
-- reports (a replica that died) are dropped.
local function longest_valid(reports, now_ms)
  local fields = redis.call('HGETALL', reports)
  local delay = 0
  for i = 1, #fields, 2 do
    local ms, valid_until = string.match(fields[i + 1], '^(%d+) (%d+)$')
    if ms and tonumber(valid_until) > now_ms then
      delay = math.max(delay, tonumber(ms))
    else
      redis.call('HDEL', reports, fields[i])
    end
  end
  return delay
end
local max_wait = tonumber(ARGV[7])
if max_wait > 0 then
  if not now then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  end
  -- A queue standing on the stream; a short one drains soon anyway.
  local delay = 0
  if length >= tonumber(ARGV[8]) then
    delay = longest_valid(KEYS[2], now)
  end
  -- A gateway handing out events late: a queue standing in delivery.
  delay = math.max(delay, longest_valid(KEYS[3], now))
  if delay > max_wait then
    return {'busy', math.max(retry, delay - max_wait)}
  end
end
if #KEYS >= 4 then
  budget_spend(KEYS[4], tokens, now, rate, burst)
end
redis.call('XADD', KEYS[1], '*', ARGV[5], ARGV[6])
return {'ok', 0}
"
    ))
});

impl Bus {
    /// Puts a client action on `stream` (its service's, or one of its
    /// partitions) if the session is live, the user has budget left for
    /// `class` and the stream has room: fewer entries than the bound, which
    /// have lately waited less than the longest wait, if one is given.
    pub async fn admit(
        &self,
        stream: &str,
        class: ActionClass,
        request: &ActionRequest,
        limits: Limits,
    ) -> Result<Admitted, BusError> {
        let body = serde_json::to_string(request)?;
        let mut invocation = SCRIPT.prepare_invoke();
        invocation
            .key(stream)
            .key(self.names.stream_queue_delay(stream))
            .key(self.names.delivery_delay());
        if let Some(identity) = &request.identity {
            invocation
                .key(
                    self.names
                        .user_bucket(identity.user_id.as_str(), class.name()),
                )
                .key(self.names.revoked_session(&identity.session_id));
        }
        let budget = limits.budget;
        invocation
            .arg(limits.max_backlog)
            .arg(u64::try_from(limits.busy_retry_after.as_millis()).unwrap_or(1000))
            .arg(budget.per_sec)
            .arg(budget.burst)
            .arg(ENTRY_FIELD)
            .arg(body)
            .arg(limits.max_wait.map_or(0, |wait| {
                u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)
            }))
            .arg(MIN_ENTRIES_TIMED);
        let mut connection = self.connection.clone();
        let (verdict, wait): (String, u64) =
            bounded(invocation.invoke_async(&mut connection)).await?;
        Ok(match verdict.as_str() {
            "ok" => Admitted::Accepted,
            "revoked" => Admitted::Revoked,
            "limited" => Admitted::Limited {
                retry_after_ms: wait,
            },
            _ => Admitted::Busy {
                retry_after_ms: wait,
            },
        })
    }
}
