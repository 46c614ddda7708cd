//! How long an entry waits around its handling, by stage: on its stream
//! before a replica takes it, in a replica for a handling slot, and after
//! its handling for its results to go out. The handling itself is
//! `switchyard_action_duration_seconds`; with these, the time from a
//! gateway admitting an action to its results leaving the service is
//! accounted for, and an operator can tell a queue on the stream from a
//! replica short of slots or a slow finishing script (docs/metrics.md).

use std::time::Duration;

use metrics::Histogram;

/// One worker's histograms of `switchyard_bus_entry_wait_seconds`,
/// registered once for its stream rather than looked up per entry.
pub(super) struct Waits {
    /// From its admission (the time in its id, Redis's clock) to this
    /// replica taking it in hand. First deliveries only: a claimed entry's
    /// age says how long its first replica held it, not how long it queued.
    queued: Histogram,
    /// From taken in hand to holding a slot of its key and a handling slot.
    pub(super) slot: Histogram,
    /// From its handling's end (or its being shed unhandled) to its
    /// publications sent and the entry acknowledged, the wait for a
    /// finishing run included.
    pub(super) finish: Histogram,
}

impl Waits {
    pub(super) fn of(stream: &str) -> Waits {
        let stage = |name: &'static str| {
            metrics::histogram!(
                "switchyard_bus_entry_wait_seconds",
                "stream" => stream.to_owned(),
                "stage" => name,
            )
        };
        Waits {
            queued: stage("queued"),
            slot: stage("slot"),
            finish: stage("finish"),
        }
    }

    /// An entry admitted at `admitted_ms` taken in hand at `now_ms`; a
    /// clock behind Redis's counts as no wait.
    pub(super) fn queued(&self, admitted_ms: i64, now_ms: i64) {
        let waited = u64::try_from(now_ms.saturating_sub(admitted_ms)).unwrap_or(0);
        self.queued
            .record(Duration::from_millis(waited).as_secs_f64());
    }
}
