//! What a run measures, shared by every task of the run: latency
//! histograms, counters, errors by kind and a per-second timeline.
//!
//! Histograms are HDR histograms in microseconds, sharded behind a few locks
//! so that thousands of connection tasks can record without all contending
//! for one; they are merged when the report is written.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::ledger::Ledger;

/// Highest latency a histogram holds: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;
const SHARDS: usize = 8;
/// Error details kept per kind, to show what went wrong without flooding.
const SAMPLES_PER_KIND: usize = 3;

/// The latencies a run can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Send to a recipient's receipt of a message.
    Delivery,
    /// TCP connect and WebSocket handshake.
    Connect,
    /// Login (or connect command) to its acceptance.
    Login,
    /// Connect, handshake and login together.
    Open,
    /// Registration request to its reply.
    Register,
    /// Registration reply to the code being readable in the mail catcher.
    MailWait,
    /// Confirmation request to its reply.
    Confirm,
    /// Password login of a new account.
    AccountLogin,
    /// One whole sign-up: register, mail, confirm, login.
    SignUp,
}

impl Metric {
    pub const ALL: [Metric; 9] = [
        Metric::Delivery,
        Metric::Connect,
        Metric::Login,
        Metric::Open,
        Metric::Register,
        Metric::MailWait,
        Metric::Confirm,
        Metric::AccountLogin,
        Metric::SignUp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Delivery => "delivery",
            Metric::Connect => "connect",
            Metric::Login => "login",
            Metric::Open => "open",
            Metric::Register => "register",
            Metric::MailWait => "mail_wait",
            Metric::Confirm => "confirm",
            Metric::AccountLogin => "account_login",
            Metric::SignUp => "sign_up",
        }
    }

    fn index(self) -> usize {
        Metric::ALL
            .iter()
            .position(|m| *m == self)
            .expect("every metric is listed in Metric::ALL")
    }
}

/// Something that went wrong, counted by `kind`.
#[derive(Debug, Clone)]
pub struct Failure {
    /// A short machine-readable kind, e.g. `connect`, `RATE_LIMITED`.
    pub kind: String,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure {
            kind: kind.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Failure {}

/// Errors of one kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorStat {
    pub count: u64,
    pub samples: Vec<String>,
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// One second of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub t: usize,
    pub sent: u64,
    pub delivered: u64,
}

/// Counters the progress bar and the report read.
#[derive(Debug, Default)]
pub struct Counters {
    pub opened: AtomicU64,
    pub sent: AtomicU64,
    /// Measured messages a connection task has tried to write (sent or failed).
    pub processed: AtomicU64,
    pub expected: AtomicU64,
    pub delivered: AtomicU64,
    pub probes: AtomicU64,
    /// The probe round whose receipts `probes` counts.
    pub probe_round: AtomicU64,
    pub echoes: AtomicU64,
    pub accounts: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The shared recorder of one run.
pub struct Recorder {
    histograms: Vec<[Mutex<Histogram<u64>>; SHARDS]>,
    errors: Mutex<BTreeMap<String, ErrorStat>>,
    pub counters: Counters,
    timeline_start: Mutex<Option<Instant>>,
    timeline_sent: Vec<AtomicU64>,
    timeline_delivered: Vec<AtomicU64>,
    /// Per-message records, for runs that need them (capacity); set before
    /// the connection tasks start.
    pub ledger: OnceLock<Arc<Ledger>>,
}

impl Recorder {
    /// A recorder whose timeline covers up to `seconds` seconds.
    pub fn new(seconds: usize) -> Self {
        let histogram = || {
            Mutex::new(
                Histogram::new_with_bounds(1, MAX_US, 3)
                    .expect("1 µs to one hour at 3 significant digits is a valid histogram"),
            )
        };
        Recorder {
            histograms: Metric::ALL
                .iter()
                .map(|_| std::array::from_fn(|_| histogram()))
                .collect(),
            errors: Mutex::new(BTreeMap::new()),
            counters: Counters::default(),
            timeline_start: Mutex::new(None),
            timeline_sent: (0..=seconds).map(|_| AtomicU64::new(0)).collect(),
            timeline_delivered: (0..=seconds).map(|_| AtomicU64::new(0)).collect(),
            ledger: OnceLock::new(),
        }
    }

    /// Records a latency; `shard` spreads contention (any number will do,
    /// e.g. the connection's index).
    pub fn record(&self, metric: Metric, micros: u64, shard: usize) {
        let mut histogram = lock(&self.histograms[metric.index()][shard % SHARDS]);
        histogram.saturating_record(micros.clamp(1, MAX_US));
    }

    pub fn error(&self, failure: &Failure) {
        let mut errors = lock(&self.errors);
        let stat = errors.entry(failure.kind.clone()).or_default();
        stat.count += 1;
        if stat.samples.len() < SAMPLES_PER_KIND {
            stat.samples.push(failure.detail.clone());
        }
    }

    pub fn error_count(&self) -> u64 {
        lock(&self.errors).values().map(|e| e.count).sum()
    }

    pub fn errors(&self) -> BTreeMap<String, ErrorStat> {
        lock(&self.errors).clone()
    }

    /// Starts the timeline's second 0 now.
    pub fn start_timeline(&self) {
        *lock(&self.timeline_start) = Some(Instant::now());
    }

    fn second_now(&self) -> Option<usize> {
        let start = (*lock(&self.timeline_start))?;
        let second = usize::try_from(start.elapsed().as_secs()).unwrap_or(usize::MAX);
        Some(second.min(self.timeline_sent.len() - 1))
    }

    pub fn mark_sent(&self) {
        Counters::add(&self.counters.sent, 1);
        if let Some(s) = self.second_now() {
            Counters::add(&self.timeline_sent[s], 1);
        }
    }

    pub fn mark_delivered(&self, latency_us: u64, shard: usize) {
        Counters::add(&self.counters.delivered, 1);
        self.record(Metric::Delivery, latency_us, shard);
        if let Some(s) = self.second_now() {
            Counters::add(&self.timeline_delivered[s], 1);
        }
    }

    /// Seconds `0..seconds` of the timeline.
    pub fn timeline(&self, seconds: usize) -> Vec<Second> {
        (0..seconds.min(self.timeline_sent.len()))
            .map(|t| Second {
                t,
                sent: Counters::get(&self.timeline_sent[t]),
                delivered: Counters::get(&self.timeline_delivered[t]),
            })
            .collect()
    }

    /// The merged histogram of a metric.
    pub fn histogram(&self, metric: Metric) -> Histogram<u64> {
        let shards = &self.histograms[metric.index()];
        let mut merged = lock(&shards[0]).clone();
        for shard in &shards[1..] {
            merged
                .add(&*lock(shard))
                .expect("histograms with the same bounds always merge");
        }
        merged
    }

    /// Percentiles of every metric that recorded anything.
    pub fn percentiles(&self) -> BTreeMap<String, Percentiles> {
        Metric::ALL
            .iter()
            .filter_map(|&metric| {
                let h = self.histogram(metric);
                (!h.is_empty()).then(|| (metric.name().to_owned(), percentiles(&h)))
            })
            .collect()
    }
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: h.len(),
        mean: h.mean(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Recording is a single step; a panicking task cannot leave a half-written value.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_into_one_histogram() {
        let recorder = Recorder::new(10);
        for i in 0..1000u64 {
            recorder.record(Metric::Delivery, i + 1, usize::try_from(i).expect("small"));
        }
        let p = &recorder.percentiles()["delivery"];
        assert_eq!(p.count, 1000);
        assert!((495..=505).contains(&p.p50), "p50 was {}", p.p50);
        assert_eq!(p.max, 1000);
    }

    #[test]
    fn errors_are_counted_by_kind_with_a_few_samples() {
        let recorder = Recorder::new(1);
        for i in 0..5 {
            recorder.error(&Failure::new("connect", format!("refused {i}")));
        }
        recorder.error(&Failure::new("RATE_LIMITED", "slow down"));
        let errors = recorder.errors();
        assert_eq!(errors["connect"].count, 5);
        assert_eq!(errors["connect"].samples.len(), SAMPLES_PER_KIND);
        assert_eq!(recorder.error_count(), 6);
    }
}
