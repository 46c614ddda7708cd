//! What SEND_MESSAGE needs to know before it stores a message (whether two
//! users are friends or share a group, a group's members, a conversation's
//! participants), remembered between actions so that the common case reads
//! nothing from the database.
//!
//! What is remembered is forgotten on change, on every replica: the action
//! that changes a friendship, a group or a conversation tells every replica
//! through a Redis channel after writing it. A replica trusts what it
//! remembers only while it hears that channel; while it does not (starting,
//! or after losing Redis) it forgets everything and reads the database each
//! time. A read that a change overtook is not remembered, and what is
//! remembered is forgotten after [`KEPT_FOR`] regardless, should a notice
//! ever be lost. So a change holds everywhere as soon as the notice arrives,
//! the way an event reaches a gateway.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use shared_proto::action::{ConversationId, GroupId, UserId};
use shared_proto::bus::Bus;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::{Conversation, Friendship, Group, Store, StoreError};

/// How long anything is remembered at most.
pub const KEPT_FOR: Duration = Duration::from_secs(60);
/// Entries remembered of each kind.
const CAPACITY: u64 = 100_000;

/// A change other replicas must hear of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Two users became friends or stopped being friends.
    Friendship { a: UserId, b: UserId },
    /// A group's members or roles changed.
    Group { group_id: GroupId },
    /// A conversation was changed (made temporary or not).
    Conversation { conversation_id: ConversationId },
}

#[derive(Clone)]
pub struct Known {
    inner: Arc<Inner>,
}

struct Inner {
    /// By pair id: accepted friends.
    friends: Cache<String, bool>,
    /// By pair id: members of at least one common group.
    share_a_group: Cache<String, bool>,
    groups: Cache<GroupId, Arc<Group>>,
    /// Whose their `last_seq` may be behind: it is a floor, not the last.
    conversations: Cache<ConversationId, Arc<Conversation>>,
    /// Counts the changes heard: a read begun before one is not kept.
    changes: AtomicU64,
    /// Whether this replica hears the changes of the others now.
    hearing: AtomicBool,
    bus: Bus,
    channel: String,
}

fn cache<K, V>() -> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(KEPT_FOR)
        .build()
}

impl Known {
    pub fn new(bus: Bus) -> Known {
        let channel = bus.names().chat_changes();
        Known {
            inner: Arc::new(Inner {
                friends: cache(),
                share_a_group: cache(),
                groups: cache(),
                conversations: cache(),
                changes: AtomicU64::new(0),
                hearing: AtomicBool::new(false),
                bus,
                channel,
            }),
        }
    }

    pub async fn are_friends(
        &self,
        store: &Store,
        a: &UserId,
        b: &UserId,
    ) -> Result<bool, StoreError> {
        let read = async { store.are_friends(a, b).await.map(Some) };
        let known = self
            .recall_or_read(&self.inner.friends, Friendship::pair_id(a, b), read)
            .await?;
        Ok(known.unwrap_or(false))
    }

    pub async fn share_a_group(
        &self,
        store: &Store,
        a: &UserId,
        b: &UserId,
    ) -> Result<bool, StoreError> {
        let read = async { store.share_a_group(a, b).await.map(Some) };
        let known = self
            .recall_or_read(&self.inner.share_a_group, Friendship::pair_id(a, b), read)
            .await?;
        Ok(known.unwrap_or(false))
    }

    pub async fn group(
        &self,
        store: &Store,
        group_id: &GroupId,
    ) -> Result<Option<Arc<Group>>, StoreError> {
        let read = async { Ok(store.group(group_id).await?.map(Arc::new)) };
        self.recall_or_read(&self.inner.groups, group_id.clone(), read)
            .await
    }

    /// The conversation, with a `last_seq` that may be behind the last
    /// (the message log knows the last of those it wrote).
    pub async fn conversation(
        &self,
        store: &Store,
        conversation_id: &ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        let read = async { Ok(store.conversation(conversation_id).await?.map(Arc::new)) };
        let known = self
            .recall_or_read(&self.inner.conversations, conversation_id.clone(), read)
            .await?;
        Ok(known.map(|conversation| (*conversation).clone()))
    }

    /// What is remembered under `key`, or else what `read` finds, which is
    /// remembered if it found something.
    async fn recall_or_read<K, V>(
        &self,
        cache: &Cache<K, V>,
        key: K,
        read: impl Future<Output = Result<Option<V>, StoreError>>,
    ) -> Result<Option<V>, StoreError>
    where
        K: Hash + Eq + Send + Sync + Clone + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if let Some(known) = self.recall(cache, &key) {
            return Ok(Some(known));
        }
        let seen = self.changes_seen();
        let found = read.await?;
        if let Some(value) = &found {
            self.keep(cache, key, value.clone(), seen);
        }
        Ok(found)
    }

    /// Tells every replica, this one first, to forget what `change` makes
    /// wrong. Called after the change is written.
    pub async fn changed(&self, change: Change) {
        self.forget(&change);
        let notice = match serde_json::to_string(&change) {
            Ok(notice) => notice,
            Err(err) => {
                warn!(error = %err, "cannot encode a change notice");
                return;
            }
        };
        if let Err(err) = self
            .inner
            .bus
            .publish_notice(&self.inner.channel, &notice)
            .await
        {
            // The others forget it after KEPT_FOR at the latest; one that
            // lost Redis too stopped trusting what it remembers.
            warn!(error = %err, ?change, "cannot tell the other replicas of a change");
        }
    }

    fn forget(&self, change: &Change) {
        let inner = &self.inner;
        // Counted first: a read in flight now is not kept (see `keep`).
        inner.changes.fetch_add(1, Ordering::SeqCst);
        match change {
            Change::Friendship { a, b } => {
                inner.friends.invalidate(&Friendship::pair_id(a, b));
                let direct = crate::conversations::direct_conversation_id(a, b);
                inner.conversations.invalidate(&direct);
            }
            Change::Group { group_id } => {
                inner.groups.invalidate(group_id);
                // Which pairs share a group depends on every group.
                inner.share_a_group.invalidate_all();
            }
            Change::Conversation { conversation_id } => {
                inner.conversations.invalidate(conversation_id);
            }
        }
    }

    fn forget_everything(&self) {
        let inner = &self.inner;
        inner.changes.fetch_add(1, Ordering::SeqCst);
        inner.friends.invalidate_all();
        inner.share_a_group.invalidate_all();
        inner.groups.invalidate_all();
        inner.conversations.invalidate_all();
    }

    fn changes_seen(&self) -> u64 {
        self.inner.changes.load(Ordering::SeqCst)
    }

    fn recall<K, V>(&self, cache: &Cache<K, V>, key: &K) -> Option<V>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if !self.inner.hearing.load(Ordering::SeqCst) {
            return None;
        }
        cache.get(key)
    }

    /// Remembers what a read found, unless a change was heard since the read
    /// began (`seen`): the read may be from before it.
    fn keep<K, V>(&self, cache: &Cache<K, V>, key: K, value: V, seen: u64)
    where
        K: Hash + Eq + Send + Sync + Clone + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if !self.inner.hearing.load(Ordering::SeqCst) || self.changes_seen() != seen {
            return;
        }
        cache.insert(key.clone(), value);
        // A change counted between the check and the insert may have
        // forgotten the key before it was there: take it out again.
        if self.changes_seen() != seen {
            cache.invalidate(&key);
        }
    }

    /// Hears the changes of every replica until `shutdown`; trusts what it
    /// remembers only while it hears them.
    pub async fn hear_changes(self, shutdown: CancellationToken) {
        let mut delay = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            if let Err(err) = self.hear_until_lost(&shutdown, &mut delay).await {
                warn!(error = %err, "not hearing other replicas' changes; reading the database meanwhile");
            }
            self.inner.hearing.store(false, Ordering::SeqCst);
            self.forget_everything();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn hear_until_lost(
        &self,
        shutdown: &CancellationToken,
        delay: &mut Duration,
    ) -> Result<(), redis::RedisError> {
        let pubsub = self.inner.bus.client().get_async_pubsub().await?;
        let (mut sink, mut stream) = pubsub.split();
        sink.subscribe(&self.inner.channel).await?;
        // What changed while this replica was not hearing is unknown.
        self.forget_everything();
        self.inner.hearing.store(true, Ordering::SeqCst);
        *delay = Duration::from_millis(100);
        info!("hearing other replicas' changes");
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                message = stream.next() => message,
            };
            let Some(message) = message else {
                return Ok(());
            };
            let payload: String = message.get_payload()?;
            match serde_json::from_str::<Change>(&payload) {
                Ok(change) => self.forget(&change),
                // Unreadable (a newer replica's kind of change, say): forget
                // everything rather than keep what it may have changed.
                Err(_) => self.forget_everything(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_notice_names_what_changed() {
        let change = Change::Friendship {
            a: UserId::new("a"),
            b: UserId::new("b"),
        };
        let notice = serde_json::to_value(&change).expect("json");
        assert_eq!(
            notice,
            serde_json::json!({"kind": "friendship", "a": "a", "b": "b"})
        );
        assert_eq!(
            serde_json::from_value::<Change>(notice).expect("read back"),
            change
        );
    }
}
