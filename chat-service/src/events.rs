//! Every event chat-service pushes is built here, so that a per-user position
//! can later be stamped on each in one place.
//!
//! Direct events go on a user's channel (every connection of that user, on
//! any gateway); group events go once on the group's channel, and each
//! gateway fans them out to its own connections of the group's members.

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
            channel: self.names.user_channel(user_id.as_str()),
            message: ToGateway::Event {
                frame,
                except: except.cloned(),
                skip_user: None,
            },
        }
    }

    /// An event for every connection of every member of a group.
    pub fn to_group(
        &self,
        group_id: &GroupId,
        frame: ServerFrame,
        except: Option<&Origin>,
    ) -> Publication {
        Publication {
            channel: self.names.group_channel(group_id.as_str()),
            message: ToGateway::Event {
                frame,
                except: except.cloned(),
                skip_user: None,
            },
        }
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
        Publication {
            channel: self.names.group_channel(group_id.as_str()),
            message: ToGateway::Event {
                frame,
                except: except.cloned(),
                skip_user: Some(skip_user.clone()),
            },
        }
    }

    /// Tells the gateways of `user_id` to start or stop delivering the
    /// group's events to that user. Published before anything that relies on it.
    pub fn membership(&self, user_id: &UserId, group_id: &GroupId, member: bool) -> Publication {
        Publication {
            channel: self.names.user_channel(user_id.as_str()),
            message: ToGateway::Membership {
                user_id: user_id.clone(),
                group_id: group_id.clone(),
                member,
            },
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
        match (&conversation.group_id, skip_user) {
            (Some(group_id), Some(user)) => {
                vec![self.to_group_skipping(group_id, frame, user, except)]
            }
            (Some(group_id), None) => vec![self.to_group(group_id, frame, except)],
            (None, _) => conversation
                .participants
                .iter()
                .filter(|p| Some(*p) != skip_user)
                .map(|p| self.to_user_except(p, frame.clone(), except))
                .collect(),
        }
    }
}
