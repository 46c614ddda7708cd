//! What clients see of users, messages, conversations and groups: the
//! objects inside replies and events, as `Serialize` structs. Field order is
//! the order on the wire (`tests/tests/wire_format.rs` pins it).

use serde::Serialize;
use shared_proto::action::{ConversationId, GroupId, MessageId, UserId};

use crate::attachments::{self, AttachmentView, Reader};
use crate::files::signing::UrlSigner;
use crate::store::{Conversation, Group, Message, MessagePreview, UserCard};

/// A user as others see them. A user this service has no profile of is
/// shown by id alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub user_id: UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_url: Option<String>,
    /// Whether the user is connected anywhere: only in lists that show it
    /// (friends, a group's members).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
}

impl UserView {
    pub fn of(card: &UserCard) -> Self {
        UserView {
            user_id: card.id.clone(),
            nickname: Some(card.profile.nickname.clone()),
            profile_url: Some(card.profile.profile_url.clone()),
            online: None,
        }
    }

    /// The same, saying whether the user is online.
    pub fn with_online(self, online: bool) -> Self {
        UserView {
            online: Some(online),
            ..self
        }
    }

    /// The card of `user_id` among `cards`, or the id alone.
    pub fn find(cards: &[UserCard], user_id: &UserId) -> Self {
        cards
            .iter()
            .find(|c| c.id == *user_id)
            .map_or_else(|| UserView::id_only(user_id), UserView::of)
    }

    /// `card` if there is one, else the id alone.
    pub fn of_or_id(card: Option<&UserCard>, user_id: &UserId) -> Self {
        card.map_or_else(|| UserView::id_only(user_id), UserView::of)
    }

    fn id_only(user_id: &UserId) -> Self {
        UserView {
            user_id: user_id.clone(),
            nickname: None,
            profile_url: None,
            online: None,
        }
    }
}

/// The profile fields a `PROFILE_UPDATED` carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    pub user_id: UserId,
    pub nickname: String,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView<'a> {
    pub message_id: &'a MessageId,
    pub conversation_id: &'a ConversationId,
    pub seq: i64,
    pub sender_id: &'a UserId,
    pub client_msg_id: &'a str,
    pub text: &'a str,
    pub attachments: Vec<AttachmentView<'a>>,
    pub sent_at: i64,
}

impl<'a> MessageView<'a> {
    /// The message as `reader` sees it: its attachments' URLs are signed
    /// for them.
    pub fn of(message: &'a Message, signer: &UrlSigner, reader: Reader<'_>) -> Self {
        MessageView {
            message_id: &message.id,
            conversation_id: &message.conversation_id,
            seq: message.seq,
            sender_id: &message.sender_id,
            client_msg_id: &message.client_msg_id,
            text: &message.text,
            attachments: attachments::views(&message.attachments, signer, reader),
            sent_at: message.sent_at_ms,
        }
    }
}

/// Which conversation a new message is in, as its event says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRef<'a> {
    pub conversation_id: &'a ConversationId,
    pub kind: &'a str,
    pub group_id: Option<&'a GroupId>,
    pub temporary: bool,
}

/// One line of `LIST_CONVERSATIONS`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView<'a> {
    pub conversation_id: &'a ConversationId,
    pub kind: &'a str,
    pub group_id: Option<&'a GroupId>,
    pub group_name: Option<&'a str>,
    /// The other user of a direct conversation.
    pub with: Option<UserView>,
    pub temporary: bool,
    pub last_seq: i64,
    pub last_message: Option<PreviewView<'a>>,
    /// Messages after the caller's read mark.
    pub unread: i64,
}

impl<'a> ConversationView<'a> {
    pub fn of(
        conversation: &'a Conversation,
        group_name: Option<&'a str>,
        with: Option<UserView>,
        last_read_seq: i64,
    ) -> Self {
        ConversationView {
            conversation_id: &conversation.id,
            kind: &conversation.kind,
            group_id: conversation.group_id.as_ref(),
            group_name,
            with,
            temporary: conversation.temporary,
            last_seq: conversation.last_seq,
            last_message: conversation.last_message.as_ref().map(PreviewView::of),
            unread: (conversation.last_seq - last_read_seq).max(0),
        }
    }
}

/// The last message of a conversation, in its list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewView<'a> {
    pub message_id: &'a MessageId,
    pub seq: i64,
    pub sender_id: &'a UserId,
    pub text: &'a str,
    pub sent_at: i64,
}

impl<'a> PreviewView<'a> {
    fn of(preview: &'a MessagePreview) -> Self {
        PreviewView {
            message_id: &preview.message_id,
            seq: preview.seq,
            sender_id: &preview.sender_id,
            text: &preview.text,
            sent_at: preview.sent_at_ms,
        }
    }
}

/// What anyone may see of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary<'a> {
    pub group_id: &'a GroupId,
    pub name: &'a str,
    pub description: &'a str,
    pub member_count: usize,
    /// `admin`, `member`, `requested`, `banned` or `none`.
    pub role: &'static str,
}

/// A group as one viewer sees it: members see who is in it, admins also
/// requests and bans.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView<'a> {
    #[serde(flatten)]
    pub summary: GroupSummary<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<UserView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admins: Option<&'a [UserId]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_requests: Option<Vec<UserView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banned: Option<Vec<UserView>>,
}

impl<'a> GroupView<'a> {
    /// What a viewer who is not a member sees.
    pub fn outside(summary: GroupSummary<'a>) -> Self {
        GroupView {
            summary,
            members: None,
            admins: None,
            join_requests: None,
            banned: None,
        }
    }

    /// What a member sees; `cards` has the profiles of everyone listed,
    /// `online` says for each member (in order) whether they are online.
    pub fn inside(
        summary: GroupSummary<'a>,
        group: &'a Group,
        cards: &[UserCard],
        online: &[bool],
        admin: bool,
    ) -> Self {
        let views = |ids: &[UserId]| -> Vec<UserView> {
            ids.iter().map(|id| UserView::find(cards, id)).collect()
        };
        let members = group
            .members
            .iter()
            .zip(online.iter().copied().chain(std::iter::repeat(false)))
            .map(|(id, online)| UserView::find(cards, id).with_online(online))
            .collect();
        GroupView {
            summary,
            members: Some(members),
            admins: Some(&group.admins),
            join_requests: admin.then(|| views(&group.join_requests)),
            banned: admin.then(|| views(&group.banned)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PublicProfile;
    use crate::store::fixtures::group;
    use serde_json::json;

    fn card(id: &str, nickname: &str) -> UserCard {
        UserCard {
            id: UserId::new(id),
            profile: PublicProfile {
                nickname: nickname.into(),
                profile_url: "/imgs/default".into(),
            },
        }
    }

    fn to_text(value: impl Serialize) -> String {
        serde_json::to_string(&value).expect("serializes")
    }

    #[test]
    fn a_user_is_shown_with_public_fields_or_by_id_alone() {
        let cards = [card("admin", "Ada")];
        assert_eq!(
            to_text(UserView::find(&cards, &UserId::new("admin"))),
            r#"{"userId":"admin","nickname":"Ada","profileUrl":"/imgs/default"}"#
        );
        assert_eq!(
            to_text(UserView::find(&cards, &UserId::new("member"))),
            r#"{"userId":"member"}"#
        );
    }

    #[test]
    fn admins_see_requests_and_bans_members_do_not_outsiders_see_the_summary() {
        let g = group();
        let summary = || GroupSummary {
            group_id: &g.id,
            name: &g.name,
            description: &g.description,
            member_count: g.members.len(),
            role: "admin",
        };
        let cards = [card("admin", "Ada")];
        let admin = serde_json::to_value(GroupView::inside(
            summary(),
            &g,
            &cards,
            &[true, false],
            true,
        ))
        .expect("json");
        assert_eq!(
            admin["members"],
            json!([
                {"userId": "admin", "nickname": "Ada", "profileUrl": "/imgs/default", "online": true},
                {"userId": "member", "online": false},
            ])
        );
        assert_eq!(admin["joinRequests"], json!([{"userId": "asker"}]));
        assert_eq!(admin["banned"], json!([{"userId": "outcast"}]));
        let member = serde_json::to_value(GroupView::inside(summary(), &g, &cards, &[], false))
            .expect("json");
        assert!(member.get("joinRequests").is_none() && member.get("banned").is_none());
        assert_eq!(member["admins"], json!(["admin"]));
        assert_eq!(
            to_text(GroupView::outside(summary())),
            r#"{"groupId":"g","name":"G","description":"","memberCount":2,"role":"admin"}"#
        );
    }
}
