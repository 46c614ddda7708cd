//! What a `SYNC` replays, decided from the histories as read: every kept
//! event for the user after the client's position, in order, as it was
//! pushed; or a gap, when the histories cannot vouch for that.

use std::collections::{HashMap, HashSet};

use shared_proto::bus::history::{Histories, HistoryLimits, HistorySince};
use shared_proto::client::ServerFrame;
use shared_proto::envelope::ToGateway;
use shared_proto::position::{EventId, Position};

use crate::handle::SentRange;

/// Why the events after a position cannot all be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The histories were lost since (Redis lost its data): a new epoch.
    Epoch,
    /// The position is older than the replay window.
    TooOld,
    /// A history dropped events after the position (it keeps a bounded number).
    Dropped,
    /// More events than one replay carries.
    TooMany,
}

impl Gap {
    /// Why, in a sentence for the client's developer.
    pub fn explain(self) -> &'static str {
        match self {
            Gap::Epoch => "The server's event history was reset since that position.",
            Gap::TooOld => "That position is older than the replay window.",
            Gap::Dropped => "Some events after that position are no longer kept.",
            Gap::TooMany => "More events happened since that position than one SYNC replays.",
        }
    }
}

/// One history as read, and the group it belongs to (`None`: the user's own).
pub struct ReadHistory<'a> {
    pub group: Option<&'a str>,
    pub history: &'a HistorySince,
}

/// The events to replay to `user_id` after `since`, oldest first, each
/// with its id; none of those in `sent` (this connection has them).
/// `groups_now` are the user's groups as this replica knows them: a group
/// with no membership change in the user's history since the position was
/// the user's all along if it is one of them.
pub fn plan(
    user_id: &str,
    since: &Position,
    read: &Histories,
    histories: &[ReadHistory<'_>],
    groups_now: &HashSet<String>,
    sent: Option<SentRange>,
    limits: HistoryLimits,
) -> Result<Vec<(EventId, ServerFrame)>, Gap> {
    if read.epoch != since.epoch {
        return Err(Gap::Epoch);
    }
    let window_ms = u64::try_from(limits.window.as_millis()).unwrap_or(u64::MAX);
    if since.id.ms.saturating_add(window_ms) < read.now_ms {
        return Err(Gap::TooOld);
    }
    for read in histories {
        if read.history.max_deleted > since.id {
            return Err(Gap::Dropped);
        }
        if read.history.entries.len() > limits.max_events {
            return Err(Gap::TooMany);
        }
    }
    let memberships = Memberships::from_user_history(histories, groups_now);
    let mut events = Vec::new();
    for read in histories {
        for (id, body) in &read.history.entries {
            if sent.is_some_and(|sent| sent.from <= *id && *id <= sent.last) {
                continue;
            }
            let Ok(ToGateway::Event {
                frame, skip_user, ..
            }) = serde_json::from_str::<ToGateway>(body)
            else {
                continue;
            };
            if skip_user.is_some_and(|skip| skip == user_id) {
                continue;
            }
            if let Some(group) = read.group {
                if !memberships.was_member(group, *id) {
                    continue;
                }
            }
            events.push((*id, frame));
        }
    }
    if events.len() > limits.max_events {
        return Err(Gap::TooMany);
    }
    events.sort_by_key(|(id, _)| *id);
    Ok(events)
}

/// The groups whose membership changed in the user's history after the
/// position and that the user is no longer in: their histories are read too,
/// for the events of the time the user was still a member.
pub fn groups_left(user: &HistorySince, groups_now: &HashSet<String>) -> Vec<String> {
    let mut left: Vec<String> = membership_changes(user)
        .map(|(_, group, _)| group)
        .filter(|group| !groups_now.contains(group))
        .collect();
    left.sort();
    left.dedup();
    left
}

/// The user's joins and leaves in their history, oldest first: the group,
/// and whether the user is a member after.
pub fn memberships_in(user: &HistorySince) -> Vec<(String, bool)> {
    membership_changes(user)
        .map(|(_, group, member)| (group, member))
        .collect()
}

/// The user's joins and leaves in their history: id, group, member after.
fn membership_changes(user: &HistorySince) -> impl Iterator<Item = (EventId, String, bool)> + '_ {
    user.entries.iter().filter_map(|(id, body)| {
        // Most entries are events; a cheap look saves parsing them twice.
        if !body.contains("\"membership\"") {
            return None;
        }
        match serde_json::from_str::<ToGateway>(body) {
            Ok(ToGateway::Membership {
                group_id, member, ..
            }) => Some((*id, group_id.into_string(), member)),
            _ => None,
        }
    })
}

/// When the user was in each group, between the position and now.
struct Memberships<'a> {
    /// Per group, its changes in order: id and member after.
    changes: HashMap<String, Vec<(EventId, bool)>>,
    groups_now: &'a HashSet<String>,
}

impl<'a> Memberships<'a> {
    fn from_user_history(histories: &[ReadHistory<'_>], groups_now: &'a HashSet<String>) -> Self {
        let mut changes: HashMap<String, Vec<(EventId, bool)>> = HashMap::new();
        for read in histories.iter().filter(|read| read.group.is_none()) {
            for (id, group, member) in membership_changes(read.history) {
                changes.entry(group).or_default().push((id, member));
            }
        }
        for list in changes.values_mut() {
            list.sort_by_key(|(id, _)| *id);
        }
        Memberships {
            changes,
            groups_now,
        }
    }

    /// Whether the user was a member of `group` when event `id` was kept.
    fn was_member(&self, group: &str, id: EventId) -> bool {
        let Some(changes) = self.changes.get(group) else {
            return self.groups_now.contains(group);
        };
        match changes.iter().rev().find(|(at, _)| *at < id) {
            Some((_, member)) => *member,
            // Before its first change the user was what that change undid.
            None => !changes[0].1,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use shared_proto::action::{GroupId, UserId};
    use shared_proto::position::Epoch;

    use super::*;

    const NOW: u64 = 10_000_000;

    fn id(ms: u64) -> EventId {
        EventId { ms, seq: 0 }
    }

    fn event(text: &str, skip_user: Option<&str>) -> String {
        serde_json::to_string(&ToGateway::Event {
            frame: ServerFrame::new("NEW_MESSAGE", text),
            except: None,
            skip_user: skip_user.map(UserId::new),
        })
        .expect("encode")
    }

    fn membership(group: &str, member: bool) -> String {
        serde_json::to_string(&ToGateway::Membership {
            user_id: UserId::new("ana"),
            group_id: GroupId::new(group),
            member,
        })
        .expect("encode")
    }

    fn read_at(now_ms: u64) -> Histories {
        Histories {
            epoch: Epoch::new("7").expect("epoch"),
            head: id(now_ms),
            now_ms,
            user: HistorySince::default(),
            groups: Vec::new(),
        }
    }

    fn since(ms: u64) -> Position {
        Position {
            epoch: Epoch::new("7").expect("epoch"),
            id: id(ms),
        }
    }

    fn limits() -> HistoryLimits {
        HistoryLimits {
            window: Duration::from_secs(3600),
            max_events: 3,
        }
    }

    fn texts(events: &[(EventId, ServerFrame)]) -> Vec<String> {
        events
            .iter()
            .map(|(_, frame)| frame.get("message").cloned().unwrap_or(json!(null)))
            .map(|m| m.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn history(entries: &[(u64, String)]) -> HistorySince {
        HistorySince {
            max_deleted: EventId::ZERO,
            entries: entries
                .iter()
                .map(|(ms, body)| (id(*ms), body.clone()))
                .collect(),
        }
    }

    #[test]
    fn direct_and_group_events_are_merged_in_the_order_they_were_kept() {
        let user = history(&[
            (NOW - 30, event("one", None)),
            (NOW - 10, event("three", None)),
        ]);
        let group = history(&[(NOW - 20, event("two", None))]);
        let histories = [
            ReadHistory {
                group: None,
                history: &user,
            },
            ReadHistory {
                group: Some("g"),
                history: &group,
            },
        ];
        let now: HashSet<String> = ["g".to_owned()].into();
        let events = plan(
            "ana",
            &since(NOW - 40),
            &read_at(NOW),
            &histories,
            &now,
            None,
            limits(),
        )
        .expect("replayable");
        assert_eq!(texts(&events), ["one", "two", "three"]);
    }

    #[test]
    fn events_for_everyone_but_the_user_and_those_already_sent_are_left_out() {
        let user = history(&[(NOW - 30, event("sent already", None))]);
        let group = history(&[
            (NOW - 20, event("not for ana", Some("ana"))),
            (NOW - 10, event("for ana", Some("bob"))),
        ]);
        let histories = [
            ReadHistory {
                group: None,
                history: &user,
            },
            ReadHistory {
                group: Some("g"),
                history: &group,
            },
        ];
        let now: HashSet<String> = ["g".to_owned()].into();
        let sent = SentRange {
            from: id(NOW - 35),
            last: id(NOW - 30),
        };
        let events = plan(
            "ana",
            &since(NOW - 40),
            &read_at(NOW),
            &histories,
            &now,
            Some(sent),
            limits(),
        )
        .expect("replayable");
        assert_eq!(texts(&events), ["for ana"]);
    }

    #[test]
    fn group_events_count_only_while_the_user_was_a_member() {
        let user = history(&[
            (NOW - 50, membership("joined", true)),
            (NOW - 30, membership("left", false)),
        ]);
        let joined = history(&[
            (NOW - 60, event("before joining", None)),
            (NOW - 40, event("after joining", None)),
        ]);
        let left = history(&[
            (NOW - 55, event("before leaving", None)),
            (NOW - 20, event("after leaving", None)),
        ]);
        let now: HashSet<String> = ["joined".to_owned()].into();
        assert_eq!(groups_left(&user, &now), ["left"]);
        let histories = [
            ReadHistory {
                group: None,
                history: &user,
            },
            ReadHistory {
                group: Some("joined"),
                history: &joined,
            },
            ReadHistory {
                group: Some("left"),
                history: &left,
            },
        ];
        let events = plan(
            "ana",
            &since(NOW - 70),
            &read_at(NOW),
            &histories,
            &now,
            None,
            limits(),
        )
        .expect("replayable");
        assert_eq!(texts(&events), ["before leaving", "after joining"]);
    }

    #[test]
    fn what_cannot_be_vouched_for_is_a_gap() {
        let empty = HistorySince::default();
        let read = [ReadHistory {
            group: None,
            history: &empty,
        }];
        let now = HashSet::new();
        let plan_since = |position: &Position, histories: &[ReadHistory<'_>]| {
            plan(
                "ana",
                position,
                &read_at(NOW),
                histories,
                &now,
                None,
                limits(),
            )
        };
        let other_epoch = Position {
            epoch: Epoch::new("8").expect("epoch"),
            id: id(NOW - 1),
        };
        assert_eq!(plan_since(&other_epoch, &read), Err(Gap::Epoch));
        assert_eq!(plan_since(&since(NOW - 3_600_001), &read), Err(Gap::TooOld));
        assert!(plan_since(&since(NOW - 3_600_000), &read).is_ok());

        let trimmed = HistorySince {
            max_deleted: id(NOW - 5),
            entries: Vec::new(),
        };
        let read = [ReadHistory {
            group: None,
            history: &trimmed,
        }];
        assert_eq!(plan_since(&since(NOW - 10), &read), Err(Gap::Dropped));
        assert!(plan_since(&since(NOW - 5), &read).is_ok());

        let many = history(
            &(1..=4)
                .map(|n| (NOW - n, event("m", None)))
                .collect::<Vec<_>>(),
        );
        let read = [ReadHistory {
            group: None,
            history: &many,
        }];
        assert_eq!(plan_since(&since(NOW - 10), &read), Err(Gap::TooMany));
    }
}
