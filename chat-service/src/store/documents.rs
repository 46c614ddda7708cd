//! The documents of chat-service's collections, as stored.
//!
//! Ids are the typed ids of `shared_proto::action`, stored as the plain
//! strings they serialize as: a user id cannot end up in a group's place,
//! and the documents are the same as before they were typed.

use serde::{Deserialize, Serialize};
use shared_proto::action::{ConversationId, GroupId, MessageId, UserId};

/// The part of a user's profile others may see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicProfile {
    pub nickname: String,
    #[serde(default)]
    pub profile_url: String,
}

/// A user as others see them, read from `people`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCard {
    #[serde(rename = "_id")]
    pub id: UserId,
    pub profile: PublicProfile,
}

/// A document of `people`, as written from a `PROFILE_CHANGED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    #[serde(rename = "_id")]
    pub id: UserId,
    /// Lower-case; for finding a user by exact address, never shown.
    pub email: String,
    pub profile: PublicProfile,
    /// Lower-cased nickname, for case-insensitive prefix search on an index.
    pub nickname_lower: String,
    /// The version of the profile this copies (see `ProfileChanged`).
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Friendship {
    /// The two user ids, sorted and joined: one document per pair.
    #[serde(rename = "_id")]
    pub id: String,
    pub users: Vec<UserId>,
    pub accepted: bool,
    pub requested_by: UserId,
    pub requested_at_ms: i64,
    #[serde(default)]
    pub since_ms: Option<i64>,
}

impl Friendship {
    pub fn pair_id(a: &UserId, b: &UserId) -> String {
        if a <= b {
            format!("{a}|{b}")
        } else {
            format!("{b}|{a}")
        }
    }

    /// The user of the pair who is not `me`; an empty id only for a
    /// document that names nobody else, which no action writes.
    pub fn other(&self, me: &UserId) -> UserId {
        self.users
            .iter()
            .find(|u| *u != me)
            .cloned()
            .unwrap_or_else(|| UserId::new(""))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    #[serde(rename = "_id")]
    pub id: GroupId,
    pub name: String,
    pub name_lower: String,
    pub description: String,
    pub created_by: UserId,
    pub created_at_ms: i64,
    pub admins: Vec<UserId>,
    pub members: Vec<UserId>,
    pub banned: Vec<UserId>,
    pub join_requests: Vec<UserId>,
    /// Bumped by every change; a write that read an older version is retried.
    pub version: i64,
    /// The last actions applied, so a redelivered one is recognised.
    #[serde(default)]
    pub recent_actions: Vec<String>,
}

/// The groups one user is in: what a login needs to know, read by `_id`.
///
/// `groups` maps a group to the group's `version` at which the user's place in
/// it was last decided, doubled, plus one if the user is a member. Entries
/// only move forward (`$max`): a writer that read an older version of the
/// group cannot undo a newer decision, and a redelivered action writes the
/// same value again. The group document stays the truth; this follows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memberships {
    #[serde(rename = "_id")]
    pub user_id: UserId,
    #[serde(default)]
    pub groups: std::collections::BTreeMap<GroupId, i64>,
    /// Set once `groups` was filled in from the groups themselves. Until
    /// then it holds only the changes made since it was introduced.
    #[serde(default)]
    pub complete: bool,
}

impl Memberships {
    /// The value `groups` holds for `user` in `group` as it is now.
    pub fn entry(group: &Group, user: &UserId) -> i64 {
        let member = group.members.iter().any(|m| m == user);
        group.version * 2 + i64::from(member)
    }

    /// The groups the user is a member of.
    pub fn member_of(&self) -> impl Iterator<Item = &GroupId> {
        self.groups
            .iter()
            .filter(|(_, entry)| *entry % 2 == 1)
            .map(|(group, _)| group)
    }
}

/// The conversation's newest message, kept in its document.
///
/// `seq` must stay the first field: the preview is moved forward with `$max`,
/// which compares embedded documents field by field, so the first field
/// decides which preview is the newer one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagePreview {
    pub seq: i64,
    pub message_id: MessageId,
    pub sender_id: UserId,
    pub text: String,
    pub sent_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    #[serde(rename = "_id")]
    pub id: ConversationId,
    /// `direct` or `group`.
    pub kind: String,
    /// The two users of a direct conversation; empty for a group.
    pub participants: Vec<UserId>,
    #[serde(default)]
    pub group_id: Option<GroupId>,
    /// A direct conversation between users who are not friends but share a
    /// group: writable only while they still share one.
    pub temporary: bool,
    pub last_seq: i64,
    #[serde(default)]
    pub last_message: Option<MessagePreview>,
    pub updated_at_ms: i64,
}

/// A file attached to a message, as the message keeps it: enough to show
/// it without reading `attachments.files` (see `store::files`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The file's id in the `attachments` bucket.
    pub id: String,
    /// `picture` or `file`.
    pub kind: String,
    pub name: String,
    pub size: i64,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// [`Message::key`]: a resend of the same message finds the first one by
    /// its primary key.
    #[serde(rename = "_id")]
    pub key: String,
    /// The public id clients see (UUIDv7, so ids sort by time).
    #[serde(rename = "message_id")]
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub sender_id: UserId,
    pub client_msg_id: String,
    pub text: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    pub sent_at_ms: i64,
    /// The action that stored it. Only that action, handled again after it
    /// died, still owes the message's events: any other that finds the
    /// message (a resend, handled first or reclaimed) answers it and pushes
    /// nothing, or the recipients would get it twice. Absent on messages
    /// stored before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_by_action: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadMark {
    #[serde(rename = "_id")]
    pub id: String,
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub last_read_seq: i64,
}

impl Message {
    /// The primary key of a sender's message with this client id. User ids
    /// are UUIDs, so the separator cannot occur in the first part.
    pub fn key(sender: &UserId, client_msg_id: &str) -> String {
        format!("{sender}/{client_msg_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures;

    #[test]
    fn a_membership_decided_later_outranks_one_decided_earlier() {
        let member = UserId::new("member");
        let mut group = fixtures::group();
        group.version = 7;
        let added = Memberships::entry(&group, &member);
        group.members.retain(|m| *m != member);
        group.version = 8;
        let removed = Memberships::entry(&group, &member);
        assert!(removed > added, "the removal at version 8 wins");
        let memberships = Memberships {
            user_id: member.clone(),
            groups: [(GroupId::new("g"), added.max(removed))].into(),
            complete: true,
        };
        assert_eq!(memberships.member_of().count(), 0);
        let memberships = Memberships {
            groups: [(GroupId::new("g"), added)].into(),
            ..memberships
        };
        assert_eq!(
            memberships.member_of().collect::<Vec<_>>(),
            [&GroupId::new("g")]
        );
    }

    /// Typed ids are stored as the strings they were before: as values, and
    /// as the keys of a user's memberships.
    #[test]
    fn ids_are_stored_as_plain_strings() {
        let memberships = Memberships {
            user_id: UserId::new("member"),
            groups: [(GroupId::new("g"), 3)].into(),
            complete: true,
        };
        let stored = mongodb::bson::to_document(&memberships).expect("a document");
        assert_eq!(
            stored,
            mongodb::bson::doc! {"_id": "member", "groups": {"g": 3_i64}, "complete": true}
        );
        let back: Memberships = mongodb::bson::from_document(stored).expect("read back");
        assert_eq!(back, memberships);
    }

    #[test]
    fn pair_ids_do_not_depend_on_order() {
        let (a, b) = (UserId::new("a"), UserId::new("b"));
        assert_eq!(Friendship::pair_id(&a, &b), Friendship::pair_id(&b, &a));
    }

    #[test]
    fn a_preview_is_ordered_by_its_sequence_number_first() {
        let preview = MessagePreview {
            seq: 7,
            message_id: MessageId::new("m"),
            sender_id: UserId::new("u"),
            text: "hi".into(),
            sent_at_ms: 1,
        };
        let stored = mongodb::bson::to_document(&preview).expect("a preview serializes");
        assert_eq!(stored.keys().next().map(String::as_str), Some("seq"));
    }
}
