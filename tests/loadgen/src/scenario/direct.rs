//! `direct`: one-to-one chat between pairs of friends at a fixed total rate.
//! Connection 2p and 2p+1 are friends; each sends to the other in turn.
//! Latency is send to the recipient's receipt.

use std::sync::Arc;

use crate::protocol::{Dest, Protocol, Topology};

use super::traffic::{self, Send};
use super::{Ctx, Findings, capacity, open_all};

pub async fn run<P: Protocol>(mut protocol: P, ctx: &Ctx) -> anyhow::Result<Findings> {
    let count = ctx.options.connections / 2 * 2;
    anyhow::ensure!(count >= 2, "direct needs at least 2 connections");
    // One user per connection: a message to a user reaches exactly one socket.
    protocol.prepare(count, &ctx.dialer).await?;
    let (conns, _) = open_all(&protocol, ctx, count, |i| i).await;
    let open: std::collections::HashSet<usize> = conns.iter().map(|c| c.index).collect();
    let pairs: Vec<(usize, usize)> = (0..count / 2)
        .map(|p| (2 * p, 2 * p + 1))
        .filter(|(a, b)| open.contains(a) && open.contains(b))
        .collect();
    let topology = Topology {
        pairs: pairs.clone(),
        ..Topology::default()
    };
    let conns = protocol.wire(conns, &topology).await?;

    let mut schedule = Vec::with_capacity(pairs.len() * 2);
    for direction in 0..2 {
        for &(a, b) in &pairs {
            let (from, to) = if direction == 0 { (a, b) } else { (b, a) };
            // User index equals connection index here.
            schedule.push(Send {
                from,
                dest: Dest::User(to),
                receivers: 1,
            });
        }
    }
    let mut findings = match &ctx.options.capacity {
        Some(plan) => {
            capacity::run(Arc::new(protocol), conns, &schedule, &schedule, ctx, plan).await
        }
        None => traffic::run(Arc::new(protocol), conns, &schedule, &schedule, ctx).await,
    };
    let per_sender = ctx.options.rate / schedule.len().max(1) as f64;
    findings.notes.push(if ctx.options.capacity.is_some() {
        format!(
            "{} pairs; the rate is shared by every connection",
            pairs.len()
        )
    } else {
        format!(
            "{} pairs; each connection sends {per_sender:.2} msg/s",
            pairs.len()
        )
    });
    Ok(findings)
}
