//! The events kept so that a client that was away can `SYNC`.
//!
//! An event for a user is kept once in the user's history; an event for a
//! group once in the group's history, whatever the group's size. Every kept
//! event takes its id from one clock, and is kept, published and (for an
//! action's results) acknowledged by one script: ids therefore order events
//! the way every gateway receives them, and a crash can neither publish an
//! event without keeping it nor keep it twice.
//!
//! A history holds the newest `max_events` entries at least, and anything
//! younger than `window`; it disappears a `window` after its last event.
//! What a `SYNC` may replay follows from that: a position older than the
//! window, or one past which a history has dropped entries, is a gap.

use std::sync::LazyLock;
use std::time::Duration;

use super::admission::{BUDGET_LUA, Budget};
use super::{Bus, BusError, ENTRY_FIELD, Publication, bounded};
use crate::position::{Epoch, EventId, Position};

/// How much each history keeps (docs/protocol.md, "SYNC").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// A position this old or younger can be replayed.
    pub window: Duration,
    /// A `SYNC` replays at most this many events; each history keeps at
    /// least this many.
    pub max_events: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            window: Duration::from_secs(3600),
            max_events: 1000,
        }
    }
}

impl HistoryLimits {
    fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Sets the epoch if Redis has none (first start, or its data was lost) and
/// leaves it in `epoch`.
const ENSURE_EPOCH_LUA: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  local time = redis.call('TIME')
  epoch = time[1] .. string.format('%06d', tonumber(time[2]))
  redis.call('SET', KEYS[1], epoch)
end
";

static PUBLISH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{}{ENSURE_EPOCH_LUA}{}",
        r"
-- KEYS[1] the epoch; KEYS[2] the event clock; KEYS[3..2+n] the stream of
-- each of the n entries to acknowledge; then the history of each kept
-- publication, in order.
-- ARGV[1] n; then per entry: its consumer group, its id; then entries a
-- history keeps at least, window ms, entry field; then per publication:
-- channel, message, '1' if kept.
",
        r"
local acks = tonumber(ARGV[1])
local after = 2 + 2 * acks
local max_events = ARGV[after]
local window = tonumber(ARGV[after + 1])
local field = ARGV[after + 2]
local time = redis.call('TIME')
local cutoff = string.format('%.0f', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) - window)
local history = 3 + acks
for i = after + 3, #ARGV, 3 do
  if ARGV[i + 2] == '1' then
    local id = redis.call('XADD', KEYS[2], 'MAXLEN', '1', '*', field, '')
    local key = KEYS[history]
    history = history + 1
    redis.call('XADD', key, 'MAXLEN', '~', max_events, id, field, ARGV[i + 1])
    redis.call('XTRIM', key, 'MINID', '~', cutoff)
    redis.call('PEXPIRE', key, window + 60000)
    redis.call('PUBLISH', ARGV[i], epoch .. ':' .. id .. ' ' .. ARGV[i + 1])
  else
    redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
  end
end
for k = 1, acks do
  local stream, group, entry = KEYS[2 + k], ARGV[2 * k], ARGV[2 * k + 1]
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end
return 1
"
    ))
});

static READ: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{BUDGET_LUA}{}{ENSURE_EPOCH_LUA}{}",
        r"
-- KEYS[1] the epoch; KEYS[2] the event clock; KEYS[3] the user's read
-- bucket; KEYS[4] the session's revocation marker; KEYS[5..] histories.
-- ARGV[1] the position's id ('' to read nothing); ARGV[2] most entries per
-- history; ARGV[3] per second, ARGV[4] burst; ARGV[5] '1' to charge.
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {'revoked', 0, '', '', '', {}}
end
if ARGV[5] == '1' then
  local rate = tonumber(ARGV[3])
  local burst = tonumber(ARGV[4])
  local wait, tokens, now = budget_check(KEYS[3], rate, burst)
  if wait > 0 then
    return {'limited', wait, '', '', '', {}}
  end
  budget_spend(KEYS[3], tokens, now, rate, burst)
end
",
        r"
local time = redis.call('TIME')
local now = string.format('%.0f', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
local head = '0-0'
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if last[1] then
  head = last[1][1]
end
local histories = {}
for k = 5, #KEYS do
  local deleted, entries = '0-0', {}
  if ARGV[1] ~= '' and redis.call('EXISTS', KEYS[k]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[k])
    for j = 1, #info, 2 do
      if info[j] == 'max-deleted-entry-id' then
        deleted = info[j + 1]
      end
    end
    entries = redis.call('XRANGE', KEYS[k], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
  end
  histories[#histories + 1] = {deleted, entries}
end
return {'ok', 0, epoch, head, now, histories}
"
    ))
});

static HEAD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{}{ENSURE_EPOCH_LUA}{}",
        r"
-- KEYS[1] the epoch; KEYS[2] the event clock.
",
        r"
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local head = '0-0'
if last[1] then
  head = last[1][1]
end
return {epoch, head}
"
    ))
});

/// A stream entry to acknowledge (and delete) in the same step as its
/// results are published.
#[derive(Debug, Clone, Copy)]
pub struct Acknowledge<'a> {
    pub stream: &'a str,
    pub group: &'a str,
    pub entry_id: &'a str,
}

/// What a `SYNC` reads: a user's history and those of some groups, after a
/// position.
#[derive(Debug, Clone)]
pub struct HistoryQuery<'a> {
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub groups: &'a [String],
    /// `None` reads no entries: only where the histories stand.
    pub since: Option<EventId>,
    /// Charged to the user's read bucket; `None` for a follow-up read of
    /// the same `SYNC`.
    pub budget: Option<Budget>,
}

/// The answer to a [`HistoryQuery`].
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryRead {
    /// The session was ended (`LOGOUT`) on some gateway.
    Revoked,
    /// The user spent the read budget; a token comes after this long.
    Limited {
        retry_after_ms: u64,
    },
    Read(Histories),
}

/// The histories as they stood at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Histories {
    pub epoch: Epoch,
    /// The id of the newest event kept anywhere.
    pub head: EventId,
    /// Redis's clock, in ms since the Unix epoch.
    pub now_ms: u64,
    /// The user's own, then one per group asked for, in order.
    pub user: HistorySince,
    pub groups: Vec<HistorySince>,
}

/// The entries of one history after the position, up to the limit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistorySince {
    /// Entries up to this id were dropped (by age or number): a position
    /// before it has missed some.
    pub max_deleted: EventId,
    /// Each entry's id and its bus message (JSON).
    pub entries: Vec<(EventId, String)>,
}

/// The shape of READ's answer: status, wait, epoch, head, now, histories.
type RawRead = (
    String,
    u64,
    String,
    String,
    String,
    Vec<(String, Vec<(String, Vec<String>)>)>,
);

impl Bus {
    /// How much the histories keep.
    pub fn history_limits(&self) -> HistoryLimits {
        self.history
    }

    /// Uses these limits for the histories from now on.
    pub fn with_history_limits(mut self, limits: HistoryLimits) -> Bus {
        self.history = limits;
        self
    }

    /// Publishes `publications` in order, keeping those with a history, and
    /// acknowledges (and deletes) the entries `acknowledged`, all in one
    /// atomic step.
    pub async fn publish_kept(
        &self,
        publications: &[Publication],
        acknowledged: &[Acknowledge<'_>],
    ) -> Result<(), BusError> {
        let mut invocation = PUBLISH.prepare_invoke();
        invocation
            .key(self.names.history_epoch())
            .key(self.names.event_clock());
        for entry in acknowledged {
            invocation.key(entry.stream);
        }
        for history in publications.iter().filter_map(|p| p.kept_in.as_deref()) {
            invocation.key(history);
        }
        invocation.arg(acknowledged.len());
        for entry in acknowledged {
            invocation.arg(entry.group).arg(entry.entry_id);
        }
        invocation
            .arg(self.history.max_events)
            .arg(self.history.window_ms())
            .arg(ENTRY_FIELD);
        for publication in publications {
            invocation
                .arg(&publication.channel)
                .arg(serde_json::to_string(&publication.message)?)
                .arg(if publication.kept_in.is_some() {
                    "1"
                } else {
                    "0"
                });
        }
        let mut connection = self.connection.clone();
        let _: i64 = bounded(invocation.invoke_async(&mut connection)).await?;
        Ok(())
    }

    /// Where the histories stand: their epoch and the newest event kept.
    pub async fn history_head(&self) -> Result<Position, BusError> {
        let mut invocation = HEAD.prepare_invoke();
        invocation
            .key(self.names.history_epoch())
            .key(self.names.event_clock());
        let mut connection = self.connection.clone();
        let (epoch, head): (String, String) =
            bounded(invocation.invoke_async(&mut connection)).await?;
        let malformed = |what: &str| BusError::Malformed(format!("history head: {what:?}"));
        Ok(Position {
            epoch: Epoch::new(&epoch).map_err(|_| malformed(&epoch))?,
            id: head.parse().map_err(|_| malformed(&head))?,
        })
    }

    /// Reads a user's history and the given groups' after a position, with
    /// where every history stands, in one atomic step.
    pub async fn read_history(&self, query: &HistoryQuery<'_>) -> Result<HistoryRead, BusError> {
        let mut invocation = READ.prepare_invoke();
        invocation
            .key(self.names.history_epoch())
            .key(self.names.event_clock())
            .key(self.names.user_bucket(query.user_id, "read"))
            .key(self.names.revoked_session(query.session_id))
            .key(self.names.user_history(query.user_id));
        for group in query.groups {
            invocation.key(self.names.group_history(group));
        }
        let budget = query.budget.unwrap_or(Budget {
            per_sec: 1.0,
            burst: 1.0,
        });
        invocation
            .arg(query.since.map(|id| id.to_string()).unwrap_or_default())
            .arg(self.history.max_events + 1)
            .arg(budget.per_sec)
            .arg(budget.burst)
            .arg(if query.budget.is_some() { "1" } else { "0" });
        let mut connection = self.connection.clone();
        let raw: RawRead = bounded(invocation.invoke_async(&mut connection)).await?;
        parse_read(raw)
    }
}

fn parse_read(raw: RawRead) -> Result<HistoryRead, BusError> {
    let (status, wait, epoch, head, now_ms, histories) = raw;
    match status.as_str() {
        "revoked" => return Ok(HistoryRead::Revoked),
        "limited" => {
            return Ok(HistoryRead::Limited {
                retry_after_ms: wait,
            });
        }
        _ => {}
    }
    let malformed = |what: &str| BusError::Malformed(format!("history read: {what:?}"));
    let id = |text: &str| text.parse::<EventId>().map_err(|_| malformed(text));
    let mut read = histories.into_iter().map(|(deleted, entries)| {
        Ok(HistorySince {
            max_deleted: id(&deleted)?,
            entries: entries
                .into_iter()
                .map(|(entry_id, fields)| {
                    let body = fields
                        .chunks(2)
                        .find(|pair| pair[0] == ENTRY_FIELD)
                        .and_then(|pair| pair.get(1))
                        .cloned()
                        .unwrap_or_default();
                    Ok((id(&entry_id)?, body))
                })
                .collect::<Result<_, BusError>>()?,
        })
    });
    let user = read.next().unwrap_or_else(|| Ok(HistorySince::default()))?;
    let groups = read.collect::<Result<_, BusError>>()?;
    Ok(HistoryRead::Read(Histories {
        epoch: Epoch::new(&epoch).map_err(|_| malformed(&epoch))?,
        head: id(&head)?,
        now_ms: now_ms.parse().map_err(|_| malformed(&now_ms))?,
        user,
        groups,
    }))
}
