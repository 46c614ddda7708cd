//! A copy, in Redis, of a map whose entries only move up (versions): each
//! field is replaced only by a greater value, so writers racing with stale
//! values converge on the newest whatever their order. A reader trusts the
//! copy only once a writer marked it complete (filled from the original);
//! until then, or once it expired or Redis lost it, the original answers.
//!
//! chat-service keeps a user's group memberships this way, so that a login
//! reads them without the database (`chat-service/src/groups.rs`).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use super::{Bus, BusError, bounded};

/// The field that marks a copy complete; no entry is named so.
const COMPLETE: &str = "~complete";

static RAISE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS[1] the map. ARGV: field, value pairs; then '1' to mark it complete,
-- and its life in ms.
local n = #ARGV
for i = 1, n - 2, 2 do
  local held = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if not held or tonumber(ARGV[i + 1]) > held then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if ARGV[n - 1] == '1' then
  redis.call('HSET', KEYS[1], '~complete', '1')
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[n])
end
return 1
",
    )
});

impl Bus {
    /// Raises the fields of the map at `key` to `entries` where they are
    /// greater, marks it complete if `complete`, and keeps it for `life`.
    pub async fn raise_versions(
        &self,
        key: &str,
        entries: &[(String, i64)],
        complete: bool,
        life: Duration,
    ) -> Result<(), BusError> {
        let mut invocation = RAISE.prepare_invoke();
        invocation.key(key);
        for (field, value) in entries {
            invocation.arg(field).arg(*value);
        }
        invocation
            .arg(if complete { "1" } else { "0" })
            .arg(u64::try_from(life.as_millis()).unwrap_or(u64::MAX).max(1));
        let mut connection = self.connection.clone();
        let _: i64 = bounded(invocation.invoke_async(&mut connection)).await?;
        Ok(())
    }

    /// The map at `key`, if a complete copy is held.
    pub async fn complete_versions(
        &self,
        key: &str,
    ) -> Result<Option<HashMap<String, i64>>, BusError> {
        let mut connection = self.connection.clone();
        let mut map: HashMap<String, i64> =
            bounded(redis::cmd("HGETALL").arg(key).query_async(&mut connection)).await?;
        Ok(map.remove(COMPLETE).map(|_| map))
    }
}
