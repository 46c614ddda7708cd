//! How late this gateway hands out the events published to it, reported
//! so that admission refuses new messages while a queue stands in delivery.
//!
//! Past what the gateways can deliver, chat-service keeps up and its
//! partitions stay short, but events queue in Redis's output buffer and in
//! this replica's socket to it: latency grows with nothing on a stream to
//! show it. Each kept event carries the moment Redis published it (its id on
//! the event clock), so the listener notes how long each waited until it
//! was handed to the connections, and every half-second the *least* of those
//! waits is reported, as a replica reports its stream's (see
//! `shared_proto::bus::queue_delay`): high only when a queue stood through
//! the whole interval, not after a burst, and no wait once a second has
//! passed without any event. The admission script refuses messages while any
//! gateway's report is over `max_queue_wait_ms`, since the gateway that
//! admits a message cannot know where its readers are.
//!
//! Like the streams' reports, this compares Redis's clock with this
//! machine's: they are assumed to agree to well within the bound.

use std::sync::{Arc, Mutex};

use shared_proto::bus::{Bus, LeastDelay, publish_ticks};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The waits of the events heard since the last report.
#[derive(Debug, Default)]
pub struct DeliveryDelay(Mutex<LeastDelay>);

impl DeliveryDelay {
    /// An event Redis published at `published_ms` was handed out at `now_ms`.
    pub fn heard(&self, published_ms: u64, now_ms: i64) {
        let published = i64::try_from(published_ms).unwrap_or(i64::MAX);
        self.lock().note(published, now_ms);
    }

    fn take(&self) -> Option<i64> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeastDelay> {
        // Plain bookkeeping; a panic elsewhere cannot leave it torn.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Intervals without an event after which a gateway that reported a wait
/// says that nothing waits any more.
const QUIET_INTERVALS: u32 = 2;

/// Reports the least wait of each interval in which events were heard,
/// until `stop`.
///
/// While messages are refused because of this gateway's report, no event
/// comes to it, so nothing would replace the report until it lapsed (3 s):
/// every sender would be refused for that long after the queue was gone.
/// Hearing nothing for a second means nothing is queued for it, so it then
/// reports no wait; a quiet gateway that reported none says nothing.
pub async fn report(
    delay: Arc<DeliveryDelay>,
    bus: Bus,
    gateway_id: String,
    stop: CancellationToken,
) {
    let mut tick = publish_ticks();
    let mut quiet = Quiet::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let Some(delay_ms) = quiet.after_interval(delay.take()) else { continue };
                metrics::gauge!("switchyard_gateway_delivery_delay_ms").set(delay_ms as f64);
                if let Err(err) = bus.publish_delivery_delay(&gateway_id, delay_ms).await {
                    debug!(error = %err, "publishing the delivery delay failed");
                }
            }
        }
    }
}

/// What to report after each interval.
#[derive(Debug, Default)]
struct Quiet {
    /// The last wait reported.
    reported: i64,
    /// Intervals in a row without an event.
    intervals: u32,
}

impl Quiet {
    fn after_interval(&mut self, heard: Option<i64>) -> Option<i64> {
        match heard {
            Some(delay_ms) => {
                self.intervals = 0;
                self.reported = delay_ms;
                Some(delay_ms)
            }
            None => {
                self.intervals += 1;
                if self.reported > 0 && self.intervals >= QUIET_INTERVALS {
                    self.reported = 0;
                    return Some(0);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_wait_of_the_interval_is_reported() {
        let delay = DeliveryDelay::default();
        delay.heard(1_000, 2_500);
        delay.heard(2_400, 2_500);
        assert_eq!(delay.take(), Some(100), "a burst came and went");
        assert_eq!(delay.take(), None, "nothing heard since");
        delay.heard(3_000, 2_990);
        assert_eq!(
            delay.take(),
            Some(0),
            "clocks a little apart count as no wait"
        );
    }

    #[test]
    fn a_wait_reported_is_taken_back_once_nothing_comes() {
        let mut quiet = Quiet::default();
        assert_eq!(quiet.after_interval(None), None, "nothing to say");
        assert_eq!(quiet.after_interval(Some(1_500)), Some(1_500));
        assert_eq!(quiet.after_interval(None), None, "one quiet interval");
        assert_eq!(
            quiet.after_interval(None),
            Some(0),
            "a second: nothing waits"
        );
        assert_eq!(quiet.after_interval(None), None, "said once");
        assert_eq!(quiet.after_interval(Some(3)), Some(3));
    }
}
