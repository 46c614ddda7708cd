//! The collections chat-service keeps, their documents and their indexes.
//!
//! - `people`: the public profile of every confirmed user, a copy of what
//!   auth-service (which owns accounts, in its `users`) tells this service
//!   with `PROFILE_CHANGED`. This service never reads `users`.
//! - `friendships`: one document per pair of users, pending or accepted.
//! - `groups`: one document per group, members and roles inside it, changed
//!   only by compare-and-set on `version` (no transactions needed).
//! - `conversations`: one per pair of users or per group, with its last
//!   sequence number and message.
//! - `messages`: keyed by (sender, clientMsgId) and unique by (conversation,
//!   seq), which is what makes retries harmless and sequence numbers gapless.
//! - `reads`: how far each user has read each conversation.
//! - `attachments.files` and `attachments.chunks`: the files of messages,
//!   a GridFS bucket (see [`files`]).
//! - `memberships`: the groups of each user, one document per user, kept
//!   beside `groups` so that a login reads one document by `_id` instead of
//!   every group (see [`Memberships`]).
//!
//! The path of a message never reads `messages`, the one collection that
//! grows with use: a resend is recognised by its insert failing on the
//! message's key. Every other read and write on that path names one document
//! by its `_id` in a collection that grows with users, not messages, and
//! every update that must never move backwards is a `$max`, so each is one
//! round trip. (FerretDB 1.24 on SQLite answers even an `_id` lookup by
//! reading the whole table, and any other filter by decoding every document,
//! so on it the size of the collection read is the cost of the read.)

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use shared_proto::action::{ConversationId, GroupId, UserId};
use shared_proto::settings::MongoSettings;
use shared_proto::store::ClientSettings;
pub use shared_proto::store::{StoreError, is_duplicate_key};

mod batches;
mod documents;
pub mod files;
pub use batches::StoppedInsert;
pub use documents::*;

#[derive(Clone)]
pub struct Store {
    pub people: Collection<UserCard>,
    pub friendships: Collection<Friendship>,
    pub groups: Collection<Group>,
    pub conversations: Collection<Conversation>,
    pub messages: Collection<Message>,
    pub reads: Collection<ReadMark>,
    pub memberships: Collection<Memberships>,
    /// The attachments' bucket (see [`files`]).
    pub files: files::FileStore,
    people_written: Collection<Person>,
    database: mongodb::Database,
}

impl Store {
    pub async fn connect(settings: &MongoSettings) -> Result<Store, StoreError> {
        let db =
            shared_proto::store::connect(settings, ClientSettings::failing_fast("chat-service"))
                .await?;
        Ok(Store {
            people: db.collection("people"),
            friendships: db.collection("friendships"),
            groups: db.collection("groups"),
            conversations: db.collection("conversations"),
            messages: db.collection("messages"),
            reads: db.collection("reads"),
            memberships: db.collection("memberships"),
            files: files::FileStore::new(&db),
            people_written: db.collection("people"),
            database: db.clone(),
        })
    }

    /// The indexes the queries here rely on on MongoDB. (The unique ones are
    /// enforced by FerretDB too; its SQLite backend does not use the others to
    /// answer queries, which is why the hot path goes by `_id`.)
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let unique = || IndexOptions::builder().unique(true).build();
        let index = |keys: Document| IndexModel::builder().keys(keys).build();
        let unique_index =
            |keys: Document| IndexModel::builder().keys(keys).options(unique()).build();
        self.people
            .create_index(index(doc! {"nickname_lower": 1}))
            .await?;
        self.people.create_index(index(doc! {"email": 1})).await?;
        self.friendships
            .create_index(index(doc! {"users": 1}))
            .await?;
        self.groups
            .create_index(index(doc! {"name_lower": 1}))
            .await?;
        self.groups.create_index(index(doc! {"members": 1})).await?;
        self.conversations
            .create_index(index(doc! {"participants": 1}))
            .await?;
        self.conversations
            .create_index(index(doc! {"group_id": 1}))
            .await?;
        self.messages
            .create_index(unique_index(doc! {"conversation_id": 1, "seq": 1}))
            .await?;
        self.reads.create_index(index(doc! {"user_id": 1})).await?;
        Ok(())
    }

    /// True if the database answers.
    pub async fn ping(&self) -> bool {
        shared_proto::store::ping(&self.database).await
    }

    pub async fn user(&self, id: &UserId) -> Result<Option<UserCard>, StoreError> {
        Ok(self.people.find_one(doc! {"_id": id.as_str()}).await?)
    }

    pub async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<UserCard>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .people
            .find(doc! {"_id": {"$in": as_strs(ids)}})
            .await?
            .try_collect()
            .await?)
    }

    /// Copies a profile unless the copy already holds this version or a
    /// later one (changes may arrive out of order, and more than once).
    pub async fn copy_profile(&self, person: &Person) -> Result<(), StoreError> {
        let replaced = self
            .people_written
            .replace_one(
                doc! {"_id": person.id.as_str(), "version": {"$lt": person.version}},
                person,
            )
            .upsert(true)
            .await;
        match replaced {
            Ok(_) => Ok(()),
            // The filter missed because a newer (or the same) version is
            // there, so the upsert's insert collided with it: nothing to do.
            Err(err) if is_duplicate_key(&err) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Users whose nickname starts with `prefix` (case-insensitive); only
    /// confirmed users are in `people`, and nobody else is anybody to find.
    pub async fn users_by_nickname_prefix(
        &self,
        prefix: &str,
        limit: i64,
    ) -> Result<Vec<UserCard>, StoreError> {
        let pattern = format!("^{}", regex_escape(&prefix.to_lowercase()));
        Ok(self
            .people
            .find(doc! {"nickname_lower": {"$regex": pattern}})
            .sort(doc! {"nickname_lower": 1})
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserCard>, StoreError> {
        Ok(self.people.find_one(doc! {"email": email}).await?)
    }

    pub async fn friendship(
        &self,
        a: &UserId,
        b: &UserId,
    ) -> Result<Option<Friendship>, StoreError> {
        Ok(self
            .friendships
            .find_one(doc! {"_id": Friendship::pair_id(a, b)})
            .await?)
    }

    pub async fn friendships_of(&self, user: &UserId) -> Result<Vec<Friendship>, StoreError> {
        Ok(self
            .friendships
            .find(doc! {"users": user.as_str()})
            .await?
            .try_collect()
            .await?)
    }

    pub async fn are_friends(&self, a: &UserId, b: &UserId) -> Result<bool, StoreError> {
        Ok(self.friendship(a, b).await?.is_some_and(|f| f.accepted))
    }

    pub async fn group(&self, id: &GroupId) -> Result<Option<Group>, StoreError> {
        Ok(self.groups.find_one(doc! {"_id": id.as_str()}).await?)
    }

    pub async fn groups_of(&self, user: &UserId) -> Result<Vec<Group>, StoreError> {
        Ok(self
            .groups
            .find(doc! {"members": user.as_str()})
            .await?
            .try_collect()
            .await?)
    }

    pub async fn memberships(&self, user: &UserId) -> Result<Option<Memberships>, StoreError> {
        Ok(self
            .memberships
            .find_one(doc! {"_id": user.as_str()})
            .await?)
    }

    /// Records where `user` stands in `group` as written (see [`Memberships`]).
    pub async fn record_membership(&self, user: &UserId, group: &Group) -> Result<(), StoreError> {
        let entries = membership_entries(user, std::slice::from_ref(group));
        upsert_by_id(&self.memberships, user.as_str(), doc! {"$max": entries}).await
    }

    /// Fills in a user's memberships from `groups`, every group they are a
    /// member of, read after the user's memberships were found incomplete.
    pub async fn complete_memberships(
        &self,
        user: &UserId,
        groups: &[Group],
    ) -> Result<(), StoreError> {
        let mut update = doc! {"$set": {"complete": true}};
        if !groups.is_empty() {
            update.insert("$max", membership_entries(user, groups));
        }
        upsert_by_id(&self.memberships, user.as_str(), update).await
    }

    /// True if the two users are both members of at least one group.
    pub async fn share_a_group(&self, a: &UserId, b: &UserId) -> Result<bool, StoreError> {
        Ok(self
            .groups
            .find_one(doc! {"$and": [{"members": a.as_str()}, {"members": b.as_str()}]})
            .await?
            .is_some())
    }

    pub async fn groups_by_name_prefix(
        &self,
        prefix: &str,
        limit: i64,
    ) -> Result<Vec<Group>, StoreError> {
        let pattern = format!("^{}", regex_escape(&prefix.to_lowercase()));
        Ok(self
            .groups
            .find(doc! {"name_lower": {"$regex": pattern}})
            .sort(doc! {"name_lower": 1})
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    pub async fn insert_group(&self, group: &Group) -> Result<(), StoreError> {
        match self.groups.insert_one(group).await {
            Ok(_) => Ok(()),
            // Redelivered CREATE_GROUP: the group id derives from the action.
            Err(err) if is_duplicate_key(&err) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Writes `group` if nobody changed it since `expected_version` was read.
    pub async fn replace_group(
        &self,
        group: &Group,
        expected_version: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .groups
            .replace_one(
                doc! {"_id": group.id.as_str(), "version": expected_version},
                group,
            )
            .await?;
        Ok(result.matched_count == 1)
    }

    pub async fn conversation(
        &self,
        id: &ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        Ok(self
            .conversations
            .find_one(doc! {"_id": id.as_str()})
            .await?)
    }

    /// Creates the conversation if it does not exist yet.
    pub async fn ensure_conversation(&self, conversation: &Conversation) -> Result<(), StoreError> {
        match self.conversations.insert_one(conversation).await {
            Ok(_) => Ok(()),
            Err(err) if is_duplicate_key(&err) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    pub async fn set_temporary(
        &self,
        conversation_id: &ConversationId,
        temporary: bool,
    ) -> Result<(), StoreError> {
        self.conversations
            .update_one(
                doc! {"_id": conversation_id.as_str()},
                doc! {"$set": {"temporary": temporary}},
            )
            .await?;
        Ok(())
    }

    pub async fn direct_conversations_of(
        &self,
        user: &UserId,
    ) -> Result<Vec<Conversation>, StoreError> {
        Ok(self
            .conversations
            .find(doc! {"participants": user.as_str()})
            .await?
            .try_collect()
            .await?)
    }

    pub async fn conversations_by_ids(
        &self,
        ids: &[ConversationId],
    ) -> Result<Vec<Conversation>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .conversations
            .find(doc! {"_id": {"$in": as_strs(ids)}})
            .await?
            .try_collect()
            .await?)
    }

    pub async fn message_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        Ok(self
            .messages
            .find_one(doc! {"_id": Message::key(sender, client_msg_id)})
            .await?)
    }

    /// A page of history: messages before `before_seq`, newest first.
    pub async fn history(
        &self,
        conversation_id: &ConversationId,
        before_seq: i64,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(self
            .messages
            .find(doc! {"conversation_id": conversation_id.as_str(), "seq": {"$lt": before_seq}})
            .sort(doc! {"seq": -1})
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Marks a conversation read up to `seq` (never moving backwards).
    pub async fn mark_read(
        &self,
        conversation_id: &ConversationId,
        user_id: &UserId,
        seq: i64,
    ) -> Result<(), StoreError> {
        let update = doc! {
            "$max": {"last_read_seq": seq},
            "$setOnInsert": {"conversation_id": conversation_id.as_str(), "user_id": user_id.as_str()},
        };
        upsert_by_id(&self.reads, &format!("{conversation_id}|{user_id}"), update).await
    }

    pub async fn reads_of(&self, user_id: &UserId) -> Result<Vec<ReadMark>, StoreError> {
        Ok(self
            .reads
            .find(doc! {"user_id": user_id.as_str()})
            .await?
            .try_collect()
            .await?)
    }
}

/// Escapes regex metacharacters so user input is matched literally.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Ids as the strings a query compares documents' fields with.
fn as_strs(ids: &[impl AsRef<str>]) -> Vec<&str> {
    ids.iter().map(AsRef::as_ref).collect()
}

/// The `$max` operand moving `user`'s entries for `groups` forward.
fn membership_entries(user: &UserId, groups: &[Group]) -> Document {
    groups
        .iter()
        .map(|group| {
            let entry = Memberships::entry(group, user);
            (format!("groups.{}", group.id), entry.into())
        })
        .collect()
}

/// Applies `update` to the document `id`, creating it if there is none.
async fn upsert_by_id<T: Send + Sync>(
    collection: &Collection<T>,
    id: &str,
    update: Document,
) -> Result<(), StoreError> {
    let upsert = || {
        collection
            .update_one(doc! {"_id": id}, update.clone())
            .upsert(true)
    };
    match upsert().await {
        Ok(_) => Ok(()),
        // Two first writes raced to insert: the loser's update now finds the
        // document.
        Err(err) if is_duplicate_key(&err) => Ok(upsert().await.map(|_| ())?),
        Err(err) => Err(err.into()),
    }
}

/// Documents for the tests of this crate.
#[cfg(test)]
pub(crate) mod fixtures {
    use shared_proto::action::{GroupId, UserId};

    use super::documents::Group;

    /// A group with one admin, one other member, one banned user and one
    /// waiting to join.
    pub(crate) fn group() -> Group {
        Group {
            id: GroupId::new("g"),
            name: "G".into(),
            name_lower: "g".into(),
            description: String::new(),
            created_by: UserId::new("admin"),
            created_at_ms: 0,
            admins: vec![UserId::new("admin")],
            members: vec![UserId::new("admin"), UserId::new("member")],
            banned: vec![UserId::new("outcast")],
            join_requests: vec![UserId::new("asker")],
            version: 0,
            recent_actions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_metacharacters_are_matched_literally() {
        assert_eq!(regex_escape("a.b*"), "a\\.b\\*");
    }
}
