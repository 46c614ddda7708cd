//! `storm`: open N connections as fast as the concurrency (and `--rate`, if
//! given) allow, logging each in, and measure connect and login latency and
//! the rate the servers accept connections at.

use std::time::{Duration, Instant};

use crate::procfs;
use crate::protocol::Protocol;

use super::{Ctx, Findings, idle::SETTLE, memory, open_all};

pub async fn run<P: Protocol>(mut protocol: P, ctx: &Ctx) -> anyhow::Result<Findings> {
    let users = ctx.options.users.max(1);
    protocol.prepare(users, &ctx.dialer).await?;
    tokio::time::sleep(SETTLE).await;
    let before = procfs::sample(&ctx.servers);
    let watched_before = ctx.watched_cpu();

    let start = Instant::now();
    let (conns, open_secs) = open_all(&protocol, ctx, ctx.options.connections, |i| i % users).await;
    let window = start.elapsed();
    let after = procfs::sample(&ctx.servers);
    let opened = conns.len();
    drop(conns);

    let mut findings = Findings {
        memory: memory(
            &ctx.servers,
            before.rss_bytes,
            after.rss_bytes,
            after.rss_bytes,
            opened,
        ),
        window_secs: window.as_secs_f64(),
        open_secs: Some(open_secs),
        ..Findings::default()
    };
    let server_cpu = after.cpu_seconds - before.cpu_seconds;
    findings.cpu = Some(crate::report::Cpu {
        server_pids: ctx.servers.clone(),
        server_seconds: server_cpu,
        window_secs: window.as_secs_f64(),
        sending_secs: 0.0,
        delivered_per_cpu_second: None,
        loadgen_seconds: 0.0,
        watched_seconds: ctx
            .watched_cpu()
            .into_iter()
            .map(|(name, after)| {
                let before = watched_before.get(&name).copied().unwrap_or(0.0);
                (name, after - before)
            })
            .collect(),
    });
    // Let the servers see the closes before the process exits.
    tokio::time::sleep(ctx.bounded(Duration::from_millis(500))).await;
    Ok(findings)
}
