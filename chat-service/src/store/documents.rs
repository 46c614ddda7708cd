//! The documents of chat-service's collections, as stored.

use serde::{Deserialize, Serialize};

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
    pub id: String,
    pub profile: PublicProfile,
}

/// A document of `people`, as written from a `PROFILE_CHANGED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    #[serde(rename = "_id")]
    pub id: String,
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
    pub users: Vec<String>,
    pub accepted: bool,
    pub requested_by: String,
    pub requested_at_ms: i64,
    #[serde(default)]
    pub since_ms: Option<i64>,
}

impl Friendship {
    pub fn pair_id(a: &str, b: &str) -> String {
        if a <= b {
            format!("{a}|{b}")
        } else {
            format!("{b}|{a}")
        }
    }

    pub fn other(&self, me: &str) -> String {
        self.users
            .iter()
            .find(|u| *u != me)
            .cloned()
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    pub name_lower: String,
    pub description: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub admins: Vec<String>,
    pub members: Vec<String>,
    pub banned: Vec<String>,
    pub join_requests: Vec<String>,
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memberships {
    #[serde(rename = "_id")]
    pub user_id: String,
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, i64>,
    /// Set once `groups` was filled in from the groups themselves. Until
    /// then it holds only the changes made since it was introduced.
    #[serde(default)]
    pub complete: bool,
}

impl Memberships {
    /// The value `groups` holds for `user` in `group` as it is now.
    pub fn entry(group: &Group, user: &str) -> i64 {
        let member = group.members.iter().any(|m| m == user);
        group.version * 2 + i64::from(member)
    }

    /// The groups the user is a member of.
    pub fn member_of(&self) -> impl Iterator<Item = &str> {
        self.groups
            .iter()
            .filter(|(_, entry)| *entry % 2 == 1)
            .map(|(group, _)| group.as_str())
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
    pub message_id: String,
    pub sender_id: String,
    pub text: String,
    pub sent_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    #[serde(rename = "_id")]
    pub id: String,
    /// `direct` or `group`.
    pub kind: String,
    /// The two users of a direct conversation; empty for a group.
    pub participants: Vec<String>,
    #[serde(default)]
    pub group_id: Option<String>,
    /// A direct conversation between users who are not friends but share a
    /// group: writable only while they still share one.
    pub temporary: bool,
    pub last_seq: i64,
    #[serde(default)]
    pub last_message: Option<MessagePreview>,
    pub updated_at_ms: i64,
}

/// Room for pictures and files, which a later version attaches to messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub size: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// [`Message::key`]: a resend of the same message finds the first one by
    /// its primary key.
    #[serde(rename = "_id")]
    pub key: String,
    /// The public id clients see (UUIDv7, so ids sort by time).
    #[serde(rename = "message_id")]
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub client_msg_id: String,
    pub text: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    pub sent_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadMark {
    #[serde(rename = "_id")]
    pub id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub last_read_seq: i64,
}

impl Message {
    /// The primary key of a sender's message with this client id. User ids
    /// are UUIDs, so the separator cannot occur in the first part.
    pub fn key(sender: &str, client_msg_id: &str) -> String {
        format!("{sender}/{client_msg_id}")
    }
}

/// What inserting a message did.
pub enum MessageInsert {
    Inserted,
    /// Another message took this sequence number first.
    SeqTaken,
    /// This sender already sent a message with this client id: that one.
    Duplicate(Box<Message>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures;

    #[test]
    fn a_membership_decided_later_outranks_one_decided_earlier() {
        let mut group = fixtures::group();
        group.version = 7;
        let added = Memberships::entry(&group, "member");
        group.members.retain(|m| m != "member");
        group.version = 8;
        let removed = Memberships::entry(&group, "member");
        assert!(removed > added, "the removal at version 8 wins");
        let memberships = Memberships {
            user_id: "member".into(),
            groups: [("g".to_owned(), added.max(removed))].into(),
            complete: true,
        };
        assert_eq!(memberships.member_of().count(), 0);
        let memberships = Memberships {
            groups: [("g".to_owned(), added)].into(),
            ..memberships
        };
        assert_eq!(memberships.member_of().collect::<Vec<_>>(), ["g"]);
    }

    #[test]
    fn pair_ids_do_not_depend_on_order() {
        assert_eq!(Friendship::pair_id("a", "b"), Friendship::pair_id("b", "a"));
    }

    #[test]
    fn a_preview_is_ordered_by_its_sequence_number_first() {
        let preview = MessagePreview {
            seq: 7,
            message_id: "m".into(),
            sender_id: "u".into(),
            text: "hi".into(),
            sent_at_ms: 1,
        };
        let stored = mongodb::bson::to_document(&preview).expect("a preview serializes");
        assert_eq!(stored.keys().next().map(String::as_str), Some("seq"));
    }
}
