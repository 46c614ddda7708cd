//! Capacity: the `direct` or `fanout` traffic (`--capacity`) at a rate that
//! rises in steps until a step fails; the highest rate of a step that held is
//! the capacity. Then one step at `--overload-factor` (3) times that rate and,
//! straight after it, a recovery step at a lower rate, to show what the
//! server does past its capacity and how soon it is back.
//!
//! A step holds when, after it and a drain of at most `--drain`:
//! - the p99 delivery latency of its messages is within `--p99-limit-ms`,
//! - every message it wrote was answered (where the protocol answers) and
//!   every receipt due arrived,
//! - no message was refused, `BUSY` included: a server that refuses part of a
//!   rate does not hold it, however fast it refuses;
//! - the run recorded no error while it lasted (`TIMEOUT`, a disconnection,
//!   the load generator falling behind its schedule, ...).
//!
//! Each ramp step starts from a settled server: the next one begins only when
//! the previous step's messages are all answered and delivered (or its drain
//! ran out). The overload and recovery steps are sent back to back, since the
//! recovery is measured from the moment the load drops; the recovery step is
//! measured in one-second slices, by send time.
//!
//! Latency, as in the other traffic scenarios, is from the time a message was
//! due (open loop) to its receipt; refusal latency is from its write to the
//! `BUSY` reply.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock;
use crate::ledger::{Ledger, Tally};
use crate::metrics::{Counters, Failure};
use crate::procfs;
use crate::protocol::{Protocol, Stamp};
use crate::report::{Capacity, Cpu, Step};

use super::fleet::{Command, Fleet};
use super::pacer::Pacer;
use super::traffic::{self, Send};
use super::{Ctx, Findings};

/// How often settling is checked.
const SETTLE_POLL: Duration = Duration::from_millis(50);
/// After the step that failed, the wait for its stragglers before the
/// overload step: past the gateway's action timeout (10 s), so its queues are
/// empty again and the overload step starts from an idle server.
const AFTER_FAILURE: Duration = Duration::from_secs(15);
/// After the recovery step, the longest wait for the answers and receipts
/// of the overload and recovery messages. The gateway answers `TIMEOUT`
/// after 10 s and still passes a late acknowledgement on for 60 s more, so
/// "acknowledged and lost" is only known once every message has settled;
/// the wait ends as soon as they have.
const OVERLOAD_DRAIN: Duration = Duration::from_secs(75);
/// The recovery step is measured in slices of this length.
const SLICE: Duration = Duration::from_secs(1);

/// The steps of a capacity run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The first step's rate, messages/s.
    pub start: f64,
    /// Each step's rate is the previous one times this, plus `increment`.
    pub factor: f64,
    pub increment: f64,
    /// No step goes above this rate.
    pub max: f64,
    pub step: Duration,
    pub p99_limit: Duration,
    /// The overload step's rate, as a multiple of the rate held.
    pub overload_factor: f64,
    /// The recovery step's rate, as a fraction of the rate held.
    pub recovery_factor: f64,
    pub recovery: Duration,
}

impl Plan {
    /// The ramp's rates, in order.
    pub fn rates(&self) -> Vec<f64> {
        let mut rates = Vec::new();
        let mut rate = self.start;
        while rate <= self.max * (1.0 + 1e-9) && rates.len() < 1000 {
            rates.push(rate);
            let next = rate * self.factor + self.increment;
            if next <= rate {
                break;
            }
            rate = next;
        }
        rates
    }

    /// An upper bound on the messages the whole run sends: the ledger's size.
    pub fn messages(&self) -> u64 {
        let secs = self.step.as_secs_f64();
        let ramp: f64 = self.rates().iter().map(|r| r * secs).sum();
        let top = self.rates().last().copied().unwrap_or(0.0);
        let overload = top * self.overload_factor * secs;
        let recovery = top * self.recovery_factor * self.recovery.as_secs_f64();
        // Each step may round up by one message.
        (ramp + overload + recovery).ceil() as u64 + 2 * self.rates().len() as u64 + 64
    }
}

/// Writes messages of the schedule at a rate, ids continuing across steps.
struct Sender<'a, P> {
    protocol: &'a P,
    fleet: &'a Fleet,
    schedule: &'a [Send],
    ledger: &'a Ledger,
    /// The next message's id.
    next: u64,
    /// Messages handed to their connections so far.
    queued: u64,
}

impl<P: Protocol> Sender<'_, P> {
    /// Sends `rate` messages/s for `length`, open loop: each message is due at
    /// its own time and carries it, so falling behind shows as latency.
    async fn send(&mut self, rate: f64, length: Duration, ctx: &Ctx) {
        let total = (rate * length.as_secs_f64()).round().max(1.0) as u64;
        let first = self.next;
        let start_us = clock::now_us();
        let mut pacer = Pacer::start(rate, total);
        pacer.run(
            || ctx.past_deadline(),
            |k, due_us| {
                let id = first + k;
                let send = self.schedule[(id % self.schedule.len() as u64) as usize];
                let stamp = Stamp {
                    id,
                    from: send.from as u32,
                    at_us: start_us + due_us,
                };
                self.ledger.scheduled(id, send.receivers, stamp.at_us);
                let command = Command {
                    frame: self.protocol.message(send.dest, &stamp),
                    receivers: send.receivers,
                    probe: false,
                    id,
                };
                if self.fleet.send(send.from, command) {
                    self.queued += 1;
                }
            },
        );
        self.next = first + pacer.handed_out();
    }
}

/// CPU seconds of the servers, the watched processes and the load generator.
struct CpuMark {
    servers: f64,
    watched: BTreeMap<String, f64>,
    loadgen: f64,
}

impl CpuMark {
    fn now(ctx: &Ctx) -> CpuMark {
        CpuMark {
            servers: procfs::sample(&ctx.servers).cpu_seconds,
            watched: ctx.watched_cpu(),
            loadgen: procfs::cpu_of(std::process::id()),
        }
    }

    fn since(&self, ctx: &Ctx) -> CpuMark {
        let now = CpuMark::now(ctx);
        CpuMark {
            servers: now.servers - self.servers,
            watched: now
                .watched
                .into_iter()
                .map(|(name, after)| {
                    let before = self.watched.get(&name).copied().unwrap_or(0.0);
                    (name, after - before)
                })
                .collect(),
            loadgen: now.loadgen - self.loadgen,
        }
    }
}

/// Waits until messages `first..end` are all written, answered and
/// delivered, or `limit` has passed.
async fn settle(
    ledger: &Ledger,
    fleet_done: impl Fn() -> bool,
    first: u64,
    end: u64,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if fleet_done() && ledger.settled(first, end) {
            return;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

fn step(
    rate: f64,
    length: Duration,
    messages: u64,
    tally: Tally,
    errors: u64,
    cpu: CpuMark,
) -> Step {
    Step {
        rate,
        secs: length.as_secs_f64(),
        scheduled: messages,
        tally,
        errors,
        server_cpu_secs: cpu.servers,
        watched_cpu_secs: cpu.watched,
        loadgen_cpu_secs: cpu.loadgen,
        held: false,
        late: None,
    }
}

/// Why a step did not hold, if it did not.
fn judge(step: &Step, limit: Duration) -> Result<(), String> {
    let limit_us = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX);
    let mut why = Vec::new();
    if step.tally.sent < step.scheduled {
        why.push(format!(
            "{} of {} messages written",
            step.tally.sent, step.scheduled
        ));
    }
    if step.tally.busy > 0 {
        why.push(format!("{} BUSY", step.tally.busy));
    }
    if step.tally.refused > 0 {
        why.push(format!("{} refused", step.tally.refused));
    }
    if step.tally.unanswered > 0 {
        why.push(format!("{} unanswered", step.tally.unanswered));
    }
    if step.tally.delivered < step.tally.expected {
        why.push(format!(
            "{} of {} receipts missing",
            step.tally.expected - step.tally.delivered,
            step.tally.expected
        ));
    }
    if step.errors > 0 {
        why.push(format!("{} errors", step.errors));
    }
    match &step.tally.delivery {
        Some(p) if p.p99 > limit_us => why.push(format!(
            "p99 {:.1} ms over {:.0} ms",
            p.p99 as f64 / 1000.0,
            limit.as_secs_f64() * 1000.0
        )),
        Some(_) => {}
        None => why.push("nothing delivered".to_owned()),
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join(", "))
    }
}

/// Runs the plan over `schedule` (cyclically), after `probes` have arrived.
pub async fn run<P: Protocol>(
    protocol: Arc<P>,
    conns: Vec<crate::protocol::Conn>,
    schedule: &[Send],
    probes: &[Send],
    ctx: &Ctx,
    plan: &Plan,
) -> Findings {
    let mut findings = Findings::default();
    if schedule.is_empty() {
        ctx.recorder.error(&Failure::new(
            "nothing_to_send",
            "no connection could send (none opened?)",
        ));
        return findings;
    }
    let ledger = Arc::new(Ledger::new(plan.messages()));
    if ctx.recorder.ledger.set(ledger.clone()).is_err() {
        ctx.recorder
            .error(&Failure::new("ledger", "the run's ledger was already set"));
        return findings;
    }
    let counters = &ctx.recorder.counters;
    let fleet = Fleet::spawn(protocol.clone(), conns, ctx.recorder.clone());
    traffic::probe(&*protocol, &fleet, probes, ctx, &mut findings).await;

    let receivers_per_message =
        schedule.iter().map(|s| f64::from(s.receivers)).sum::<f64>() / schedule.len() as f64;
    let mut sender = Sender {
        protocol: &*protocol,
        fleet: &fleet,
        schedule,
        ledger: &ledger,
        next: 0,
        queued: 0,
    };
    let whole = CpuMark::now(ctx);
    ctx.recorder.start_timeline();
    let start = Instant::now();

    let mut steps = Vec::new();
    let mut held = None;
    let mut stopped_because = None;
    for rate in plan.rates() {
        if ctx.past_deadline() {
            stopped_because = Some("the run's time ran out".to_owned());
            break;
        }
        let errors = ctx.recorder.error_count();
        let cpu = CpuMark::now(ctx);
        let first = sender.next;
        ledger.begin_segment(first);
        sender.send(rate, plan.step, ctx).await;
        let (end, queued) = (sender.next, sender.queued);
        let fleet_done = || Counters::get(&counters.processed) >= queued;
        settle(
            &ledger,
            fleet_done,
            first,
            end,
            ctx.bounded(ctx.options.drain),
        )
        .await;
        let mut s = step(
            rate,
            plan.step,
            end - first,
            ledger.tally(first, end),
            ctx.recorder.error_count() - errors,
            cpu.since(ctx),
        );
        let verdict = judge(&s, plan.p99_limit);
        s.held = verdict.is_ok();
        if !s.held {
            let limit_us = u64::try_from(plan.p99_limit.as_micros()).unwrap_or(u64::MAX);
            s.late = ledger.late(first, end, limit_us);
            if let Some(late) = &s.late {
                eprintln!("loadgen: late messages: {late:?}");
            }
        }
        eprintln!(
            "loadgen: {rate:.1} msg/s: p99 {} ms, BUSY {}, errors {}: {}",
            s.tally
                .delivery
                .as_ref()
                .map_or("-".to_owned(), |p| format!("{:.1}", p.p99 as f64 / 1000.0)),
            s.tally.busy,
            s.errors,
            verdict.as_ref().map_or_else(|why| why.as_str(), |_| "held")
        );
        steps.push(s);
        match verdict {
            Ok(()) => held = Some(rate),
            Err(why) => {
                stopped_because = Some(format!("{rate:.1} msg/s: {why}"));
                let fleet_done = || Counters::get(&counters.processed) >= queued;
                settle(&ledger, fleet_done, first, end, ctx.bounded(AFTER_FAILURE)).await;
                break;
            }
        }
    }

    let mut overload = None;
    let mut recovery = Vec::new();
    let mut recovered_after_secs = None;
    if let Some(held_rate) = held.filter(|_| !ctx.past_deadline()) {
        let errors = ctx.recorder.error_count();
        let cpu = CpuMark::now(ctx);
        let rate = held_rate * plan.overload_factor;
        let first = sender.next;
        ledger.begin_segment(first);
        sender.send(rate, plan.step, ctx).await;
        let overload_end = sender.next;
        let overload_cpu = cpu.since(ctx);

        let recovery_rate = held_rate * plan.recovery_factor;
        let slices = (plan.recovery.as_secs_f64() / SLICE.as_secs_f64()).ceil() as u64;
        let mut bounds = Vec::new();
        for _ in 0..slices {
            let slice_first = sender.next;
            ledger.begin_segment(slice_first);
            sender.send(recovery_rate, SLICE, ctx).await;
            bounds.push((slice_first, sender.next));
        }
        let queued = sender.queued;
        let fleet_done = || Counters::get(&counters.processed) >= queued;
        settle(
            &ledger,
            fleet_done,
            first,
            sender.next,
            ctx.bounded(OVERLOAD_DRAIN.max(ctx.options.drain)),
        )
        .await;
        overload = Some(step(
            rate,
            plan.step,
            overload_end - first,
            ledger.tally(first, overload_end),
            ctx.recorder.error_count() - errors,
            overload_cpu,
        ));
        let limit_us = u64::try_from(plan.p99_limit.as_micros()).unwrap_or(u64::MAX);
        for (slice_first, slice_end) in bounds {
            let mut s = step(
                recovery_rate,
                SLICE,
                slice_end - slice_first,
                ledger.tally(slice_first, slice_end),
                0,
                CpuMark {
                    servers: 0.0,
                    watched: BTreeMap::new(),
                    loadgen: 0.0,
                },
            );
            // Back to normal: within the latency limit, every receipt there.
            s.held = s.tally.delivery.as_ref().is_some_and(|p| p.p99 <= limit_us)
                && s.tally.delivered >= s.tally.expected
                && s.tally.unanswered == 0
                && s.tally.busy == 0;
            recovery.push(s);
        }
        // The first slice from which every later one is back to normal.
        let normal_from = recovery
            .iter()
            .rposition(|s| !s.held)
            .map_or(0, |last_bad| last_bad + 1);
        if normal_from < recovery.len() {
            recovered_after_secs = Some(normal_from as f64 * SLICE.as_secs_f64());
        }
    }

    let window = start.elapsed();
    let cpu = whole.since(ctx);
    fleet.stop().await;
    // Refused messages are due to no one.
    counters.expected.store(
        ledger.expected_total(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let delivered = Counters::get(&counters.delivered);
    findings.window_secs = window.as_secs_f64();
    findings.timeline_secs = window.as_secs() as usize + 1;
    findings.cpu = Some(Cpu {
        server_pids: ctx.servers.clone(),
        server_seconds: cpu.servers,
        window_secs: window.as_secs_f64(),
        sending_secs: window.as_secs_f64(),
        delivered_per_cpu_second: (cpu.servers > 0.0).then(|| delivered as f64 / cpu.servers),
        loadgen_seconds: cpu.loadgen,
        watched_seconds: cpu.watched,
    });
    if held.is_none() {
        findings.notes.push(format!(
            "no step held, not even the first ({:.1} msg/s); no overload step was run",
            plan.start
        ));
    }
    findings.capacity = Some(Capacity {
        p99_limit_ms: plan.p99_limit.as_secs_f64() * 1000.0,
        step_secs: plan.step.as_secs_f64(),
        receivers_per_message,
        held_rate: held,
        held_deliveries_per_sec: held.map(|r| r * receivers_per_message),
        stopped_because,
        overload_factor: plan.overload_factor,
        steps,
        overload,
        recovery,
        recovered_after_secs,
    });
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(factor: f64, increment: f64) -> Plan {
        Plan {
            start: 10.0,
            factor,
            increment,
            max: 100.0,
            step: Duration::from_secs(2),
            p99_limit: Duration::from_millis(100),
            overload_factor: 3.0,
            recovery_factor: 0.5,
            recovery: Duration::from_secs(4),
        }
    }

    #[test]
    fn rates_rise_by_factor_or_increment_up_to_the_maximum() {
        assert_eq!(plan(2.0, 0.0).rates(), [10.0, 20.0, 40.0, 80.0]);
        assert_eq!(plan(1.0, 30.0).rates(), [10.0, 40.0, 70.0, 100.0]);
        // A plan that would not rise stops after its first step.
        assert_eq!(plan(1.0, 0.0).rates(), [10.0]);
    }

    #[test]
    fn the_ledger_has_room_for_every_message_of_the_plan() {
        let p = plan(2.0, 0.0);
        // Ramp 150 msg/s × 2 s, overload 240 × 2, recovery 40 × 4.
        assert!(p.messages() >= 300 + 480 + 160);
    }
}
