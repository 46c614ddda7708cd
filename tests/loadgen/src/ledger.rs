//! What happened to each measured message, by its stamp id: when it was
//! written, how its sender was answered (acknowledged, `BUSY`, `TIMEOUT`,
//! another refusal) and how many of its recipients received it.
//!
//! The capacity runs need this per message, not per run: "acknowledged but
//! never delivered" and "refused within how long" are questions about one
//! message. Ids are dense (0, 1, 2, ... in sending order), so the ledger is a
//! set of flat arrays sized once for the run's whole plan; a message is
//! updated by whichever connection task sees its write, reply or receipt.
//!
//! Messages are grouped into segments (a step, or one second of a step)
//! by id range; each segment keeps its own latency histograms.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::metrics::{Percentiles, percentiles};

/// Highest latency a histogram holds: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;

/// How the server answered the sender of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (Switchyard `MESSAGE_SENT`, Centrifugo's publish reply).
    Acked,
    /// Refused as retryable overload (Switchyard `BUSY`): nothing was done.
    Busy,
    /// No answer in time (Switchyard `TIMEOUT`): the outcome is unknown, and
    /// an acknowledgement may still follow.
    Timeout,
    /// Any other refusal.
    Refused,
}

const ACKED: u8 = 1;
const BUSY: u8 = 2;
const TIMEOUT: u8 = 4;
const REFUSED: u8 = 8;

impl Outcome {
    fn flag(self) -> u8 {
        match self {
            Outcome::Acked => ACKED,
            Outcome::Busy => BUSY,
            Outcome::Timeout => TIMEOUT,
            Outcome::Refused => REFUSED,
        }
    }
}

/// The messages of one segment, ids `first..end`.
struct Segment {
    first: u64,
    delivery: Histogram<u64>,
    refusal: Histogram<u64>,
}

/// Per-message records for ids below its capacity; later ids are ignored.
pub struct Ledger {
    due_us: Vec<AtomicU64>,
    sent_us: Vec<AtomicU64>,
    acked_us: Vec<AtomicU64>,
    /// The longest any recipient waited for it after it was due.
    slowest_us: Vec<AtomicU64>,
    receivers: Vec<AtomicU32>,
    delivered: Vec<AtomicU32>,
    flags: Vec<AtomicU8>,
    /// Whether any reply was matched: protocols without acknowledgements
    /// (the bare server) never answer, and their messages are not "unanswered".
    answers: AtomicU64,
    segments: Mutex<Vec<Segment>>,
}

/// Totals over a range of messages, once they have settled.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Messages written to their sockets.
    pub sent: u64,
    pub acked: u64,
    pub busy: u64,
    /// Messages answered `TIMEOUT` at least once (acknowledged later or not).
    pub timeouts: u64,
    /// Refused otherwise, and never acknowledged.
    pub refused: u64,
    /// Written, but without any answer (only for protocols that answer).
    pub unanswered: u64,
    /// Receipts expected: each written message that was not refused, times
    /// its recipients.
    pub expected: u64,
    pub delivered: u64,
    /// Acknowledged messages some recipient never received.
    pub lost_acked: u64,
    /// From when a message was due to each receipt.
    #[serde(rename = "delivery_us")]
    pub delivery: Option<Percentiles>,
    /// From writing a message to its `BUSY` reply.
    #[serde(rename = "refusal_us")]
    pub refusal: Option<Percentiles>,
}

/// The messages of a range delivered later than a limit, and where they
/// were held up: a stall of everything shows as late messages due within a
/// short time of each other, one connection's as a few spread out; late
/// writes are the load generator's own, late acknowledgements the server's
/// before it answered, and the rest were held up on their way out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Late {
    pub messages: u64,
    /// When the first and the last of them were due, after the range's first.
    pub due_from_ms: f64,
    pub due_to_ms: f64,
    /// The longest any recipient waited.
    pub slowest_ms: f64,
    /// Written to their sockets more than a tenth of the limit after they
    /// were due.
    pub written_late: u64,
    /// Acknowledged more than the limit after they were due, or not at all.
    pub acked_late: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3)
        .expect("1 µs to one hour at 3 significant digits is a valid histogram")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under the lock is a single step.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ledger {
    /// A ledger for ids `0..capacity`.
    pub fn new(capacity: u64) -> Ledger {
        let n = usize::try_from(capacity).unwrap_or(usize::MAX);
        Ledger {
            due_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            sent_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            acked_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            slowest_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            receivers: (0..n).map(|_| AtomicU32::new(0)).collect(),
            delivered: (0..n).map(|_| AtomicU32::new(0)).collect(),
            flags: (0..n).map(|_| AtomicU8::new(0)).collect(),
            answers: AtomicU64::new(0),
            segments: Mutex::new(Vec::new()),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.flags.len() as u64
    }

    fn slot(&self, id: u64) -> Option<usize> {
        usize::try_from(id).ok().filter(|&i| i < self.flags.len())
    }

    /// Starts a segment at `first`: ids from here on belong to it until the
    /// next one starts. Segments start in increasing order.
    pub fn begin_segment(&self, first: u64) {
        lock(&self.segments).push(Segment {
            first,
            delivery: histogram(),
            refusal: histogram(),
        });
    }

    fn with_segment(&self, id: u64, f: impl FnOnce(&mut Segment)) {
        let mut segments = lock(&self.segments);
        let at = segments.partition_point(|s| s.first <= id);
        if let Some(segment) = at.checked_sub(1).and_then(|i| segments.get_mut(i)) {
            f(segment);
        }
    }

    /// Message `id`, due at `due_us`, is to reach `receivers` others.
    pub fn scheduled(&self, id: u64, receivers: u32, due_us: u64) {
        if let Some(i) = self.slot(id) {
            self.receivers[i].store(receivers, Ordering::Relaxed);
            self.due_us[i].store(due_us, Ordering::Relaxed);
        }
    }

    /// Message `id` was written to its socket at `now_us`.
    pub fn sent(&self, id: u64, now_us: u64) {
        if let Some(i) = self.slot(id) {
            self.sent_us[i].store(now_us.max(1), Ordering::Relaxed);
        }
    }

    /// The sender of `id` was answered with `outcome` at `now_us`.
    pub fn answered(&self, id: u64, outcome: Outcome, now_us: u64) {
        let Some(i) = self.slot(id) else { return };
        self.answers.fetch_add(1, Ordering::Relaxed);
        self.flags[i].fetch_or(outcome.flag(), Ordering::Relaxed);
        if outcome == Outcome::Acked {
            // The first acknowledgement; a resend's would come later.
            let _ = self.acked_us[i].compare_exchange(
                0,
                now_us.max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        if outcome == Outcome::Busy {
            let sent = self.sent_us[i].load(Ordering::Relaxed);
            if sent > 0 {
                let us = now_us.saturating_sub(sent).clamp(1, MAX_US);
                self.with_segment(id, |s| s.refusal.saturating_record(us));
            }
        }
    }

    /// A recipient received `id`, `latency_us` after it was due.
    pub fn delivered(&self, id: u64, latency_us: u64) {
        let Some(i) = self.slot(id) else { return };
        self.delivered[i].fetch_add(1, Ordering::Relaxed);
        let us = latency_us.clamp(1, MAX_US);
        self.slowest_us[i].fetch_max(us, Ordering::Relaxed);
        self.with_segment(id, |s| s.delivery.saturating_record(us));
    }

    /// Whether every message of `first..end` written so far has its answer
    /// (where the protocol answers) and every receipt it is due.
    pub fn settled(&self, first: u64, end: u64) -> bool {
        let t = self.tally(first, end);
        t.unanswered == 0 && t.delivered >= t.expected
    }

    /// Totals for ids `first..end`; latencies of the segment starting at `first`.
    pub fn tally(&self, first: u64, end: u64) -> Tally {
        let answers = self.answers.load(Ordering::Relaxed) > 0;
        let mut t = Tally::default();
        let end = end.min(self.capacity());
        for id in first..end {
            let i = id as usize;
            if self.sent_us[i].load(Ordering::Relaxed) == 0 {
                continue;
            }
            t.sent += 1;
            let flags = self.flags[i].load(Ordering::Relaxed);
            let receivers = u64::from(self.receivers[i].load(Ordering::Relaxed));
            let delivered = u64::from(self.delivered[i].load(Ordering::Relaxed));
            let acked = flags & ACKED != 0;
            t.acked += u64::from(acked);
            t.timeouts += u64::from(flags & TIMEOUT != 0);
            let refused = !acked && flags & (BUSY | REFUSED) != 0;
            if !acked && flags & BUSY != 0 {
                t.busy += 1;
            } else if refused {
                t.refused += 1;
            }
            if answers && flags == 0 {
                t.unanswered += 1;
            }
            if !refused {
                t.expected += receivers;
            }
            t.delivered += delivered;
            if acked && delivered < receivers {
                t.lost_acked += 1;
            }
        }
        let segments = lock(&self.segments);
        if let Some(s) = segments.iter().find(|s| s.first == first) {
            t.delivery = (!s.delivery.is_empty()).then(|| percentiles(&s.delivery));
            t.refusal = (!s.refusal.is_empty()).then(|| percentiles(&s.refusal));
        }
        t
    }

    /// The messages of `first..end` some recipient got more than `limit_us`
    /// after they were due, and where they were held up; `None` if none was.
    pub fn late(&self, first: u64, end: u64, limit_us: u64) -> Option<Late> {
        let end = end.min(self.capacity());
        let step_due = self.due_us.get(first as usize)?.load(Ordering::Relaxed);
        let mut late: Option<Late> = None;
        for i in first as usize..end as usize {
            let slowest = self.slowest_us[i].load(Ordering::Relaxed);
            if slowest <= limit_us {
                continue;
            }
            let due = self.due_us[i].load(Ordering::Relaxed);
            let due_ms = due.saturating_sub(step_due) as f64 / 1000.0;
            let after_due = |at: u64| (at > 0).then(|| at.saturating_sub(due));
            let written = after_due(self.sent_us[i].load(Ordering::Relaxed));
            let acked = after_due(self.acked_us[i].load(Ordering::Relaxed));
            let l = late.get_or_insert(Late {
                due_from_ms: due_ms,
                ..Late::default()
            });
            l.messages += 1;
            l.due_from_ms = l.due_from_ms.min(due_ms);
            l.due_to_ms = l.due_to_ms.max(due_ms);
            l.slowest_ms = l.slowest_ms.max(slowest as f64 / 1000.0);
            l.written_late += u64::from(written.is_none_or(|us| us > limit_us / 10));
            l.acked_late += u64::from(acked.is_none_or(|us| us > limit_us));
        }
        late
    }

    /// Receipts due over all messages: written, not refused, times recipients.
    pub fn expected_total(&self) -> u64 {
        self.tally(0, self.capacity()).expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_messages_without_every_receipt_are_lost() {
        let ledger = Ledger::new(10);
        ledger.begin_segment(0);
        for id in 0..4 {
            ledger.scheduled(id, 2, 900);
            ledger.sent(id, 1_000);
        }
        // 0: acknowledged and delivered twice; 1: acknowledged, delivered once;
        // 2: BUSY after 5 ms; 3: TIMEOUT, then a late acknowledgement, delivered.
        ledger.answered(0, Outcome::Acked, 2_000);
        ledger.delivered(0, 500);
        ledger.delivered(0, 700);
        ledger.answered(1, Outcome::Acked, 2_000);
        ledger.delivered(1, 900);
        ledger.answered(2, Outcome::Busy, 6_000);
        ledger.answered(3, Outcome::Timeout, 11_000);
        ledger.answered(3, Outcome::Acked, 12_000);
        ledger.delivered(3, 11_000);
        ledger.delivered(3, 11_000);
        let t = ledger.tally(0, 4);
        assert_eq!((t.sent, t.acked, t.busy, t.timeouts), (4, 3, 1, 1));
        assert_eq!(t.expected, 6, "the BUSY message is due to no one");
        assert_eq!(t.delivered, 5);
        assert_eq!(t.lost_acked, 1);
        assert_eq!(t.unanswered, 0);
        // Histograms keep three significant digits.
        let refusal = t.refusal.expect("one refusal").max;
        assert!(
            (4_990..=5_010).contains(&refusal),
            "refused after {refusal} µs"
        );
        assert!(!ledger.settled(0, 4));
        // 3 alone reached a recipient more than 10 ms after it was due, and
        // was acknowledged late too.
        let late = ledger.late(0, 4, 10_000).expect("one late message");
        assert_eq!(
            (late.messages, late.acked_late, late.written_late),
            (1, 1, 0)
        );
        assert!(ledger.late(0, 3, 10_000).is_none());
    }

    #[test]
    fn ids_beyond_the_plan_are_ignored() {
        let ledger = Ledger::new(1);
        ledger.begin_segment(0);
        ledger.scheduled(5, 1, 1);
        ledger.sent(5, 1);
        ledger.delivered(5, 1);
        assert_eq!(ledger.tally(0, 10).sent, 0);
    }
}
