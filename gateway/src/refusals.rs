//! Streams this gateway was lately told were full, so that a message for
//! one is refused here for a moment instead of asking Redis again.
//!
//! Past capacity most messages are refused, and each refusal was a round
//! trip to Redis, the busiest part just then: at 3× the held rate on two
//! cores a `BUSY` took up to a third of a second. After the admission script
//! refuses a stream, this gateway refuses further actions for it on its own
//! for [`REMEMBERED_FOR`], with the same `retryAfterMs`; then the next one
//! asks Redis again. A client told to retry waits at least
//! `gateway.busy_retry_ms`, far longer, so only other clients' actions in
//! that moment are refused without asking, and a stream that emptied
//! meanwhile is refused at most that long more.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a refusal from Redis stands for the stream on this gateway.
pub const REMEMBERED_FOR: Duration = Duration::from_millis(100);

/// Streams refused lately, with when that lapses and the wait suggested.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<HashMap<String, Refusal>>);

#[derive(Debug, Clone, Copy)]
struct Refusal {
    until: Instant,
    retry_after_ms: u64,
}

impl Refusals {
    /// Redis refused an action for `stream` at `now`, suggesting
    /// `retry_after_ms`.
    pub fn note(&self, stream: &str, retry_after_ms: u64, now: Instant) {
        let refusal = Refusal {
            until: now + REMEMBERED_FOR,
            retry_after_ms,
        };
        let mut refused = self.lock();
        // Lapsed ones go when a new one comes: at most one per stream.
        refused.retain(|_, r| r.until > now);
        refused.insert(stream.to_owned(), refusal);
    }

    /// The wait to suggest if `stream` was refused within the moment before
    /// `now`; `None` if it is to be asked about.
    pub fn standing(&self, stream: &str, now: Instant) -> Option<u64> {
        let refused = self.lock();
        let refusal = refused.get(stream)?;
        (refusal.until > now).then_some(refusal.retry_after_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Refusal>> {
        // Plain bookkeeping; a panic elsewhere cannot leave it torn.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_stands_for_a_moment_for_its_stream_only() {
        let refusals = Refusals::default();
        let now = Instant::now();
        assert_eq!(refusals.standing("p1", now), None);
        refusals.note("p1", 1_500, now);
        assert_eq!(
            refusals.standing("p1", now + Duration::from_millis(50)),
            Some(1_500)
        );
        assert_eq!(
            refusals.standing("p2", now),
            None,
            "another stream is asked about"
        );
        assert_eq!(
            refusals.standing("p1", now + REMEMBERED_FOR),
            None,
            "then Redis is asked again"
        );
    }
}
