//! When each message of an open-loop schedule is due, kept to the operating
//! system's timer.
//!
//! Message `k` of a schedule at `rate` is due at `start + k / rate` and
//! carries that time, so whatever delays its sending counts as latency. A
//! sender woken by tokio's timer, which counts whole milliseconds and rounds
//! every wake-up up to the next, sent each message up to a millisecond late:
//! by a lateness fixed for a run (where the schedule's start fell within the
//! timer's millisecond) and different from one run to the next, added to
//! every latency measured. Sleeping on the thread instead wakes within the
//! kernel's timer slack (about 50 µs), and only when a message is due, where
//! a one-millisecond tick woke the load generator a thousand times a second
//! whatever the rate.

use std::ops::Range;
use std::time::{Duration, Instant};

/// The messages of a schedule, handed out as they fall due.
pub struct Pacer {
    start: Instant,
    rate: f64,
    total: u64,
    next: u64,
}

impl Pacer {
    /// A schedule of `total` messages at `rate` per second, from now.
    pub fn start(rate: f64, total: u64) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate,
            total,
            next: 0,
        }
    }

    /// When the schedule started.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// Messages handed out so far.
    pub fn handed_out(&self) -> u64 {
        self.next
    }

    fn is_done(&self) -> bool {
        self.next >= self.total
    }

    /// When message `k` is due, in microseconds after the start.
    fn due_offset_us(&self, k: u64) -> u64 {
        (k as f64 * 1e6 / self.rate) as u64
    }

    /// Hands each message to `send` when it is due, with when it was due (in
    /// microseconds after the start), until the schedule is done or `stop`
    /// says so. Blocks this runtime worker meanwhile
    /// (`tokio::task::block_in_place`: its other tasks move to other workers).
    pub fn run(&mut self, stop: impl Fn() -> bool, mut send: impl FnMut(u64, u64)) {
        tokio::task::block_in_place(|| {
            while !self.is_done() && !stop() {
                for k in self.wait_due() {
                    send(k, self.due_offset_us(k));
                }
            }
        });
    }

    /// Blocks the calling thread until the next message is due, then gives
    /// every message due by now (more than one when the thread woke late, or
    /// at rates above what it can wake for one by one).
    fn wait_due(&mut self) -> Range<u64> {
        let due_at = self.start + Duration::from_secs_f64(self.next as f64 / self.rate);
        let now = Instant::now();
        if due_at > now {
            std::thread::sleep(due_at - now);
        }
        let due = ((self.start.elapsed().as_secs_f64() * self.rate) as u64 + 1).min(self.total);
        let from = self.next;
        self.next = due.max(from);
        from..self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_handed_out_once_in_order_and_not_before_it_is_due() {
        let mut pacer = Pacer::start(2_000.0, 40);
        let mut handed = Vec::new();
        while !pacer.is_done() {
            for k in pacer.wait_due() {
                let due = pacer.started() + Duration::from_micros(pacer.due_offset_us(k));
                assert!(Instant::now() >= due, "message {k} handed out early");
                handed.push(k);
            }
        }
        assert_eq!(handed, (0..40).collect::<Vec<_>>());
    }
}
