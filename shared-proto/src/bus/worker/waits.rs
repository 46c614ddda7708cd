//! How long an entry waits around its handling, by stage: on its stream
//! before a replica takes it, in a replica for a handling slot, and after
//! its handling for its results to go out. The handling itself is
//! `switchyard_action_duration_seconds`; with these, the time from a
//! gateway admitting an action to its results leaving the service is
//! accounted for, and an operator can tell a queue on the stream from a
//! replica short of slots or a slow finishing script (docs/metrics.md).

use std::time::Duration;

/// A stage an entry waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// From its admission (the time in its id, Redis's clock) to a replica
    /// taking it in hand. First deliveries only: a claimed entry's age
    /// says how long its first replica held it, not how long it queued.
    Queued,
    /// From taken in hand to holding a slot of its key and a handling slot.
    Slot,
    /// From its handling's end (or its being shed unhandled) to its
    /// publications sent and the entry acknowledged, the wait for a
    /// finishing run included.
    Finish,
}

impl Wait {
    fn label(self) -> &'static str {
        match self {
            Wait::Queued => "queued",
            Wait::Slot => "slot",
            Wait::Finish => "finish",
        }
    }

    pub(super) fn record(self, stream: &str, waited: Duration) {
        metrics::histogram!(
            "switchyard_bus_entry_wait_seconds",
            "stream" => stream.to_owned(),
            "stage" => self.label(),
        )
        .record(waited.as_secs_f64());
    }

    /// [`Wait::Queued`] for an entry admitted at `admitted_ms`, taken in
    /// hand at `now_ms`; a clock behind Redis's counts as no wait.
    pub(super) fn record_queued(stream: &str, admitted_ms: i64, now_ms: i64) {
        let waited = u64::try_from(now_ms.saturating_sub(admitted_ms)).unwrap_or(0);
        Wait::Queued.record(stream, Duration::from_millis(waited));
    }
}
