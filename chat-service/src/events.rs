//! Every event chat-service pushes is built here.
//!
//! Direct events go on a user's channel (every connection of that user, on
//! any gateway); group events go once on the group's channel, and each
//! gateway fans them out to its own connections of the group's members.
//!
//! Events are kept (in the user's or the group's history, once) so that a
//! client that missed them can `SYNC`; signals (typing, presence) are live
//! only: replayed later they would tell something no longer true.

use shared_proto::action::{GroupId, UserId};
use shared_proto::bus::Publication;
use shared_proto::client::ServerFrame;
use shared_proto::envelope::{Origin, ToGateway};
use shared_proto::names::Names;

use crate::store::Conversation;

/// Builds the publications of events.
#[derive(Clone)]
pub struct Events {
    names: Names,
}

impl Events {
    pub fn new(names: Names) -> Self {
        Events { names }
    }

    /// An event for every connection of `user_id`.
    pub fn to_user(&self, user_id: &UserId, frame: ServerFrame) -> Publication {
        self.to_user_except(user_id, frame, None)
    }

    /// An event for every connection of `user_id` but `except` (the
    /// connection that caused it, which gets a reply instead).
    pub fn to_user_except(
        &self,
        user_id: &UserId,
        frame: ServerFrame,
        except: Option<&Origin>,
    ) -> Publication {
        Publication {
            kept_in: Some(self.names.user_history(user_id.as_str())),
            ..self.signal_to_user(user_id, frame, except)
        }
    }

    /// A live-only signal for every connection of `user_id` but `except`.
    pub fn signal_to_user(
        &self,
        user_id: &UserId,
        frame: ServerFrame,
        except: Option<&Origin>,
    ) -> Publication {
        Publication::live(
            self.names.user_channel(user_id.as_str()),
            ToGateway::Event {
                frame,
                except: except.cloned(),
                skip_user: None,
            },
        )
    }

    /// An event for every connection of every member of a group.
    pub fn to_group(
        &self,
        group_id: &GroupId,
        frame: ServerFrame,
        except: Option<&Origin>,
    ) -> Publication {
        self.to_group_skipping_any(group_id, frame, None, except)
    }

    /// An event for every member of a group but one user, who is told
    /// separately (e.g. a new member, whose gateway may not be listening to
    /// the group yet).
    pub fn to_group_skipping(
        &self,
        group_id: &GroupId,
        frame: ServerFrame,
        skip_user: &UserId,
        except: Option<&Origin>,
    ) -> Publication {
        self.to_group_skipping_any(group_id, frame, Some(skip_user), except)
    }

    fn to_group_skipping_any(
        &self,
        group_id: &GroupId,
        frame: ServerFrame,
        skip_user: Option<&UserId>,
        except: Option<&Origin>,
    ) -> Publication {
        Publication {
            channel: self.names.group_channel(group_id.as_str()),
            message: ToGateway::Event {
                frame,
                except: except.cloned(),
                skip_user: skip_user.cloned(),
            },
            kept_in: Some(self.names.group_history(group_id.as_str())),
        }
    }

    /// Tells the gateways of `user_id` to start or stop delivering the
    /// group's events to that user. Published before anything that relies
    /// on it, and kept: a `SYNC` replays the group's events of the time the
    /// user was a member only.
    pub fn membership(&self, user_id: &UserId, group_id: &GroupId, member: bool) -> Publication {
        Publication {
            channel: self.names.user_channel(user_id.as_str()),
            message: ToGateway::Membership {
                user_id: user_id.clone(),
                group_id: group_id.clone(),
                member,
            },
            kept_in: Some(self.names.user_history(user_id.as_str())),
        }
    }

    /// An event for everyone in `conversation` (both users of a direct one,
    /// the members of a group's) but the connection `except`, and none of
    /// `skip_user`'s connections. One publication for a group, whatever its
    /// size.
    pub fn to_conversation(
        &self,
        conversation: &Conversation,
        frame: ServerFrame,
        skip_user: Option<&UserId>,
        except: Option<&Origin>,
    ) -> Vec<Publication> {
        match &conversation.group_id {
            Some(group_id) => vec![self.to_group_skipping_any(group_id, frame, skip_user, except)],
            None => conversation
                .participants
                .iter()
                .filter(|p| Some(*p) != skip_user)
                .map(|p| self.to_user_except(p, frame.clone(), except))
                .collect(),
        }
    }

    /// A live-only signal for everyone in `conversation`, as
    /// [`Events::to_conversation`].
    pub fn signal_to_conversation(
        &self,
        conversation: &Conversation,
        frame: ServerFrame,
        skip_user: Option<&UserId>,
        except: Option<&Origin>,
    ) -> Vec<Publication> {
        self.to_conversation(conversation, frame, skip_user, except)
            .into_iter()
            .map(|publication| Publication {
                kept_in: None,
                ..publication
            })
            .collect()
    }
}
