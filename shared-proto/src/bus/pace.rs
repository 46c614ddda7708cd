//! How fast the replicas reading a stream get through its entries, so that
//! a gateway can tell how long a new entry would wait (see `admission`).
//!
//! Each replica measures the entries it finished per second *while it had
//! entries in hand*: at a light load that is how fast it would go if more
//! came, under overload it is what it manages. (Finished per second of wall
//! time would say a quiet replica is slow, and refuse the first burst.) A
//! replica whose entries are stuck reports an upper bound that falls the
//! longer nothing finishes, so a stalled stream is refused rather than
//! filled.
//!
//! The replicas' figures live in one hash per stream, a field each holding
//! `"<entries per second> <valid until, ms since the epoch>"`; the admission
//! script adds up the valid ones. A replica that dies stops refreshing its
//! field, and once no field is valid the gateways fall back on the bound in
//! entries.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Bus, BusError, bounded};

/// How often a replica publishes its pace.
pub(super) const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// How long a published pace counts for: a few publications, so one late
/// tick does not drop it.
const VALID_FOR: Duration = Duration::from_secs(3);

/// Less time in hand than this says too little about the pace; it is added
/// to the next interval's.
const MIN_BUSY: Duration = Duration::from_millis(100);

/// One replica's measurement of one stream.
#[derive(Default)]
pub(super) struct Pace {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    in_hand: usize,
    /// Since when the replica has had entries in hand, if it has any.
    busy_since: Option<Instant>,
    /// Time with entries in hand not yet accounted for in a published pace.
    busy: Duration,
    /// Entries finished (taken off the stream) in that time.
    finished: u64,
}

impl Pace {
    /// An entry came into this replica's hands.
    pub(super) fn took(&self) {
        let mut state = self.lock();
        if state.in_hand == 0 {
            state.busy_since = Some(Instant::now());
        }
        state.in_hand += 1;
    }

    /// An entry left this replica's hands, finished or not.
    pub(super) fn released(&self) {
        let mut state = self.lock();
        state.in_hand = state.in_hand.saturating_sub(1);
        if state.in_hand == 0
            && let Some(since) = state.busy_since.take()
        {
            state.busy += since.elapsed();
        }
    }

    /// An entry was acknowledged, so it no longer waits on the stream.
    pub(super) fn finished(&self) {
        self.lock().finished += 1;
    }

    /// Entries finished per second in hand since the last pace taken, or
    /// `None` if the replica has had too little in hand to tell.
    pub(super) fn take_sample(&self) -> Option<f64> {
        self.sample_at(Instant::now())
    }

    fn sample_at(&self, now: Instant) -> Option<f64> {
        let mut state = self.lock();
        if let Some(since) = state.busy_since {
            state.busy += now.saturating_duration_since(since);
            state.busy_since = Some(now);
        }
        if state.busy < MIN_BUSY {
            return None;
        }
        let seconds = state.busy.as_secs_f64();
        if state.finished == 0 {
            // Nothing finished yet: fewer than one in all that time. The
            // time keeps counting, so the bound keeps falling.
            return Some(1.0 / seconds);
        }
        let pace = state.finished as f64 / seconds;
        state.busy = Duration::ZERO;
        state.finished = 0;
        Some(pace)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain counters; a panic elsewhere cannot leave them torn.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Bus {
    /// Records `per_sec` as `consumer`'s pace on `stream`, valid for a few
    /// publications.
    pub(super) async fn publish_pace(
        &self,
        stream: &str,
        consumer: &str,
        per_sec: f64,
    ) -> Result<(), BusError> {
        let key = self.names.stream_pace(stream);
        let valid_for = u64::try_from(VALID_FOR.as_millis()).unwrap_or(u64::MAX);
        let until = crate::now_ms().saturating_add(i64::try_from(valid_for).unwrap_or(0));
        let mut connection = self.connection.clone();
        bounded(
            redis::pipe()
                .hset(&key, consumer, format!("{per_sec:.3} {until}"))
                .ignore()
                .pexpire(&key, i64::try_from(valid_for).unwrap_or(i64::MAX))
                .ignore()
                .query_async::<()>(&mut connection),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_counts_only_the_time_with_entries_in_hand() {
        let pace = Pace::default();
        let start = Instant::now();
        // 10 entries in 200 ms in hand, then a long idle stretch.
        {
            let mut state = pace.lock();
            state.busy = Duration::from_millis(200);
            state.finished = 10;
        }
        let later = start + Duration::from_secs(30);
        let per_sec = pace.sample_at(later).expect("enough time in hand");
        assert!((per_sec - 50.0).abs() < 1e-9, "{per_sec}");
        assert_eq!(pace.sample_at(later), None, "nothing since");
    }

    #[test]
    fn a_stuck_replica_reports_a_falling_bound() {
        let pace = Pace::default();
        pace.took();
        let since = pace.lock().busy_since.expect("busy");
        let at = |ms| pace.sample_at(since + Duration::from_millis(ms));
        assert_eq!(at(500), Some(2.0), "fewer than one in half a second");
        assert_eq!(at(2_000), Some(0.5), "fewer than one in two seconds");
        pace.finished();
        assert_eq!(at(4_000), Some(0.25), "one in four seconds");
    }

    #[test]
    fn too_short_a_time_in_hand_says_nothing() {
        let pace = Pace::default();
        pace.took();
        pace.finished();
        pace.released();
        assert_eq!(pace.sample_at(Instant::now()), None);
    }
}
