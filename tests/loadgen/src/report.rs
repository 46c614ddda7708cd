//! The report of a run: `report.json` for scripts, `report.md` for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::metrics::{ErrorStat, Percentiles, Second};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub protocol: String,
    pub targets: Vec<String>,
    pub started_unix_secs: u64,
    pub params: Params,
    pub counts: Counts,
    pub throughput: Throughput,
    /// Latency percentiles in microseconds, by what was measured.
    pub latency_us: BTreeMap<String, Percentiles>,
    pub errors: BTreeMap<String, ErrorStat>,
    pub error_total: u64,
    pub memory: Option<Memory>,
    pub cpu: Option<Cpu>,
    pub timeline: Vec<Second>,
    pub notes: Vec<String>,
    /// The steps of a capacity run (`--capacity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
}

/// A capacity run: steps of rising rate until one failed, then one step past
/// the rate held and a recovery step after it.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub p99_limit_ms: f64,
    pub step_secs: f64,
    /// Receipts per message: 1 one-to-one, the group's other members in groups.
    pub receivers_per_message: f64,
    /// The highest rate, in messages/s, of a step that held.
    pub held_rate: Option<f64>,
    pub held_deliveries_per_sec: Option<f64>,
    /// The step that failed and why; none if every step up to the maximum held.
    pub stopped_because: Option<String>,
    pub overload_factor: f64,
    pub steps: Vec<Step>,
    /// The step at `overload_factor` times the rate held.
    pub overload: Option<Step>,
    /// The recovery step straight after it, in one-second slices by send time.
    pub recovery: Vec<Step>,
    /// From the end of the overload step to the first slice from which every
    /// slice is within the latency limit with every receipt there; none if
    /// the last slice was not.
    pub recovered_after_secs: Option<f64>,
}

/// One step (or slice) of a capacity run.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Messages/s offered.
    pub rate: f64,
    pub secs: f64,
    /// Messages due in the step.
    pub scheduled: u64,
    /// What became of the step's messages.
    #[serde(flatten)]
    pub tally: crate::ledger::Tally,
    /// Errors the run recorded while the step lasted (BUSY is not one).
    pub errors: u64,
    pub server_cpu_secs: f64,
    pub watched_cpu_secs: BTreeMap<String, f64>,
    pub loadgen_cpu_secs: f64,
    /// Ramp steps: whether the step held; recovery slices: whether latency was
    /// back to normal.
    pub held: bool,
    /// A ramp step that did not hold: its messages later than the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late: Option<crate::ledger::Late>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub connections: usize,
    pub users: usize,
    pub rate: f64,
    pub duration_secs: f64,
    pub group_size: usize,
    pub concurrency: usize,
    pub source_ips: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub connections_opened: u64,
    pub sent: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    /// Own messages a sender received back (not counted as deliveries).
    pub echoes: u64,
    pub accounts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Seconds the rates below are taken over.
    pub window_secs: f64,
    pub sent_per_sec: f64,
    pub delivered_per_sec: f64,
    pub connections_per_sec: f64,
    pub accounts_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub server_pids: Vec<u32>,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub rss_peak_bytes: u64,
    /// (after − before) / connections opened.
    pub per_connection_bytes: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Cpu {
    pub server_pids: Vec<u32>,
    /// User + system CPU of the servers during the window.
    pub server_seconds: f64,
    pub window_secs: f64,
    pub sending_secs: f64,
    pub delivered_per_cpu_second: Option<f64>,
    /// The load generator's own CPU in the window: it shares the machine.
    pub loadgen_seconds: f64,
    pub watched_seconds: BTreeMap<String, f64>,
}

impl Report {
    /// Writes `report.json` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join("report.json");
        std::fs::write(&json, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", json.display()))?;
        let md = dir.join("report.md");
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("writing {}", md.display()))?;
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let p = &self.params;
        let _ = writeln!(out, "# loadgen {} — {}\n", self.scenario, self.protocol);
        let _ = writeln!(out, "Targets: {}  ", self.targets.join(", "));
        let _ = writeln!(
            out,
            "Connections {}, users {}, rate {}, duration {} s, group size {}, concurrency {}, source addresses {}\n",
            p.connections,
            p.users,
            p.rate,
            p.duration_secs,
            p.group_size,
            p.concurrency,
            p.source_ips
        );
        let c = &self.counts;
        let t = &self.throughput;
        let _ = writeln!(out, "## Throughput\n");
        let _ = writeln!(out, "| what | value |\n|---|---|");
        let _ = writeln!(out, "| connections opened | {} |", c.connections_opened);
        if c.sent > 0 {
            let _ = writeln!(
                out,
                "| messages sent | {} ({:.1}/s) |",
                c.sent, t.sent_per_sec
            );
            let _ = writeln!(
                out,
                "| deliveries | {} of {} expected ({:.1}/s) |",
                c.delivered, c.expected_deliveries, t.delivered_per_sec
            );
        }
        if c.accounts > 0 {
            let _ = writeln!(
                out,
                "| accounts signed up | {} ({:.2}/s) |",
                c.accounts, t.accounts_per_sec
            );
        }
        if t.connections_per_sec > 0.0 {
            let _ = writeln!(
                out,
                "| connections per second | {:.1} |",
                t.connections_per_sec
            );
        }
        let _ = writeln!(out, "| window | {:.2} s |", t.window_secs);
        if !self.latency_us.is_empty() {
            let _ = writeln!(out, "\n## Latency (ms)\n");
            let _ = writeln!(
                out,
                "| what | count | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|"
            );
            for (name, l) in &self.latency_us {
                let ms = |us: u64| us as f64 / 1000.0;
                let _ = writeln!(
                    out,
                    "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    l.count,
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.p999),
                    ms(l.max)
                );
            }
        }
        if let Some(m) = &self.memory {
            let _ = writeln!(out, "\n## Server memory (pids {:?})\n", m.server_pids);
            let _ = writeln!(
                out,
                "RSS before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB; per connection: {}",
                mib(m.rss_before_bytes),
                mib(m.rss_after_bytes),
                mib(m.rss_peak_bytes),
                m.per_connection_bytes.map_or("-".to_owned(), |b| format!(
                    "{:.0} bytes ({:.1} KiB)",
                    b,
                    b / 1024.0
                ))
            );
        }
        if let Some(cpu) = &self.cpu {
            let _ = writeln!(out, "\n## CPU\n");
            let _ = writeln!(
                out,
                "Servers {:?}: {:.2} CPU-seconds over {:.2} s",
                cpu.server_pids, cpu.server_seconds, cpu.window_secs
            );
            if let Some(per) = cpu.delivered_per_cpu_second {
                let _ = writeln!(
                    out,
                    "  \nDelivered messages per server CPU-second: {per:.0}"
                );
            }
            let _ = writeln!(
                out,
                "  \nLoad generator: {:.2} CPU-seconds",
                cpu.loadgen_seconds
            );
            for (name, secs) in &cpu.watched_seconds {
                let _ = writeln!(out, "  \n{name}: {secs:.2} CPU-seconds");
            }
        }
        let _ = writeln!(out, "\n## Errors: {}\n", self.error_total);
        for (kind, stat) in &self.errors {
            let _ = writeln!(
                out,
                "- {kind}: {} (e.g. {})",
                stat.count,
                stat.samples.join(" | ")
            );
        }
        if let Some(capacity) = &self.capacity {
            capacity.markdown(&mut out);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\n## Notes\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

impl Capacity {
    fn markdown(&self, out: &mut String) {
        let ms = |p: &Option<Percentiles>, f: fn(&Percentiles) -> u64| {
            p.as_ref()
                .map_or("-".to_owned(), |p| format!("{:.1}", f(p) as f64 / 1000.0))
        };
        let _ = writeln!(
            out,
            "\n## Capacity (p99 ≤ {:.0} ms, steps of {} s)\n",
            self.p99_limit_ms, self.step_secs
        );
        let _ = writeln!(
            out,
            "Highest rate held: {}  ",
            self.held_rate.map_or("none".to_owned(), |r| format!(
                "{r:.1} messages/s ({:.0} deliveries/s)",
                r * self.receivers_per_message
            ))
        );
        if let Some(why) = &self.stopped_because {
            let _ = writeln!(out, "Stopped at {why}");
        }
        let _ = writeln!(
            out,
            "\n| step | msg/s | sent | acked | BUSY | TIMEOUT | other refused | unanswered | delivered / due | lost acked | p50 ms | p99 ms | max ms | BUSY p99 ms | errors | server CPU-s | held |"
        );
        let _ = writeln!(
            out,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let rows = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("{}", i + 1), s))
            .chain(self.overload.iter().map(|s| ("overload".to_owned(), s)))
            .chain(
                self.recovery
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("recovery {i}–{} s", i + 1), s)),
            );
        for (name, s) in rows {
            let _ = writeln!(
                out,
                "| {name} | {:.1} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
                s.rate,
                s.tally.sent,
                s.tally.acked,
                s.tally.busy,
                s.tally.timeouts,
                s.tally.refused,
                s.tally.unanswered,
                s.tally.delivered,
                s.tally.expected,
                s.tally.lost_acked,
                ms(&s.tally.delivery, |p| p.p50),
                ms(&s.tally.delivery, |p| p.p99),
                ms(&s.tally.delivery, |p| p.max),
                ms(&s.tally.refusal, |p| p.p99),
                s.errors,
                s.server_cpu_secs,
                if s.held { "yes" } else { "no" }
            );
        }
        if !self.recovery.is_empty() {
            let _ = writeln!(
                out,
                "\nBack to normal after the overload step: {}",
                self.recovered_after_secs
                    .map_or("not within the recovery step".to_owned(), |s| format!(
                        "{s:.0} s"
                    ))
            );
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
