//! `fanout`: group chat. Connections form rooms of `--group-size` k; at a
//! fixed total rate, members take turns sending to their room, and each
//! message is delivered to the other k-1 members. Throughput is delivered
//! messages per second; latency is send to each member's receipt.

use std::sync::Arc;

use crate::protocol::{Dest, Protocol, Topology};

use super::traffic::{self, Send};
use super::{Ctx, Findings, capacity, open_all};

pub async fn run<P: Protocol>(mut protocol: P, ctx: &Ctx) -> anyhow::Result<Findings> {
    let k = ctx.options.group_size.max(2);
    let rooms = ctx.options.connections / k;
    anyhow::ensure!(
        rooms >= 1,
        "fanout needs at least --group-size ({k}) connections"
    );
    let count = rooms * k;
    // One user per connection: a group of k users is k sockets.
    protocol.prepare(count, &ctx.dialer).await?;
    let (conns, _) = open_all(&protocol, ctx, count, |i| i).await;
    let open: std::collections::HashSet<usize> = conns.iter().map(|c| c.index).collect();
    let members: Vec<Vec<usize>> = (0..rooms)
        .map(|r| (r * k..(r + 1) * k).filter(|i| open.contains(i)).collect())
        .collect();
    let topology = Topology {
        rooms: members.clone(),
        ..Topology::default()
    };
    let conns = protocol.wire(conns, &topology).await?;

    // Consecutive messages go to different rooms; members take turns.
    let mut schedule = Vec::with_capacity(count);
    for turn in 0..k {
        // A room with one open member has no one to deliver to.
        for (r, room) in members.iter().enumerate().filter(|(_, m)| m.len() >= 2) {
            if let Some(&from) = room.get(turn) {
                let receivers = u32::try_from(room.len() - 1).unwrap_or(u32::MAX);
                schedule.push(Send {
                    from,
                    dest: Dest::Room(r),
                    receivers,
                });
            }
        }
    }
    // Probes from two members of each room reach every member.
    let live_rooms = members.iter().filter(|m| m.len() >= 2).count();
    let probes: Vec<Send> = schedule.iter().take(2 * live_rooms).copied().collect();
    let mut findings = match &ctx.options.capacity {
        Some(plan) => capacity::run(Arc::new(protocol), conns, &schedule, &probes, ctx, plan).await,
        None => traffic::run(Arc::new(protocol), conns, &schedule, &probes, ctx).await,
    };
    findings.notes.push(if ctx.options.capacity.is_some() {
        format!(
            "{rooms} rooms of {k}; each message is due to {} members",
            k - 1
        )
    } else {
        format!(
            "{rooms} rooms of {k}; {:.0} deliveries/s offered",
            ctx.options.rate * (k - 1) as f64
        )
    });
    Ok(findings)
}
