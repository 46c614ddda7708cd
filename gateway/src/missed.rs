//! What a user missed after a position, read from the event histories in
//! Redis (see `bus::history`) and planned by [`crate::replay`]: the answer to
//! a client's `SYNC`, and what a replica that stopped listening for a while
//! owes its connections (see [`crate::catch_up`]).

use std::collections::HashSet;

use shared_proto::bus::Bus;
use shared_proto::bus::admission::Budget;
use shared_proto::bus::history::{Histories, HistoryQuery, HistoryRead, HistorySince};
use shared_proto::client::ServerFrame;
use shared_proto::envelope::Identity;
use shared_proto::position::{EventId, Position};
use tracing::warn;

use crate::handle::SentRange;
use crate::replay::{self, Gap, ReadHistory};

/// The histories as read for one user, and what they owe the user.
pub struct Missed {
    /// Where the histories stand.
    pub head: Position,
    /// The newest position the user is known to have everything up to:
    /// the head, or the position asked about if it is newer.
    pub newest: Position,
    /// The user's own history after the position, as read.
    pub user: HistorySince,
    /// The events after the position, oldest first, but those already sent;
    /// or why they cannot all be given.
    pub events: Result<Vec<(EventId, ServerFrame)>, Gap>,
}

/// Why nothing could be read.
pub enum Unread {
    /// The session was ended (`LOGOUT`) on some gateway.
    Revoked,
    /// The user spent the read budget.
    Limited { retry_after_ms: u64 },
    /// Redis did not answer.
    Unavailable,
}

/// What a read asks for.
pub struct Ask<'a> {
    pub identity: &'a Identity,
    /// The user's groups as this replica knows them.
    pub groups: &'a [String],
    /// `None` asks only where the histories stand.
    pub since: Option<&'a Position>,
    /// What the connection was sent already (see [`SentRange`]).
    pub sent: Option<SentRange>,
    /// Charged to the user's read budget, if any.
    pub budget: Option<Budget>,
}

/// Reads what the user missed after `ask.since`: one Redis round trip, and
/// one more when the user left groups since.
pub async fn read(bus: &Bus, ask: &Ask<'_>) -> Result<Missed, Unread> {
    let user_id = ask.identity.user_id.as_str();
    let query = HistoryQuery {
        user_id,
        session_id: &ask.identity.session_id,
        groups: ask.groups,
        since: ask.since.map(|p| p.id),
        budget: ask.budget,
    };
    let read = match bus.read_history(&query).await {
        Ok(HistoryRead::Read(read)) => read,
        Ok(HistoryRead::Revoked) => return Err(Unread::Revoked),
        Ok(HistoryRead::Limited { retry_after_ms }) => {
            return Err(Unread::Limited { retry_after_ms });
        }
        Err(err) => {
            warn!(error = %err, "could not read the event histories");
            return Err(Unread::Unavailable);
        }
    };
    let head = Position {
        epoch: read.epoch.clone(),
        id: read.head,
    };
    let Some(since) = ask.since else {
        return Ok(Missed {
            newest: head.clone(),
            head,
            user: read.user,
            events: Ok(Vec::new()),
        });
    };
    let groups_now: HashSet<String> = ask.groups.iter().cloned().collect();
    let left = replay::groups_left(&read.user, &groups_now);
    let left_read = if left.is_empty() || read.epoch != since.epoch {
        Vec::new()
    } else {
        // The groups the user left since: one more read, rare.
        let query = HistoryQuery {
            groups: &left,
            budget: None,
            ..query
        };
        match bus.read_history(&query).await {
            Ok(HistoryRead::Read(more)) => more.groups,
            Ok(HistoryRead::Revoked) => return Err(Unread::Revoked),
            Ok(HistoryRead::Limited { .. }) | Err(_) => return Err(Unread::Unavailable),
        }
    };
    let histories = histories_of(&read, ask.groups, &left, &left_read);
    let events = replay::plan(
        user_id,
        since,
        &read,
        &histories,
        &groups_now,
        ask.sent,
        bus.history_limits(),
    );
    let newest = Position {
        epoch: read.epoch.clone(),
        id: read.head.max(if read.epoch == since.epoch {
            since.id
        } else {
            EventId::ZERO
        }),
    };
    Ok(Missed {
        head,
        newest,
        user: read.user,
        events,
    })
}

/// Pairs each history read with its group.
fn histories_of<'a>(
    read: &'a Histories,
    groups: &'a [String],
    left: &'a [String],
    left_read: &'a [HistorySince],
) -> Vec<ReadHistory<'a>> {
    std::iter::once(ReadHistory {
        group: None,
        history: &read.user,
    })
    .chain(
        groups
            .iter()
            .zip(&read.groups)
            .chain(left.iter().zip(left_read))
            .map(|(group, history)| ReadHistory {
                group: Some(group.as_str()),
                history,
            }),
    )
    .collect()
}
