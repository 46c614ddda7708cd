//! The one writer of messages on this replica. SEND_MESSAGE hands it a
//! message and waits; it stores what is waiting in batches, so that under
//! load a message costs a fraction of a round trip instead of three:
//!
//! 1. one ordered `insert` of the batch's messages, each numbered here with
//!    its conversation's next `seq`;
//! 2. then, at the same time, one `update` moving each conversation's last
//!    message forward and one marking each conversation read for its senders.
//!
//! It is also the one writer of conversations' summaries and senders' read
//! marks for messages: a message found stored by a handling that died
//! before moving them ([`MessageLog::finish_stored`]) has them written with
//! the next batch, so that no two writers of one summary race on a database
//! that applies `$max` as a read and then a write (FerretDB 1.x).
//!
//! A message is answered only after its batch is written. A batch is what
//! queued while the previous one was written, so at a low rate a message
//! goes alone and waits for nobody, and under load batches grow by
//! themselves.
//!
//! Numbers stay gapless because the unique (conversation, seq) index still
//! decides: a number taken (by another replica, or by a message whose
//! handling died before its summary was written) stops the ordered insert
//! there, and what follows in that conversation is numbered again above the
//! taken one. A message whose key is taken is a resend, answered with the
//! stored one, and the numbers after it close up. The last `seq` of each
//! conversation written here is remembered, so the common case reads nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shared_proto::action::ConversationId;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Message, MessagePreview, StoppedInsert, Store, StoreError};

/// The most messages written in one batch.
const MAX_BATCH: usize = 256;
/// Messages waiting for a batch before senders wait to hand theirs over.
const QUEUE: usize = 4096;
/// Taken sequence numbers a batch steps over before giving up on the
/// conversations concerned.
const SEQ_ATTEMPTS: usize = 50;
/// Conversations whose last `seq` is remembered; past it, all are forgotten
/// and read again as needed.
const REMEMBERED: usize = 200_000;

/// What became of a message handed to the log.
pub enum Written {
    /// Stored, with the `seq` it got, and its conversation's summary and
    /// the sender's read mark moved forward.
    Stored(Message),
    /// Stored with the `seq` it got; the summary or read mark failed and is
    /// to be finished by handling the action again. The one failure is
    /// every sender's of the batch, hence shared.
    StoredUnfinished(Message, Arc<StoreError>),
    /// The sender's message with this key was stored before: that one.
    Duplicate(Box<Message>),
    /// Its conversation's numbers kept being taken; nothing stored.
    Contended,
    /// Nothing stored: the database failed, or the log has stopped.
    Failed(anyhow::Error),
    /// The database failed while the message was on its way: it may be
    /// stored, and only handling the action again can tell.
    Uncertain(anyhow::Error),
}

/// Hands messages to the writer task.
#[derive(Clone)]
pub struct MessageLog {
    queue: mpsc::Sender<Pending>,
}

struct Pending {
    /// Where the action is on its stream: a batch is numbered in this
    /// order, so that a sender's messages sent together keep their order.
    entry: EntryOrder,
    message: Message,
    /// Stored already, by a handling that died before moving its
    /// conversation's summary and the sender's read mark: only those are
    /// owed, and written with the batch's, by this one writer.
    stored: bool,
    /// The conversation's last `seq` as the sender's handling read it; the
    /// writer's own memory is newer when it has one.
    known_last_seq: i64,
    answer: oneshot::Sender<Written>,
}

impl MessageLog {
    /// Starts the writer; it stops when every handle is dropped. Each of its
    /// writes is abandoned after `limit`, so that a database that stops
    /// answering holds up the messages of one batch, not every later one.
    pub fn start(store: Store, limit: Duration) -> MessageLog {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let writer = Writer { store, limit };
        tokio::spawn(write_batches(writer, waiting));
        MessageLog { queue }
    }

    /// Stores `message` under its conversation's next number.
    pub async fn write(&self, entry_id: &str, message: Message, known_last_seq: i64) -> Written {
        self.hand_over(entry_id, message, known_last_seq, false)
            .await
    }

    /// Moves the conversation's summary and the sender's read mark to
    /// `message`, stored before by a handling that died before doing so.
    pub async fn finish_stored(&self, entry_id: &str, message: Message) -> anyhow::Result<()> {
        let seq = message.seq;
        match self.hand_over(entry_id, message, seq, true).await {
            Written::Stored(_) => Ok(()),
            Written::StoredUnfinished(_, err) => Err(err.into()),
            Written::Failed(err) | Written::Uncertain(err) => Err(err),
            Written::Duplicate(_) | Written::Contended => {
                Err(anyhow::anyhow!("a stored message was numbered again"))
            }
        }
    }

    async fn hand_over(
        &self,
        entry_id: &str,
        message: Message,
        known_last_seq: i64,
        stored: bool,
    ) -> Written {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            entry: EntryOrder::of(entry_id),
            message,
            stored,
            known_last_seq,
            answer,
        };
        if self.queue.send(pending).await.is_err() {
            return Written::Failed(anyhow::anyhow!("the message log has stopped"));
        }
        answered
            .await
            .unwrap_or_else(|_| Written::Failed(anyhow::anyhow!("the message log has stopped")))
    }
}

/// The store, and how long each of the log's writes may take.
struct Writer {
    store: Store,
    limit: Duration,
}

impl Writer {
    /// `write`, or [`StoreError::Timeout`] once it has taken the limit.
    async fn within<T>(
        &self,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.limit, write)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.limit)))
    }

    /// Inserts in order; an insert abandoned at the limit may have been
    /// applied, in part or whole, so it is reported as possibly stored.
    async fn insert(&self, messages: &[&Message]) -> Result<(), StoppedInsert> {
        match tokio::time::timeout(self.limit, self.store.insert_messages(messages)).await {
            Ok(inserted) => inserted,
            Err(_elapsed) => Err(StoppedInsert::Failed {
                stored: 0,
                maybe_more: true,
                error: StoreError::Timeout(self.limit),
            }),
        }
    }
}

async fn write_batches(writer: Writer, mut waiting: mpsc::Receiver<Pending>) {
    let mut last_seqs = LastSeqs::default();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A sender that stopped waiting (its handling was cancelled) gets
        // nothing stored: the action is handled again or given up.
        batch.retain(|pending: &Pending| !pending.answer.is_closed());
        if batch.is_empty() {
            continue;
        }
        metrics::histogram!("switchyard_chat_message_batch_size").record(batch.len() as f64);
        write_batch(&writer, &mut last_seqs, std::mem::take(&mut batch)).await;
    }
}

/// The last `seq` of each conversation written by this replica.
#[derive(Default)]
struct LastSeqs(HashMap<ConversationId, i64>);

impl LastSeqs {
    fn get(&self, conversation: &ConversationId) -> Option<i64> {
        self.0.get(conversation).copied()
    }

    fn record(&mut self, conversation: &ConversationId, seq: i64) {
        if self.0.len() >= REMEMBERED && !self.0.contains_key(conversation) {
            self.0.clear();
        }
        let last = self.0.entry(conversation.clone()).or_insert(seq);
        *last = (*last).max(seq);
    }
}

async fn write_batch(writer: &Writer, last_seqs: &mut LastSeqs, batch: Vec<Pending>) {
    let (mut stored, fresh): (Vec<Pending>, Vec<Pending>) =
        batch.into_iter().partition(|pending| pending.stored);
    let mut waiting = number(fresh, last_seqs);
    let mut steps = 0;
    while !waiting.is_empty() {
        let messages: Vec<&Message> = waiting.iter().map(|p| &p.message).collect();
        let (count, stop) = match writer.insert(&messages).await {
            Ok(()) => (waiting.len(), None),
            Err(stop @ StoppedInsert::Duplicate { stored }) => (stored, Some(stop)),
            Err(stop @ StoppedInsert::Failed { stored, .. }) => (stored, Some(stop)),
        };
        stored.extend(waiting.drain(..count.min(waiting.len())));
        match stop {
            None => {}
            Some(StoppedInsert::Duplicate { .. }) => {
                steps += 1;
                step_over_taken(writer, &mut waiting, steps).await;
            }
            Some(StoppedInsert::Failed {
                error, maybe_more, ..
            }) => {
                for pending in waiting.drain(..) {
                    let error = anyhow::anyhow!("{error}");
                    let _ = pending.answer.send(if maybe_more {
                        Written::Uncertain(error)
                    } else {
                        Written::Failed(error)
                    });
                }
            }
        }
    }
    for pending in &stored {
        last_seqs.record(&pending.message.conversation_id, pending.message.seq);
    }
    finish(writer, stored).await;
}

/// A stream entry id (`<ms>-<n>`) as something that sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct EntryOrder(u64, u64);

impl EntryOrder {
    fn of(entry_id: &str) -> EntryOrder {
        let (ms, n) = entry_id.split_once('-').unwrap_or((entry_id, "0"));
        EntryOrder(ms.parse().unwrap_or(0), n.parse().unwrap_or(0))
    }
}

/// Numbers each message after its conversation's last, in the order the
/// actions were put on the stream.
fn number(mut batch: Vec<Pending>, last_seqs: &LastSeqs) -> Vec<Pending> {
    batch.sort_by_key(|pending| pending.entry);
    let mut next: HashMap<ConversationId, i64> = HashMap::new();
    for pending in &mut batch {
        let conversation = &pending.message.conversation_id;
        let last = next.entry(conversation.clone()).or_insert_with(|| {
            last_seqs
                .get(conversation)
                .unwrap_or(0)
                .max(pending.known_last_seq)
        });
        *last = (*last).max(pending.known_last_seq) + 1;
        pending.message.seq = *last;
    }
    batch
}

/// The first waiting message was refused by a unique index: either its key
/// (a resend: answered with the stored message, and the numbers after it in
/// its conversation close up) or its number (taken: it and the rest of its
/// conversation move above).
async fn step_over_taken(writer: &Writer, waiting: &mut Vec<Pending>, steps: usize) {
    if waiting.is_empty() {
        // The refusal named a message past the batch: nothing is left.
        return;
    }
    let refused = waiting.remove(0);
    let conversation = refused.message.conversation_id.clone();
    match writer
        .within(writer.store.message_by_key(&refused.message.key))
        .await
    {
        Ok(Some(existing)) => {
            let _ = refused.answer.send(Written::Duplicate(Box::new(existing)));
            renumber(waiting, &conversation, refused.message.seq);
        }
        Ok(None) if steps > SEQ_ATTEMPTS => {
            let _ = refused.answer.send(Written::Contended);
            for pending in extract(waiting, &conversation) {
                let _ = pending.answer.send(Written::Contended);
            }
        }
        Ok(None) => {
            // Another message holds this number, and the conversation's
            // summary may lag behind it: step one past whichever is higher.
            match writer
                .within(writer.store.conversation(&conversation))
                .await
            {
                Ok(found) => {
                    let latest = found.map_or(0, |c| c.last_seq);
                    let from = (refused.message.seq + 1).max(latest + 1);
                    waiting.insert(0, refused);
                    renumber(waiting, &conversation, from);
                }
                Err(err) => fail_conversation(waiting, refused, &conversation, &err),
            }
        }
        Err(err) => fail_conversation(waiting, refused, &conversation, &err),
    }
}

/// Numbers the waiting messages of `conversation` from `from` on, in order.
fn renumber(waiting: &mut [Pending], conversation: &ConversationId, from: i64) {
    let concerned = waiting
        .iter_mut()
        .filter(|p| &p.message.conversation_id == conversation);
    for (pending, seq) in concerned.zip(from..) {
        pending.message.seq = seq;
    }
}

fn extract(waiting: &mut Vec<Pending>, conversation: &ConversationId) -> Vec<Pending> {
    let (concerned, rest) = std::mem::take(waiting)
        .into_iter()
        .partition(|p| &p.message.conversation_id == conversation);
    *waiting = rest;
    concerned
}

/// The database failed while deciding what refused a message: nothing more
/// of that conversation goes in this batch, or its numbers could skip one.
fn fail_conversation(
    waiting: &mut Vec<Pending>,
    refused: Pending,
    conversation: &ConversationId,
    err: &StoreError,
) {
    for pending in std::iter::once(refused).chain(extract(waiting, conversation)) {
        let _ = pending
            .answer
            .send(Written::Failed(anyhow::anyhow!("{err}")));
    }
}

/// Moves each conversation's summary to its newest stored message and marks
/// it read for the senders, then answers the senders.
async fn finish(writer: &Writer, stored: Vec<Pending>) {
    if stored.is_empty() {
        return;
    }
    let mut newest: HashMap<&ConversationId, &Message> = HashMap::new();
    let mut read_to: HashMap<(&ConversationId, &shared_proto::action::UserId), i64> =
        HashMap::new();
    for Pending { message, .. } in &stored {
        let newest = newest.entry(&message.conversation_id).or_insert(message);
        if message.seq > newest.seq {
            *newest = message;
        }
        let read = read_to
            .entry((&message.conversation_id, &message.sender_id))
            .or_insert(message.seq);
        *read = (*read).max(message.seq);
    }
    let previews: Vec<(&ConversationId, MessagePreview)> = newest
        .into_iter()
        .map(|(conversation, message)| (conversation, preview(message)))
        .collect();
    let marks: Vec<_> = read_to
        .into_iter()
        .map(|((conversation, user), seq)| (conversation, user, seq))
        .collect();
    let (recorded, marked) = tokio::join!(
        writer.within(writer.store.record_last_messages(&previews)),
        writer.within(writer.store.mark_reads(&marks))
    );
    let failure = recorded.and(marked).err().map(Arc::new);
    for Pending {
        message, answer, ..
    } in stored
    {
        let written = match &failure {
            None => Written::Stored(message),
            Some(err) => Written::StoredUnfinished(message, err.clone()),
        };
        let _ = answer.send(written);
    }
}

/// What a conversation shows of its last message.
pub fn preview(message: &Message) -> MessagePreview {
    MessagePreview {
        seq: message.seq,
        message_id: message.id.clone(),
        sender_id: message.sender_id.clone(),
        text: message.text.clone(),
        sent_at_ms: message.sent_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_proto::action::{MessageId, UserId};

    fn pending(conversation: &str, known_last_seq: i64) -> Pending {
        let (answer, _) = oneshot::channel();
        Pending {
            entry: EntryOrder::default(),
            stored: false,
            message: Message {
                key: format!("k-{conversation}-{known_last_seq}"),
                id: MessageId::new("m"),
                conversation_id: ConversationId::new(conversation),
                seq: 0,
                sender_id: UserId::new("u"),
                client_msg_id: "c".into(),
                text: String::new(),
                attachments: Vec::new(),
                sent_at_ms: 0,
                stored_by_action: None,
            },
            known_last_seq,
            answer,
        }
    }

    fn seqs(batch: &[Pending]) -> Vec<(String, i64)> {
        batch
            .iter()
            .map(|p| (p.message.conversation_id.to_string(), p.message.seq))
            .collect()
    }

    #[test]
    fn each_conversation_is_numbered_on_from_its_last_message() {
        let mut remembered = LastSeqs::default();
        remembered.record(&ConversationId::new("a"), 7);
        // What this replica wrote is newer than a handling's stale read;
        // a conversation it never wrote starts after what the handling read.
        let batch = vec![pending("a", 3), pending("b", 10), pending("a", 3)];
        assert_eq!(
            seqs(&number(batch, &remembered)),
            [("a".into(), 8), ("b".into(), 11), ("a".into(), 9)]
        );
    }

    #[test]
    fn a_newer_read_than_the_memory_wins() {
        // Another replica wrote since: the handling read a later summary.
        let mut remembered = LastSeqs::default();
        remembered.record(&ConversationId::new("a"), 2);
        let batch = vec![pending("a", 5), pending("a", 2)];
        assert_eq!(
            seqs(&number(batch, &remembered)),
            [("a".into(), 6), ("a".into(), 7)]
        );
    }

    #[test]
    fn a_batch_is_numbered_in_stream_order() {
        let mut batch = vec![pending("a", 0), pending("a", 0), pending("a", 0)];
        for (pending, id) in batch.iter_mut().zip(["1700-3", "1700-12", "1699-40"]) {
            pending.entry = EntryOrder::of(id);
            pending.message.text = id.to_owned();
        }
        let numbered = number(batch, &LastSeqs::default());
        let order: Vec<(&str, i64)> = numbered
            .iter()
            .map(|p| (p.message.text.as_str(), p.message.seq))
            .collect();
        assert_eq!(order, [("1699-40", 1), ("1700-3", 2), ("1700-12", 3)]);
    }

    #[test]
    fn numbers_close_up_in_one_conversation_only() {
        let mut waiting = vec![pending("a", 0), pending("b", 0), pending("a", 0)];
        waiting[0].message.seq = 5;
        waiting[1].message.seq = 9;
        waiting[2].message.seq = 6;
        renumber(&mut waiting, &ConversationId::new("a"), 4);
        assert_eq!(
            seqs(&waiting),
            [("a".into(), 4), ("b".into(), 9), ("a".into(), 5)]
        );
    }
}
