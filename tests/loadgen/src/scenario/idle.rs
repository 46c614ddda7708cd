//! `idle`: hold N logged-in connections that send nothing for D seconds, and
//! measure what each costs the server in resident memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Failure;
use crate::procfs;
use crate::protocol::Protocol;

use super::fleet::Fleet;
use super::{Ctx, Findings, memory, open_all};

/// Time for the servers' memory to settle after the last connection opened.
pub const SETTLE: Duration = Duration::from_secs(2);

pub async fn run<P: Protocol>(mut protocol: P, ctx: &Ctx) -> anyhow::Result<Findings> {
    let users = ctx.options.users.max(1);
    protocol.prepare(users, &ctx.dialer).await?;
    tokio::time::sleep(SETTLE).await;
    let before = procfs::sample(&ctx.servers);

    let (conns, open_secs) = open_all(&protocol, ctx, ctx.options.connections, |i| i % users).await;
    let opened = conns.len();
    tokio::time::sleep(ctx.bounded(SETTLE)).await;
    let after = procfs::sample(&ctx.servers);

    let fleet = Fleet::spawn(Arc::new(protocol), conns, ctx.recorder.clone());
    let hold_start = Instant::now();
    let hold = ctx.bounded(ctx.options.duration);
    eprintln!(
        "loadgen: holding {opened} idle connections for {:.0} s",
        hold.as_secs_f64()
    );
    let mut peak = after.rss_bytes;
    // Bounded by `hold`.
    while hold_start.elapsed() < hold {
        tokio::time::sleep(
            Duration::from_millis(500).min(hold.saturating_sub(hold_start.elapsed())),
        )
        .await;
        peak = peak.max(procfs::sample(&ctx.servers).rss_bytes);
    }
    let alive = fleet.alive();
    fleet.stop().await;

    let mut findings = Findings {
        memory: memory(
            &ctx.servers,
            before.rss_bytes,
            after.rss_bytes,
            peak,
            opened,
        ),
        window_secs: hold_start.elapsed().as_secs_f64(),
        open_secs: Some(open_secs),
        ..Findings::default()
    };
    findings.notes.push(format!(
        "{alive} of {opened} connections were still open at the end of the hold"
    ));
    if (alive as usize) < opened {
        ctx.recorder.error(&Failure::new(
            "lost_while_idle",
            format!(
                "{} connections ended during the hold",
                opened - alive as usize
            ),
        ));
    }
    Ok(findings)
}
