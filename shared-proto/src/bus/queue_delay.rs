//! How long entries have been waiting on a stream before they were done, so
//! that a gateway can refuse new work once a queue stands (see `admission`).
//!
//! Each replica measures, per stream, the *shortest* time from admission to
//! acknowledgement among the entries it finished in the last half-second
//! (the idea of CoDel: the least delay over an interval is high only when a
//! queue has stood all through it, not when a burst came and went, and not
//! when the database is slow but nothing waits behind it). While nothing
//! finishes, the age of the oldest entry in hand stands in for it: a stalled
//! stream is refused rather than filled. Entries handled again after a
//! failure or taken over from a dead replica are left out: their age says
//! nothing about the queue.
//!
//! The replicas' figures live in one hash per stream, a field each holding
//! `"<delay ms> <valid until, ms since the epoch>"`; the admission script
//! takes the longest valid one. A replica that dies stops refreshing its
//! field, and once no field is valid the gateways fall back on the bound in
//! entries.
//!
//! Gateways report the same way how late they hand out the events published
//! to them ([`Bus::publish_delivery_delay`]): past what they can deliver, the
//! queue stands in Redis and in their sockets rather than on a stream.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{Bus, BusError, bounded};

/// How often a replica publishes its delay: the interval the least delay
/// is taken over.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Ticks every [`PUBLISH_EVERY`], each closing the interval a least delay is
/// taken over. After a stall (a paused process, a starved runtime) the
/// ticks missed are not fired at once: each would close an interval a
/// moment long, without an entry or event in it, and a quiet interval
/// reads as "nothing waits", overwriting the delay the stall had just
/// shown.
pub fn publish_ticks() -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(PUBLISH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// How long a published delay counts for: a few publications, so one late
/// tick does not drop it.
const VALID_FOR: Duration = Duration::from_secs(3);

/// One replica's measurement of one stream.
#[derive(Default)]
pub(super) struct QueueDelay {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the first-delivery entries in hand were admitted (ms since the
    /// epoch), with how many were admitted in that millisecond.
    in_hand: BTreeMap<i64, usize>,
    /// The shortest delay of an entry finished since the last sample.
    least_finished: LeastDelay,
}

/// The least of the delays noted since it was last taken.
#[derive(Debug, Default)]
pub struct LeastDelay(Option<i64>);

impl LeastDelay {
    /// Notes something that waited from `since_ms` to `until_ms`.
    pub fn note(&mut self, since_ms: i64, until_ms: i64) {
        let delay = until_ms.saturating_sub(since_ms).max(0);
        self.0 = Some(self.0.map_or(delay, |least| least.min(delay)));
    }

    /// The least delay noted since the last call, if any was.
    pub fn take(&mut self) -> Option<i64> {
        self.0.take()
    }
}

/// When an entry was admitted: the time part of its stream id.
pub(super) fn admitted_at(entry_id: &str) -> Option<i64> {
    entry_id.split_once('-')?.0.parse().ok()
}

impl QueueDelay {
    /// An entry admitted at `at_ms`, on its first delivery, came into this
    /// replica's hands.
    pub(super) fn took(&self, at_ms: i64) {
        *self.lock().in_hand.entry(at_ms).or_default() += 1;
    }

    /// That entry left this replica's hands; `finished_at_ms` if it was
    /// acknowledged then.
    pub(super) fn released(&self, at_ms: i64, finished_at_ms: Option<i64>) {
        let mut state = self.lock();
        if let Some(count) = state.in_hand.get_mut(&at_ms) {
            *count -= 1;
            if *count == 0 {
                state.in_hand.remove(&at_ms);
            }
        }
        if let Some(finished) = finished_at_ms {
            state.least_finished.note(at_ms, finished);
        }
    }

    /// The delay to publish for the interval since the last sample, in ms:
    /// the least delay of an entry finished in it, else the age of the
    /// oldest entry in hand, else `None` (nothing to say).
    pub(super) fn take_sample(&self, now_ms: i64) -> Option<i64> {
        let mut state = self.lock();
        if let Some(least) = state.least_finished.take() {
            return Some(least);
        }
        let oldest = state.in_hand.keys().next()?;
        Some(now_ms.saturating_sub(*oldest).max(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain bookkeeping; a panic elsewhere cannot leave it torn.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Bus {
    /// Records `delay_ms` as `consumer`'s queue delay on `stream`, valid
    /// for a few publications.
    pub(super) async fn publish_queue_delay(
        &self,
        stream: &str,
        consumer: &str,
        delay_ms: i64,
    ) -> Result<(), BusError> {
        let key = self.names.stream_queue_delay(stream);
        self.publish_delay(&key, consumer, delay_ms).await
    }

    /// Records `delay_ms` as how late `gateway` lately handed out the
    /// events published to it, valid for a few publications.
    pub async fn publish_delivery_delay(
        &self,
        gateway: &str,
        delay_ms: i64,
    ) -> Result<(), BusError> {
        let key = self.names.delivery_delay();
        self.publish_delay(&key, gateway, delay_ms).await
    }

    async fn publish_delay(&self, key: &str, field: &str, delay_ms: i64) -> Result<(), BusError> {
        let valid_for = i64::try_from(VALID_FOR.as_millis()).unwrap_or(i64::MAX);
        let until = crate::now_ms().saturating_add(valid_for);
        let mut connection = self.connection.clone();
        bounded(
            redis::pipe()
                .hset(key, field, format!("{delay_ms} {until}"))
                .ignore()
                .pexpire(key, valid_for)
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

    #[tokio::test]
    async fn a_stall_closes_one_interval_not_one_per_tick_missed() {
        let mut ticks = publish_ticks();
        ticks.tick().await;
        // The runtime's only thread is held, as in a paused process.
        std::thread::sleep(PUBLISH_EVERY * 3);
        let stalled = tokio::time::Instant::now();
        ticks.tick().await;
        assert!(
            stalled.elapsed() < PUBLISH_EVERY / 2,
            "the stalled interval closes at once"
        );
        let closed = tokio::time::Instant::now();
        ticks.tick().await;
        assert!(
            closed.elapsed() >= PUBLISH_EVERY * 9 / 10,
            "the next interval is a whole one, not a moment: {:?}",
            closed.elapsed()
        );
    }

    #[test]
    fn the_least_delay_of_the_interval_is_published() {
        let delay = QueueDelay::default();
        for (admitted, finished) in [(1_000, 2_500), (1_100, 1_300), (1_200, 2_600)] {
            delay.took(admitted);
            delay.released(admitted, Some(finished));
        }
        assert_eq!(delay.take_sample(3_000), Some(200), "a burst came and went");
        assert_eq!(delay.take_sample(3_500), None, "nothing since");
    }

    #[test]
    fn while_nothing_finishes_the_oldest_in_hand_stands_in() {
        let delay = QueueDelay::default();
        delay.took(1_000);
        delay.took(1_000);
        delay.took(1_400);
        assert_eq!(delay.take_sample(2_000), Some(1_000));
        assert_eq!(delay.take_sample(4_000), Some(3_000), "it keeps growing");
        delay.released(1_000, None);
        assert_eq!(delay.take_sample(4_000), Some(3_000), "one of two went");
        delay.released(1_000, None);
        assert_eq!(delay.take_sample(4_000), Some(2_600));
    }

    #[test]
    fn an_entry_admitted_at_is_read_from_its_id() {
        assert_eq!(admitted_at("1733540000123-7"), Some(1_733_540_000_123));
        assert_eq!(admitted_at("nonsense"), None);
    }
}
