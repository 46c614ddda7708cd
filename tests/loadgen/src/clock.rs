//! The run's one monotonic clock.
//!
//! Senders stamp each message with microseconds since the run started and
//! receivers subtract that stamp from their own reading: sender and receiver
//! live in this one process, so latency needs no wall-clock synchronisation
//! and is immune to clock steps.

use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Fixes the epoch; call first thing so that stamps start near zero.
pub fn start() {
    epoch();
}

/// Microseconds since [`start`].
pub fn now_us() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The instant a stamp stands for.
pub fn instant_of(us: u64) -> Instant {
    epoch() + std::time::Duration::from_micros(us)
}
