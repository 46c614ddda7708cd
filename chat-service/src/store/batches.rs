//! The writes of the message log (`crate::message_log`): many messages,
//! summaries or read marks in one round trip each.

use mongodb::bson::{Document, doc};
use shared_proto::action::{ConversationId, UserId};

use shared_proto::store::DUPLICATE_KEY;

use super::{Message, MessagePreview, Store, StoreError, is_duplicate_key};

/// The most statements sent in one `update` command. MongoDB takes up to
/// 100,000; FerretDB 1.24 holds one of its 100 SQLite connections for each
/// statement until the whole command ends, so two commands of 50 statements
/// at once left it waiting for a connection none of them would give back,
/// for ever. 16 statements keep a batch's two updates under 40 connections
/// whatever the batch, and cost MongoDB one command per 16 conversations.
const STATEMENTS_PER_UPDATE: usize = 16;

impl Store {
    /// Inserts messages in their order, one round trip, stopping at the
    /// first refused (see [`StoppedInsert`]).
    pub async fn insert_messages(&self, messages: &[&Message]) -> Result<(), StoppedInsert> {
        match self
            .messages
            .insert_many(messages.iter().copied())
            .ordered(true)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => Err(StoppedInsert::of(err)),
        }
    }

    /// The message a sender sent with this key, if stored.
    pub async fn message_by_key(&self, key: &str) -> Result<Option<Message>, StoreError> {
        Ok(self.messages.find_one(doc! {"_id": key}).await?)
    }

    /// Moves each conversation's last message forward (never back: `$max`
    /// on the preview compares its first field, `seq`), in one round trip.
    pub async fn record_last_messages(
        &self,
        previews: &[(&ConversationId, MessagePreview)],
    ) -> Result<(), StoreError> {
        let mut updates = Vec::with_capacity(previews.len());
        for (conversation_id, preview) in previews {
            updates.push(doc! {
                "q": {"_id": conversation_id.as_str()},
                "u": {"$max": {
                    "last_seq": preview.seq,
                    "last_message": mongodb::bson::to_document(preview)?,
                    "updated_at_ms": preview.sent_at_ms,
                }},
            });
        }
        let failed = self
            .update_many_statements("conversations", updates)
            .await?;
        match failed.first() {
            None => Ok(()),
            Some(error) => Err(write_error(error)),
        }
    }

    /// [`Store::mark_read`] for several (conversation, user) pairs, in one
    /// round trip.
    pub async fn mark_reads(
        &self,
        marks: &[(&ConversationId, &UserId, i64)],
    ) -> Result<(), StoreError> {
        let updates = marks
            .iter()
            .map(|(conversation_id, user_id, seq)| {
                doc! {
                    "q": {"_id": format!("{conversation_id}|{user_id}")},
                    "u": {
                        "$max": {"last_read_seq": *seq},
                        "$setOnInsert": {"conversation_id": conversation_id.as_str(), "user_id": user_id.as_str()},
                    },
                    "upsert": true,
                }
            })
            .collect();
        // A first mark racing with another replica's loses its upsert to a
        // duplicate key; written again one by one, it finds the document.
        for error in self.update_many_statements("reads", updates).await? {
            let index = error.get_i32("index").unwrap_or_default();
            let Some((conversation_id, user_id, seq)) = usize::try_from(index)
                .ok()
                .and_then(|index| marks.get(index))
            else {
                return Err(write_error(&error));
            };
            self.mark_read(conversation_id, user_id, *seq).await?;
        }
        Ok(())
    }

    /// Runs `update` statements on `collection`, unordered, at most
    /// [`STATEMENTS_PER_UPDATE`] to a command, one command after the other,
    /// and returns the statements' write errors (`index` counting from the
    /// first statement of all).
    async fn update_many_statements(
        &self,
        collection: &str,
        updates: Vec<Document>,
    ) -> Result<Vec<Document>, StoreError> {
        let mut failed = Vec::new();
        let mut first = 0;
        for part in updates.chunks(STATEMENTS_PER_UPDATE) {
            let reply = self
                .database
                .run_command(doc! {"update": collection, "updates": part, "ordered": false})
                .await?;
            let errors = reply.get_array("writeErrors").map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e.as_document().cloned())
                    .map(|mut error| {
                        let index = error.get_i32("index").unwrap_or_default();
                        error.insert("index", index.saturating_add(first));
                        error
                    })
            });
            failed.extend(errors.into_iter().flatten());
            first = first.saturating_add(i32::try_from(part.len()).unwrap_or(i32::MAX));
        }
        Ok(failed)
    }
}

/// Where an ordered insert of messages stopped.
#[derive(Debug)]
pub enum StoppedInsert {
    /// The first `stored` are stored; the next one's key or (conversation,
    /// seq) was taken.
    Duplicate { stored: usize },
    /// The first `stored` are stored; the database failed before the rest
    /// reached it, or, when `maybe_more`, while they were on their way, so
    /// some of them may be stored too.
    Failed {
        stored: usize,
        maybe_more: bool,
        error: StoreError,
    },
}

impl StoppedInsert {
    fn of(err: mongodb::error::Error) -> StoppedInsert {
        if let mongodb::error::ErrorKind::InsertMany(failure) = err.kind.as_ref()
            && let Some(first) = failure.write_errors.as_ref().and_then(|e| e.first())
        {
            // Ordered: everything before the refused one went in.
            let stored = first.index;
            return if first.code == DUPLICATE_KEY {
                StoppedInsert::Duplicate { stored }
            } else {
                StoppedInsert::Failed {
                    stored,
                    maybe_more: false,
                    error: err.into(),
                }
            };
        }
        if is_duplicate_key(&err) {
            return StoppedInsert::Duplicate { stored: 0 };
        }
        // Only an insert that found no server is surely not stored: a
        // connection lost on the way (even one the driver closed itself when
        // the server stopped answering its monitor, which it reports as a
        // cleared pool) may have delivered it, and a stalled server applies
        // it when it wakes.
        let never_sent = matches!(
            err.kind.as_ref(),
            mongodb::error::ErrorKind::ServerSelection { .. }
        );
        StoppedInsert::Failed {
            stored: 0,
            maybe_more: !never_sent,
            error: err.into(),
        }
    }
}

/// A statement's write error from a raw `update` command's reply.
fn write_error(error: &Document) -> StoreError {
    let code = error.get_i32("code").unwrap_or_default();
    let message = error.get_str("errmsg").unwrap_or("write error").to_owned();
    StoreError::Mongo(mongodb::error::Error::custom(format!(
        "update refused ({code}): {message}"
    )))
}
