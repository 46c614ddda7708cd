//! Who is online: a user with a live connection lease on any gateway.
//!
//! Gateways keep the leases (one per logged-in connection, in a sorted set
//! per user scored by when it lapses; see the gateway's `leases` module).
//! This reads them, so any service can tell who is online in one round trip.

use super::{Bus, BusError, bounded};
use crate::action::UserId;

impl Bus {
    /// For each of `user_ids`, in order: true if the user holds a lease that
    /// has not lapsed.
    pub async fn online(&self, user_ids: &[UserId]) -> Result<Vec<bool>, BusError> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = crate::now_ms();
        let mut pipe = redis::pipe();
        for user_id in user_ids {
            pipe.zcount(self.names().user_connections(user_id.as_str()), now, "+inf");
        }
        let mut connection = self.connection();
        let counts: Vec<u64> = bounded(pipe.query_async(&mut connection)).await?;
        Ok(counts.into_iter().map(|n| n > 0).collect())
    }
}
