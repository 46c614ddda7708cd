//! A token bucket per connection: a client may send `burst` frames at once
//! and `rate` per second after that; and the watch that disconnects a client
//! that keeps flooding past its limits.

use std::time::{Duration, Instant};

/// The window over which a connection's refused frames are counted.
const FLOOD_WINDOW: Duration = Duration::from_secs(10);
/// Refused frames in one window that, when they are also most of the
/// window's frames, make a flood.
const FLOOD_REFUSED: u32 = 100;

/// Tells a client that ignores its limits from one that brushes against
/// them: it floods when, within one window, at least [`FLOOD_REFUSED`] of its
/// frames were refused and they were most of what it sent. A frame let
/// through now and then (as the bucket refills) does not reset the count.
#[derive(Debug)]
pub struct FloodWatch {
    window_start: Instant,
    accepted: u32,
    refused: u32,
}

impl Default for FloodWatch {
    fn default() -> Self {
        Self::starting_at(Instant::now())
    }
}

impl FloodWatch {
    fn starting_at(now: Instant) -> Self {
        FloodWatch {
            window_start: now,
            accepted: 0,
            refused: 0,
        }
    }

    pub fn accepted(&mut self) {
        self.roll(Instant::now());
        self.accepted += 1;
    }

    /// Counts a refused frame; true when the client is flooding.
    pub fn refused(&mut self) -> bool {
        self.refused_at(Instant::now())
    }

    fn refused_at(&mut self, now: Instant) -> bool {
        self.roll(now);
        self.refused += 1;
        self.refused >= FLOOD_REFUSED && self.refused > self.accepted
    }

    fn roll(&mut self, now: Instant) {
        if now.saturating_duration_since(self.window_start) >= FLOOD_WINDOW {
            *self = Self::starting_at(now);
        }
    }
}

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_with_a_frame_let_through_now_and_then_is_still_a_flood() {
        let start = Instant::now();
        let mut watch = FloodWatch::starting_at(start);
        // 600 frames a second, one in thirty let through (20 a second).
        let mut flooding_after = None;
        for i in 0..600u32 {
            let now = start + Duration::from_micros(u64::from(i) * 1_666);
            if i % 30 == 0 {
                watch.roll(now);
                watch.accepted += 1;
            } else if watch.refused_at(now) {
                flooding_after = Some(i);
                break;
            }
        }
        let frames = flooding_after.expect("a sustained flood is noticed");
        assert!(frames < 200, "noticed only after {frames} frames");
    }

    #[test]
    fn a_client_mostly_within_its_limit_is_no_flood() {
        let start = Instant::now();
        let mut watch = FloodWatch::starting_at(start);
        // Over a minute: 150 frames a window accepted, 120 refused.
        for second in 0..60u64 {
            let now = start + Duration::from_secs(second);
            for _ in 0..15 {
                watch.roll(now);
                watch.accepted += 1;
            }
            for _ in 0..12 {
                assert!(!watch.refused_at(now), "second {second}");
            }
        }
    }

    #[test]
    fn allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0);
        bucket.last = start;
        assert!((0..3).all(|_| bucket.try_take_at(start)));
        assert!(!bucket.try_take_at(start), "burst exhausted");
        let later = start + Duration::from_millis(100);
        assert!(bucket.try_take_at(later), "one token refilled after 1/rate");
        assert!(!bucket.try_take_at(later));
    }
}
