//! Messages at a fixed total rate, open loop: message `j` is due at
//! `start + j / rate` and carries that time as its stamp, so a server (or a
//! load generator) that falls behind shows up as latency instead of quietly
//! lowering the rate.
//!
//! Before measuring, probes check the wiring: every room and pair gets
//! messages until each member has received one, so subscriptions still
//! settling on the server are not counted as slow deliveries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock;
use crate::metrics::{Counters, Failure};
use crate::procfs;
use crate::progress::Phase;
use crate::protocol::{Conn, Dest, PROBE_BIT, Protocol, Stamp};
use crate::report::Cpu;

use super::fleet::{Command, Fleet};
use super::pacer::Pacer;
use super::{Ctx, Findings};

/// How long probes may take to come through, in all.
const PROBE_WAIT: Duration = Duration::from_secs(60);
/// Rounds of probes at most, and the wait for the first (later ones wait longer).
const PROBE_ROUNDS: u64 = 12;
const PROBE_ROUND_WAIT: Duration = Duration::from_secs(2);

/// One message of the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Send {
    /// The sending connection's index.
    pub from: usize,
    pub dest: Dest,
    /// How many other connections should receive it.
    pub receivers: u32,
}

/// Runs `schedule` (cyclically) at the scenario's rate for its duration,
/// after `probes` have all arrived.
pub async fn run<P: Protocol>(
    protocol: Arc<P>,
    conns: Vec<Conn>,
    schedule: &[Send],
    probes: &[Send],
    ctx: &Ctx,
) -> Findings {
    let mut findings = Findings::default();
    if schedule.is_empty() {
        ctx.recorder.error(&Failure::new(
            "nothing_to_send",
            "no connection could send (none opened?)",
        ));
        return findings;
    }
    let counters = &ctx.recorder.counters;
    let fleet = Fleet::spawn(protocol.clone(), conns, ctx.recorder.clone());

    probe(&*protocol, &fleet, probes, ctx, &mut findings).await;

    let rate = ctx.options.rate.max(0.001);
    let total = (rate * ctx.options.duration.as_secs_f64()).round() as u64;
    let recorder = ctx.recorder.clone();
    let phase = Phase::start(
        &format!("sending {total} messages at {rate} msg/s"),
        total,
        move || {
            let c = &recorder.counters;
            (
                Counters::get(&c.sent),
                format!(
                    "delivered {}/{} errors {}",
                    Counters::get(&c.delivered),
                    Counters::get(&c.expected),
                    recorder.error_count()
                ),
            )
        },
    );

    let servers_before = procfs::sample(&ctx.servers);
    let watched_before = ctx.watched_cpu();
    let loadgen_before = procfs::cpu_of(std::process::id());
    ctx.recorder.start_timeline();
    let start_us = clock::now_us();
    let mut pacer = Pacer::start(rate, total);
    let start = pacer.started();
    let mut queued = 0u64;
    pacer.run(
        || ctx.past_deadline(),
        |next, due_us| {
            let send = schedule[(next % schedule.len() as u64) as usize];
            let stamp = Stamp {
                id: next,
                from: send.from as u32,
                at_us: start_us + due_us,
            };
            let command = Command {
                frame: protocol.message(send.dest, &stamp),
                receivers: send.receivers,
                probe: false,
                id: next,
            };
            if fleet.send(send.from, command) {
                queued += 1;
            }
        },
    );
    let sending = start.elapsed();

    // Late deliveries: wait until everything sent has arrived, or the drain time.
    let drain_deadline = Instant::now() + ctx.bounded(ctx.options.drain);
    loop {
        let done = Counters::get(&counters.processed) >= queued
            && Counters::get(&counters.delivered) >= Counters::get(&counters.expected);
        if done || Instant::now() >= drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let window = start.elapsed();
    let servers_after = procfs::sample(&ctx.servers);
    let watched_after = ctx.watched_cpu();
    let loadgen_after = procfs::cpu_of(std::process::id());
    drop(phase);
    fleet.stop().await;

    let expected = Counters::get(&counters.expected);
    let delivered = Counters::get(&counters.delivered);
    if delivered < expected {
        let missing = expected - delivered;
        ctx.recorder.error(&Failure::new(
            "undelivered",
            format!(
                "{missing} of {expected} deliveries had not arrived {:?} after the last send",
                ctx.options.drain
            ),
        ));
    }
    let server_cpu = servers_after.cpu_seconds - servers_before.cpu_seconds;
    findings.window_secs = window.as_secs_f64();
    findings.timeline_secs = window.as_secs() as usize + 1;
    findings.cpu = Some(Cpu {
        server_pids: ctx.servers.clone(),
        server_seconds: server_cpu,
        window_secs: window.as_secs_f64(),
        sending_secs: sending.as_secs_f64(),
        delivered_per_cpu_second: (server_cpu > 0.0).then(|| delivered as f64 / server_cpu),
        loadgen_seconds: loadgen_after - loadgen_before,
        watched_seconds: watched_after
            .into_iter()
            .map(|(name, after)| {
                let before = watched_before.get(&name).copied().unwrap_or(0.0);
                (name, after - before)
            })
            .collect(),
    });
    findings
}

/// Sends `probes` until each has reached every member it should (bounded);
/// not measured, only awaited. A shortfall is recorded as an error.
pub async fn probe<P: Protocol>(
    protocol: &P,
    fleet: &Fleet,
    probes: &[Send],
    ctx: &Ctx,
    findings: &mut Findings,
) {
    let counters = &ctx.recorder.counters;
    // They go out at the scenario's rate,
    // not in one burst: a burst of hundreds of stored messages is a load the
    // run does not ask the server to take. A round whose probes do not all
    // arrive (a subscription still settling) is sent again, a bounded number
    // of times; only receipts of the current round count.
    let expected_probes: u64 = probes.iter().map(|p| u64::from(p.receivers)).sum();
    let probe_gap = Duration::from_secs_f64(1.0 / ctx.options.rate.max(1.0));
    let probe_deadline =
        Instant::now() + ctx.bounded(PROBE_WAIT + probe_gap * probes.len() as u32 * 2);
    let mut round = 0u64;
    let mut wired = expected_probes == 0;
    while !wired && round < PROBE_ROUNDS && Instant::now() < probe_deadline {
        counters
            .probe_round
            .store(round, std::sync::atomic::Ordering::Relaxed);
        counters
            .probes
            .store(0, std::sync::atomic::Ordering::Relaxed);
        for (i, probe) in probes.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(probe_gap).await;
            }
            let stamp = Stamp {
                id: PROBE_BIT | (round << 32) | i as u64,
                from: probe.from as u32,
                at_us: clock::now_us(),
            };
            fleet.send(
                probe.from,
                Command {
                    frame: protocol.message(probe.dest, &stamp),
                    receivers: probe.receivers,
                    probe: true,
                    id: stamp.id,
                },
            );
        }
        let round_deadline =
            (Instant::now() + PROBE_ROUND_WAIT * (round as u32 + 1)).min(probe_deadline);
        while Counters::get(&counters.probes) < expected_probes && Instant::now() < round_deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wired = Counters::get(&counters.probes) >= expected_probes;
        round += 1;
    }
    if !wired {
        let missing = expected_probes.saturating_sub(Counters::get(&counters.probes));
        ctx.recorder.error(&Failure::new(
            "unwired",
            format!(
                "{missing} of {expected_probes} probe receipts still missing after {round} rounds"
            ),
        ));
        findings.notes.push(format!(
            "{missing} probe receipts were missing before measuring"
        ));
    }
}
