//! Bounds on guessing, kept in Redis so that every replica of auth-service
//! counts against the same numbers, and each count is taken by one atomic
//! script before the guess is checked: a burst of concurrent guesses can
//! never be checked more often than the limit allows.
//!
//! - Confirmation codes: each code has a fixed number of tries, handed out
//!   as numbered slots; an action keeps its slot when it is delivered again.
//! - Password logins: failures per account and per source address; after the
//!   free ones, each further try waits twice as long as the one before.
//!
//! Keys are named by [`Names::attempts`] and expire on their own.

use std::sync::LazyLock;
use std::time::Duration;

use shared_proto::bus::{Bus, BusError};
use shared_proto::names::Names;

use crate::settings::AuthSettings;

/// How long a Redis command here may take before the action counts as
/// unavailable (the bus uses the same bound).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

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

/// Takes the next try of a confirmation code, or finds the one this action
/// already took. Returns the try's number (1 for the first), or `None` when
/// every try of the code is spent.
///
/// `issued_by` names the code (the action that issued it), so a new code
/// starts with all its tries. `floor` is the number of tries the database
/// recorded, so that tries are not handed out again if Redis lost the key.
pub async fn take_code_try(
    bus: &Bus,
    issued_by: &str,
    action_id: &str,
    max: u32,
    floor: i64,
    keep_for: Duration,
) -> Result<Option<u32>, BusError> {
    // HASH: `n` = tries handed out; `a:<action id>` = the try that action got.
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
        redis::Script::new(
            r"local mine = redis.call('HGET', KEYS[1], 'a:' .. ARGV[1])
              if mine then return tonumber(mine) end
              local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
              local floor = tonumber(ARGV[3])
              if floor > n then n = floor end
              if n >= tonumber(ARGV[2]) then return 0 end
              n = n + 1
              redis.call('HSET', KEYS[1], 'n', n, 'a:' .. ARGV[1], n)
              redis.call('PEXPIRE', KEYS[1], ARGV[4])
              return n",
        )
    });
    let mut connection = bus.connection();
    let taken: i64 = bounded(
        SCRIPT
            .key(bus.names().attempts("code", issued_by))
            .arg(action_id)
            .arg(max)
            .arg(floor.max(0))
            .arg(millis(keep_for).max(1))
            .invoke_async(&mut connection),
    )
    .await?;
    Ok(u32::try_from(taken).ok().filter(|n| *n > 0))
}

/// Who a password login is charged to: the account (its normalised e-mail)
/// and, when the gateway reported one, the source address.
#[derive(Debug, Clone)]
pub struct LoginSubjects {
    account: String,
    address: Option<String>,
}

impl LoginSubjects {
    pub fn new(names: &Names, email: &str, client_addr: Option<&str>) -> Self {
        LoginSubjects {
            account: names.attempts("login", email),
            address: client_addr.map(|addr| names.attempts("login-addr", addr)),
        }
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.account).chain(self.address.as_ref())
    }
}

/// What reserving a login try decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginTry {
    /// The try is counted as a failure until the password proves right.
    Reserved,
    /// Refused without looking at the password: try again after this long.
    Wait(Duration),
}

/// Reserves one try for a password login, counted as a failure, before the
/// password is verified. Refuses it, changing nothing, while the account or
/// the address must still wait after its earlier failures.
///
/// Each subject's first `free` failures go through at once; after failure
/// number `n >= free` the next try must wait `first_wait * 2^(n - free)`,
/// at most `max_wait`. A subject's count is forgotten `forget` after its
/// last wait ends.
pub async fn reserve_login(
    bus: &Bus,
    subjects: &LoginSubjects,
    settings: &AuthSettings,
) -> Result<LoginTry, BusError> {
    // HASH per subject: `n` = failures counted; `next` = the earliest time
    // (ms, Redis clock) of the next try.
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
        redis::Script::new(
            r"local t = redis.call('TIME')
              local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
              local wait = 0
              for _, key in ipairs(KEYS) do
                local next_at = tonumber(redis.call('HGET', key, 'next') or '0')
                if next_at - now > wait then wait = next_at - now end
              end
              if wait > 0 then return wait end
              local first, max, forget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
              for i, key in ipairs(KEYS) do
                local free = tonumber(ARGV[i])
                local n = redis.call('HINCRBY', key, 'n', 1)
                local delay = 0
                if n >= free then
                  local exponent = math.min(n - free, 40)
                  delay = math.min(first * (2 ^ exponent), max)
                end
                redis.call('HSET', key, 'next', string.format('%d', now + delay))
                redis.call('PEXPIRE', key, string.format('%d', delay + forget))
              end
              return 0",
        )
    });
    let mut invocation = login_script(&SCRIPT, subjects, settings);
    invocation
        .arg(settings.login_first_wait_ms.max(1))
        .arg(millis(settings.login_max_wait()).max(1))
        .arg(millis(settings.login_forget()).max(1));
    let mut connection = bus.connection();
    let wait_ms: i64 = bounded(invocation.invoke_async(&mut connection)).await?;
    Ok(match u64::try_from(wait_ms) {
        Ok(ms) if ms > 0 => LoginTry::Wait(Duration::from_millis(ms)),
        _ => LoginTry::Reserved,
    })
}

/// A login script's invocation with the subjects as its keys and their free
/// tries as its first arguments, in the same order.
fn login_script<'a>(
    script: &'a redis::Script,
    subjects: &LoginSubjects,
    settings: &AuthSettings,
) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    for key in subjects.keys() {
        invocation.key(key);
    }
    invocation
        .arg(settings.login_free_tries_per_account)
        .arg(settings.login_free_tries_per_address);
    invocation
}

/// Gives back a reserved try. `password_was_right`: the account's failures
/// are forgotten (the owner is back), and the address gets its try back.
/// Otherwise (the password was never checked) both get their try back.
pub async fn release_login(
    bus: &Bus,
    subjects: &LoginSubjects,
    settings: &AuthSettings,
    password_was_right: bool,
) -> Result<(), BusError> {
    // A subject left with fewer failures than its free tries needs no wait.
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
        redis::Script::new(
            r"for i, key in ipairs(KEYS) do
                if i == 1 and ARGV[3] == '1' then
                  redis.call('DEL', key)
                elseif redis.call('EXISTS', key) == 1 then
                  local n = redis.call('HINCRBY', key, 'n', -1)
                  if n <= 0 then
                    redis.call('DEL', key)
                  elseif n < tonumber(ARGV[i]) then
                    redis.call('HSET', key, 'next', '0')
                  end
                end
              end
              return 1",
        )
    });
    let mut invocation = login_script(&SCRIPT, subjects, settings);
    invocation.arg(if password_was_right { "1" } else { "0" });
    let mut connection = bus.connection();
    let _: i64 = bounded(invocation.invoke_async(&mut connection)).await?;
    Ok(())
}

/// Marks a session as ended for every gateway, until `lifetime` from now
/// (when it would have expired anyway; at least 1 ms).
pub async fn mark_session_revoked(
    bus: &Bus,
    session_id: &str,
    lifetime: Duration,
) -> Result<(), BusError> {
    let mut connection = bus.connection();
    let _: () = bounded(
        redis::cmd("SET")
            .arg(bus.names().revoked_session(session_id))
            .arg("1")
            .arg("PX")
            .arg(millis(lifetime).max(1))
            .query_async(&mut connection),
    )
    .await?;
    Ok(())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A wait as a person reads it: seconds under two minutes, else minutes,
/// rounded up.
pub fn describe_wait(wait: Duration) -> String {
    let secs = wait.as_millis().div_ceil(1000).max(1);
    if secs < 120 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_in_seconds_then_minutes() {
        assert_eq!(describe_wait(Duration::from_millis(1)), "1 s");
        assert_eq!(describe_wait(Duration::from_millis(1001)), "2 s");
        assert_eq!(describe_wait(Duration::from_secs(119)), "119 s");
        assert_eq!(describe_wait(Duration::from_secs(900)), "15 min");
    }

    #[test]
    fn login_subjects_are_the_account_and_the_address() {
        let names = Names::default();
        let both = LoginSubjects::new(&names, "ana@example.com", Some("203.0.113.7"));
        assert_eq!(
            both.keys().cloned().collect::<Vec<_>>(),
            [
                "switchyard:attempts:login:ana@example.com",
                "switchyard:attempts:login-addr:203.0.113.7"
            ]
        );
        let account_only = LoginSubjects::new(&names, "ana@example.com", None);
        assert_eq!(account_only.keys().count(), 1);
    }
}
