//! A replica that lost its Redis subscription (Redis restarted, or the
//! connection to it broke) heard nothing published in the meantime, and
//! the events after it carry positions past what it missed: its clients
//! would have a hole they cannot see. So when it listens again it sends
//! each logged-in connection the kept events it missed since the last one
//! this replica is known to have received, from the histories, in order and
//! exactly as they would have been pushed, before any live event after
//! them. A connection the histories cannot vouch for (they were lost, or
//! too much happened) is closed with the code that says to reconnect and
//! `SYNC`, which then answers `SYNC_GAP`.
//!
//! Signals that are not kept (typing, presence) and replies to requests
//! made meanwhile are not recovered: the former are stale by then, the
//! latter time out for their clients.

use std::sync::Arc;

use futures_util::StreamExt;
use shared_proto::bus::Bus;
use shared_proto::position::Position;
use shared_proto::status::close_code;
use tracing::{info, warn};

use crate::frame::Frame;
use crate::handle::{ConnectionHandle, Pushed, SentRange};
use crate::hub::Hub;
use crate::missed::{self, Unread};
use crate::replay;
use crate::sync::positioned;

/// Connections caught up at once: each is one Redis round trip or two.
const AT_ONCE: usize = 16;

/// A connection whose live events are held back until it is caught up.
pub struct Held {
    handle: Arc<ConnectionHandle>,
    sent: Option<SentRange>,
}

/// Holds back the live events of every logged-in connection here. Called
/// before listening again, so that nothing heard after can overtake what
/// is sent from the histories.
pub fn hold_all(hub: &Hub) -> Vec<Held> {
    hub.logged_in()
        .into_iter()
        .filter_map(|(_, id)| hub.connection(id))
        .map(|handle| Held {
            sent: handle.hold_events(),
            handle,
        })
        .collect()
}

/// Sends each held connection what it missed after `since`.
pub async fn run(bus: Bus, hub: Arc<Hub>, held: Vec<Held>, since: Position) {
    let count = held.len();
    info!(connections = count, %since, "catching up after listening again");
    futures_util::stream::iter(held)
        .for_each_concurrent(AT_ONCE, |held| catch_up(&bus, &hub, held, &since))
        .await;
    metrics::counter!("switchyard_gateway_caught_up_total").increment(count as u64);
}

async fn catch_up(bus: &Bus, hub: &Hub, held: Held, since: &Position) {
    let Held { handle, sent } = held;
    let Some(identity) = handle.identity() else {
        handle.release_caught_up(Vec::new());
        return;
    };
    let user_id = identity.user_id.as_str();
    // Joins and leaves missed meanwhile change what this replica listens
    // to: applied first, and read again once the subscriptions are in place,
    // so that a group's events are either in the histories read or live.
    let mut read_again = true;
    let missed = loop {
        let groups = hub.groups_of(user_id);
        let ask = missed::Ask {
            identity: &identity,
            groups: &groups,
            since: Some(since),
            sent,
            budget: None,
        };
        let missed = match missed::read(bus, &ask).await {
            Ok(missed) => missed,
            Err(Unread::Revoked) => {
                handle.release_caught_up(Vec::new());
                hub.revoke_session(user_id, &identity.session_id);
                return;
            }
            Err(Unread::Limited { .. } | Unread::Unavailable) => {
                return cannot_vouch(&handle);
            }
        };
        let mut changed = false;
        for (group_id, member) in replay::memberships_in(&missed.user) {
            changed |= hub.groups_of(user_id).contains(&group_id) != member;
            hub.set_membership(user_id, &group_id, member);
        }
        if !(changed && read_again) {
            break missed;
        }
        read_again = false;
        if !hub.subscriptions_settled().await {
            return cannot_vouch(&handle);
        }
    };
    match missed.events {
        Ok(events) => {
            let events = events
                .into_iter()
                .map(|(id, frame)| {
                    let position = Position {
                        epoch: missed.head.epoch.clone(),
                        id,
                    };
                    Pushed {
                        frame: Frame::text(&positioned(frame, &position).to_text()),
                        id: Some(id),
                    }
                })
                .collect();
            handle.release_caught_up(events);
        }
        Err(gap) => {
            warn!(connection = handle.id, ?gap, "cannot catch a connection up");
            cannot_vouch(&handle);
        }
    }
}

/// Closes a connection whose missed events cannot be given, with the code
/// that tells its client to reconnect and `SYNC`.
fn cannot_vouch(handle: &ConnectionHandle) {
    metrics::counter!("switchyard_gateway_sync_gaps_total").increment(1);
    handle.close(
        close_code::RECONNECT_AND_SYNC,
        "missed events; reconnect and SYNC",
    );
}
