//! The data of every reply and event chat-service sends, one `Serialize`
//! struct per kind: a frame is `ServerFrame::new(status, sentence)
//! .with_fields(&body)`, so each kind's fields are named and typed once.
//! The objects inside them (users, messages, groups) are in [`crate::views`].
//!
//! Field order is the order on the wire (`tests/tests/wire_format.rs` pins
//! it): the JSON maps keep insertion order, so a field moved here moves in
//! every frame of its kind.

use serde::Serialize;
use shared_proto::action::{ConversationId, GroupId, MessageId, UserId};

use crate::views::{
    ConversationRef, ConversationView, GroupSummary, GroupView, MessageView, ProfileView, UserView,
};

/// `PROFILE_UPDATED`, to the client that changed the profile and to the
/// user's other connections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileUpdated<'a> {
    pub profile: &'a ProfileView,
}

/// `USERS_FOUND`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsersFound {
    pub users: Vec<UserView>,
}

/// Another user and what is known of them: `FRIEND_REQUEST_SENT` (the
/// user asked), `FRIEND_REQUEST_RECEIVED` (the user who asks) and
/// `FRIEND_ADDED` (the new friend).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendNotice<'a> {
    pub user_id: &'a UserId,
    pub user: UserView,
}

/// `FRIEND_RESPONDED`: the caller's answer to a friend request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendResponded<'a> {
    pub accepted: bool,
    pub user_id: &'a UserId,
    pub user: UserView,
}

/// Another user, by id alone: `FRIEND_REQUEST_DECLINED` (who declined) and
/// `FRIEND_REMOVED` (the other user of the friendship that ended).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendRef<'a> {
    pub user_id: &'a UserId,
}

/// `FRIENDS`: friends (with whether each is online), requests waiting for
/// the caller, and the caller's own requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Friends {
    pub friends: Vec<UserView>,
    pub incoming: Vec<UserView>,
    pub outgoing: Vec<UserView>,
}

/// `PRESENCE`: a friend came online or went offline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence<'a> {
    pub user_id: &'a UserId,
    pub online: bool,
}

/// `MESSAGE_SENT`: where the caller's message was stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSent<'a> {
    pub message_id: &'a MessageId,
    pub conversation_id: &'a ConversationId,
    pub seq: i64,
    pub client_msg_id: &'a str,
    pub sent_at: i64,
    pub temporary: bool,
    /// Only when the message has attachments: a message without any is
    /// answered exactly as before attachments existed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::attachments::AttachmentView<'a>>,
}

/// `NEW_MESSAGE`: the message's own fields, then the conversation it is in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewMessage<'a> {
    #[serde(flatten)]
    pub message: MessageView<'a>,
    pub conversation: ConversationRef<'a>,
}

/// `HISTORY`: a page of messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History<'a> {
    pub conversation_id: &'a ConversationId,
    pub messages: Vec<MessageView<'a>>,
    pub has_more: bool,
}

/// `READ_MARKED`: how far the caller has now read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadMarked<'a> {
    pub conversation_id: &'a ConversationId,
    pub seq: i64,
}

/// `READ_RECEIPT`: how far a participant has read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt<'a> {
    pub conversation_id: &'a ConversationId,
    pub user_id: &'a UserId,
    pub seq: i64,
}

/// `CONVERSATIONS`: the caller's conversations, most recently active first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversations<'a> {
    pub conversations: Vec<ConversationView<'a>>,
}

/// `TYPING_SENT`: whether this TYPING was passed on or fell inside the
/// throttle's window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingSent<'a> {
    pub conversation_id: &'a ConversationId,
    pub forwarded: bool,
}

/// `TYPING`: a participant is typing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Typing<'a> {
    pub conversation_id: &'a ConversationId,
    pub user_id: &'a UserId,
}

/// `GROUP_CREATED` and `GROUP_INFO`: one group as the caller sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupDetails<'a> {
    pub group: GroupView<'a>,
}

/// `GROUPS` (the caller's) and `GROUPS_FOUND` (a search's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupList<'a> {
    pub groups: Vec<GroupSummary<'a>>,
}

/// `SESSION_READY`, for the gateway only: the groups whose events the user's
/// new connection must receive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionReady {
    pub group_ids: Vec<GroupId>,
}

/// A member's change in a group, the body of every moderation reply and
/// event: `JOIN_REQUESTED`, `JOIN_REJECTED`, `MEMBER_ADDED`,
/// `MEMBER_REMOVED`, `MEMBER_BANNED`, `MEMBER_UNBANNED`, `ADMIN_PROMOTED`,
/// `ADMIN_DEMOTED`, `GROUP_LEFT`; the kinds below add to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberChange<'a> {
    pub group_id: &'a GroupId,
    pub group_name: &'a str,
    /// The member the change is about.
    pub user_id: &'a UserId,
}

/// `JOIN_RESPONDED`: an admin's answer to a request to join.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JoinResponded<'a> {
    #[serde(flatten)]
    pub change: MemberChange<'a>,
    pub accepted: bool,
}

/// `JOIN_REQUEST_RECEIVED`, to each admin: who asks to join.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JoinRequestReceived<'a> {
    #[serde(flatten)]
    pub change: MemberChange<'a>,
    pub from: &'a UserView,
}

/// `GROUP_JOINED`, to the new member and the group. `member` is `null`,
/// not absent, for a member whose profile was not read: one who acted on
/// themself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupJoined<'a> {
    #[serde(flatten)]
    pub change: MemberChange<'a>,
    pub member: Option<UserView>,
}

#[cfg(test)]
mod tests {
    use shared_proto::client::ServerFrame;
    use shared_proto::status::ReplyStatus;

    use super::*;

    fn change<'a>(group_id: &'a GroupId, user_id: &'a UserId) -> MemberChange<'a> {
        MemberChange {
            group_id,
            group_name: "Hikers",
            user_id,
        }
    }

    /// The kinds `tests/tests/wire_format.rs` does not reach, pinned here:
    /// a flattened change keeps its fields first, then the kind's own.
    #[test]
    fn moderation_frames_add_their_fields_after_the_change() {
        let (group, user) = (GroupId::new("g"), UserId::new("u"));
        let responded = ServerFrame::new(ReplyStatus::JoinResponded, "Request declined.")
            .with_fields(JoinResponded {
                change: change(&group, &user),
                accepted: false,
            });
        assert_eq!(
            responded.to_text(),
            r#"{"message":"Request declined.","rocketStatus":"JOIN_RESPONDED","groupId":"g","groupName":"Hikers","userId":"u","accepted":false}"#
        );
        let from = UserView::of_or_id(None, &user);
        let asked = ServerFrame::new(ReplyStatus::JoinRequestReceived, "Asks.").with_fields(
            JoinRequestReceived {
                change: change(&group, &user),
                from: &from,
            },
        );
        assert_eq!(
            asked.to_text(),
            r#"{"message":"Asks.","rocketStatus":"JOIN_REQUEST_RECEIVED","groupId":"g","groupName":"Hikers","userId":"u","from":{"userId":"u"}}"#
        );
    }

    #[test]
    fn a_joined_member_without_a_card_is_null_not_absent() {
        let (group, user) = (GroupId::new("g"), UserId::new("u"));
        let joined =
            ServerFrame::new(ReplyStatus::GroupJoined, "Joined.").with_fields(GroupJoined {
                change: change(&group, &user),
                member: None,
            });
        assert_eq!(
            joined.to_text(),
            r#"{"message":"Joined.","rocketStatus":"GROUP_JOINED","groupId":"g","groupName":"Hikers","userId":"u","member":null}"#
        );
    }

    #[test]
    fn presence_and_session_ready_frames() {
        let user = UserId::new("u");
        let presence = ServerFrame::new(ReplyStatus::Presence, "Online.").with_fields(Presence {
            user_id: &user,
            online: true,
        });
        assert_eq!(
            presence.to_text(),
            r#"{"message":"Online.","rocketStatus":"PRESENCE","userId":"u","online":true}"#
        );
        let ready = ServerFrame::new(shared_proto::routing::SESSION_READY, "Groups.").with_fields(
            SessionReady {
                group_ids: vec![GroupId::new("g")],
            },
        );
        assert_eq!(
            ready.to_text(),
            r#"{"message":"Groups.","rocketStatus":"SESSION_READY","groupIds":["g"]}"#
        );
    }
}
