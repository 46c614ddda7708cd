//! What `FASTLOGIN` needs, kept in Redis by auth-service (the owner of users
//! and sessions), so that resuming a session reads nothing from MongoDB in
//! the common case: after a gateway drains, all its clients resume at once.
//!
//! - A session's entry (`auth:session:<token hash>`): who it belongs to and
//!   when it expires; kept a day after its last use, never past the
//!   session's end (in code: the expiry is checked on every resume). A `LOGOUT` needs
//!   no change here: it marks the session revoked for every gateway first
//!   (`revoked:<token hash>`, kept until the session would have expired),
//!   and a resume checks that marker in the same round trip.
//! - A user's card (`auth:card:<user id>`): the profile the `USER_LOGGED`
//!   reply shows, written through on every profile change. A card is only
//!   replaced by one of the same or a newer profile version, so a resume
//!   that read the database just before a change cannot put the old profile
//!   back.
//!
//! Both are copies: on a miss (expired, evicted, Redis restarted without its
//! data) the database answers and the copy is made again. A ban set in the
//! database directly is seen by resumes once the card expires
//! ([`CARD_LIFETIME`]); nothing in the protocol bans today.

use std::sync::LazyLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared_proto::action::UserId;
use shared_proto::bus::{Bus, BusError};

use crate::limits::bounded;
use crate::store::{Profile, Session, User};

/// How long a card is kept after it was last written.
pub const CARD_LIFETIME: Duration = Duration::from_secs(3600);

/// How long a session's copy is kept after it was last used (never past
/// the session's end): sessions last weeks, and a copy of every one would
/// hold Redis memory for clients long gone. About 350 bytes each.
pub const SESSION_COPY_LIFE: Duration = Duration::from_secs(24 * 3600);

/// A session as a resume needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedSession {
    pub token_hash: String,
    pub user_id: UserId,
    pub email: String,
    pub expires_at_ms: i64,
}

impl From<&Session> for CachedSession {
    fn from(session: &Session) -> Self {
        CachedSession {
            token_hash: session.token_hash.clone(),
            user_id: session.user_id.clone(),
            email: session.email.clone(),
            expires_at_ms: session.expires_at_ms,
        }
    }
}

/// The user as `USER_LOGGED` shows them: no password or code hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCard {
    pub id: UserId,
    pub email: String,
    pub confirmed: bool,
    pub profile: Profile,
}

impl From<&User> for UserCard {
    fn from(user: &User) -> Self {
        UserCard {
            id: user.id.clone(),
            email: user.email.clone(),
            confirmed: user.confirmed,
            profile: user.profile.clone(),
        }
    }
}

/// What the cache holds for a session.
pub enum Lookup {
    /// Ended by a `LOGOUT`.
    Revoked,
    /// Not held: ask the database.
    Missing,
    Found(CachedSession),
}

/// The session with this token hash, and whether it was revoked; the copy,
/// if any, is kept for another [`SESSION_COPY_LIFE`]: one round trip.
pub async fn session(bus: &Bus, token_hash: &str) -> Result<Lookup, BusError> {
    let names = bus.names();
    let key = names.cached_session(token_hash);
    let mut connection = bus.connection();
    let (entry, revoked, _): (Option<String>, bool, bool) = bounded(
        redis::pipe()
            .get(&key)
            .exists(names.revoked_session(token_hash))
            .pexpire(&key, millis(SESSION_COPY_LIFE))
            .query_async(&mut connection),
    )
    .await?;
    if revoked {
        return Ok(Lookup::Revoked);
    }
    Ok(match entry.and_then(|e| serde_json::from_str(&e).ok()) {
        Some(session) => Lookup::Found(session),
        None => Lookup::Missing,
    })
}

/// Keeps a session for [`SESSION_COPY_LIFE`], or until it expires if
/// that is sooner.
pub async fn keep_session(bus: &Bus, session: &CachedSession) -> Result<(), BusError> {
    let remaining = session.expires_at_ms.saturating_sub(shared_proto::now_ms());
    if remaining <= 0 {
        return Ok(());
    }
    let remaining = remaining.min(millis(SESSION_COPY_LIFE));
    let mut connection = bus.connection();
    let _: () = bounded(
        redis::cmd("SET")
            .arg(bus.names().cached_session(&session.token_hash))
            .arg(serde_json::to_string(session)?)
            .arg("PX")
            .arg(remaining)
            .query_async(&mut connection),
    )
    .await?;
    Ok(())
}

/// The user's card, if held.
pub async fn card(bus: &Bus, user_id: &UserId) -> Result<Option<UserCard>, BusError> {
    let mut connection = bus.connection();
    let entry: Option<String> = bounded(
        redis::cmd("GET")
            .arg(bus.names().user_card(user_id.as_str()))
            .query_async(&mut connection),
    )
    .await?;
    Ok(entry.and_then(|e| serde_json::from_str(&e).ok()))
}

/// Keeps a user's card, unless a newer profile version is held already.
pub async fn keep_card(bus: &Bus, card: &UserCard) -> Result<(), BusError> {
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
        redis::Script::new(
            r"
local held = redis.call('GET', KEYS[1])
if held then
  local ok, card = pcall(cjson.decode, held)
  if ok and card.profile and tonumber(card.profile.version) and tonumber(card.profile.version) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
",
        )
    });
    let mut connection = bus.connection();
    let mut invocation = SCRIPT.prepare_invoke();
    invocation
        .key(bus.names().user_card(card.id.as_str()))
        .arg(serde_json::to_string(card)?)
        .arg(card.profile.version)
        .arg(millis(CARD_LIFETIME));
    let _: i64 = bounded(invocation.invoke_async(&mut connection)).await?;
    Ok(())
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
