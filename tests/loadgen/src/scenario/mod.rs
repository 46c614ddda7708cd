//! The scenarios, one module each, and what they share: the run's context,
//! opening many connections, and the fleet of connection tasks that send and
//! receive while a scenario measures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::dial::Dialer;
use crate::metrics::{Counters, Failure, Metric, Recorder};
use crate::procfs;
use crate::progress::Phase;
use crate::protocol::{Conn, Protocol};
use crate::report::{Cpu, Memory};

pub mod accounts;
pub mod capacity;
pub mod direct;
pub mod fanout;
pub mod fleet;
pub mod idle;
pub mod pacer;
pub mod storm;
pub mod traffic;

/// The numbers a scenario runs with.
#[derive(Debug, Clone)]
pub struct Options {
    pub connections: usize,
    /// Messages per second in total (direct, fanout).
    pub rate: f64,
    /// New connections or sign-ups per second (idle, storm, accounts); 0 for
    /// as fast as the concurrency allows.
    pub open_rate: f64,
    pub duration: Duration,
    pub group_size: usize,
    pub users: usize,
    pub concurrency: usize,
    /// How long to wait for late deliveries after the last send.
    pub drain: Duration,
    /// direct and fanout: step the rate up to find the capacity, instead of
    /// sending at `rate` for `duration`.
    pub capacity: Option<capacity::Plan>,
}

/// Everything a scenario needs besides its protocol.
pub struct Ctx {
    pub options: Options,
    pub dialer: Dialer,
    pub recorder: Arc<Recorder>,
    /// The servers under test, whose memory and CPU are measured.
    pub servers: Vec<u32>,
    /// Other processes whose CPU time is reported (Redis, services).
    pub watched: Vec<(String, u32)>,
    /// No phase starts after this; the whole run is bounded by it.
    pub deadline: Instant,
}

/// What a scenario found besides what the recorder holds.
#[derive(Debug, Default)]
pub struct Findings {
    pub memory: Option<Memory>,
    pub cpu: Option<Cpu>,
    /// Seconds of the timeline worth reporting.
    pub timeline_secs: usize,
    /// How long the measured phase took, for rates.
    pub window_secs: f64,
    /// How long opening the connections took, for the connection rate.
    pub open_secs: Option<f64>,
    pub notes: Vec<String>,
    pub capacity: Option<crate::report::Capacity>,
}

impl Ctx {
    /// Time left before the deadline, at most `want`.
    pub fn bounded(&self, want: Duration) -> Duration {
        want.min(self.deadline.saturating_duration_since(Instant::now()))
    }

    pub fn past_deadline(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// CPU seconds of the watched processes now.
    pub fn watched_cpu(&self) -> BTreeMap<String, f64> {
        self.watched
            .iter()
            .map(|(name, pid)| (name.clone(), procfs::cpu_of(*pid)))
            .collect()
    }
}

/// Opens connections `0..count`, each logged in as `user_of(index)`, with at
/// most `concurrency` handshakes in flight and, if `open_rate` > 0, at most that many
/// new connections a second. Failures are recorded and skipped. Returns the
/// open connections and how long opening took.
pub async fn open_all<P: Protocol>(
    protocol: &P,
    ctx: &Ctx,
    count: usize,
    user_of: impl Fn(usize) -> usize,
) -> (Vec<Conn>, f64) {
    let recorder = ctx.recorder.clone();
    let progress_recorder = recorder.clone();
    let _phase = Phase::start(
        &format!("opening {count} connections"),
        count as u64,
        move || {
            (
                Counters::get(&progress_recorder.counters.opened),
                format!("{} errors", progress_recorder.error_count()),
            )
        },
    );
    let start = Instant::now();
    let rate = ctx.options.open_rate;
    let results = futures_util::stream::iter(0..count)
        .map(|index| {
            let user = user_of(index);
            let recorder = &recorder;
            async move {
                if rate > 0.0 {
                    tokio::time::sleep_until(
                        (start + Duration::from_secs_f64(index as f64 / rate)).into(),
                    )
                    .await;
                }
                if ctx.past_deadline() {
                    return Err(Failure::new(
                        "deadline",
                        "the run's time ran out before this connection",
                    ));
                }
                let began = Instant::now();
                let mut ws = ctx.dialer.open(index).await?;
                let connected = Instant::now();
                recorder.record(Metric::Connect, micros(connected - began), index);
                protocol.login(&mut ws, user).await?;
                recorder.record(Metric::Login, micros(connected.elapsed()), index);
                recorder.record(Metric::Open, micros(began.elapsed()), index);
                Counters::add(&recorder.counters.opened, 1);
                Ok(Conn { index, user, ws })
            }
        })
        .buffer_unordered(ctx.options.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut conns = Vec::with_capacity(count);
    for result in results {
        match result {
            Ok(conn) => conns.push(conn),
            Err(failure) => recorder.error(&failure),
        }
    }
    conns.sort_by_key(|c| c.index);
    let took = start.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: {} of {count} connections open in {took:.1} s",
        conns.len()
    );
    (conns, took)
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Memory of the servers before and after `connections` were opened.
pub fn memory(
    servers: &[u32],
    before: u64,
    after: u64,
    peak: u64,
    connections: usize,
) -> Option<Memory> {
    if servers.is_empty() {
        return None;
    }
    let delta = after.saturating_sub(before);
    Some(Memory {
        server_pids: servers.to_vec(),
        rss_before_bytes: before,
        rss_after_bytes: after,
        rss_peak_bytes: peak.max(after),
        per_connection_bytes: (connections > 0).then(|| delta as f64 / connections as f64),
    })
}
