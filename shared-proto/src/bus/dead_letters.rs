//! Entries the worker gives up on: those whose handling failed (asked to be
//! retried, or panicked) on each of `max_deliveries` deliveries, those
//! delivered more often than that without ever being finished (their replica
//! died each time), and those that cannot be decoded at all. Retried forever,
//! such an entry would cost a handler on every claim and never finish.
//!
//! It goes to the stream's dead-letter stream, whole: the entry's body under
//! the usual field, so an operator can put it back on its stream as it is,
//! beside where it came from, how often it was delivered and why it was given
//! up. The move and the acknowledgement are one transaction: the entry is on
//! one stream or the other, never on neither.

use std::collections::HashMap;

use redis::streams::StreamPendingCountReply;

use super::{Bus, BusError, ENTRY_FIELD, bounded};

/// What the worker does with an entry, given how often it was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it (again).
    Handle,
    /// Give up on it: move it to the dead-letter stream.
    GiveUp,
}

/// Before handling: an entry delivered more often than `max_deliveries`
/// was given every chance already (each delivery before this one ended
/// without an answer, the replica dying with it); `max_deliveries` 0 counts
/// as 1.
pub fn before_handling(deliveries: u64, max_deliveries: u64) -> Verdict {
    if deliveries > max_deliveries.max(1) {
        Verdict::GiveUp
    } else {
        Verdict::Handle
    }
}

/// After a failed handling (retry asked, or a panic): the last delivery
/// allowed ends it; any earlier one leaves the entry pending, to be claimed
/// and tried again.
pub fn after_failure(deliveries: u64, max_deliveries: u64) -> Verdict {
    if deliveries >= max_deliveries.max(1) {
        Verdict::GiveUp
    } else {
        Verdict::Handle
    }
}

/// Why an entry was given up on, as the dead letter records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Its body is missing or is not what the stream carries.
    Undecodable(String),
    /// Its handler asked for it to be retried on every delivery.
    Failed,
    /// Its handler panicked on the last delivery.
    Panicked(String),
    /// It was delivered more often than allowed without being finished.
    NeverFinished,
    /// Its last handling ran past the handle timeout and was abandoned.
    TimedOut(std::time::Duration),
}

impl Reason {
    /// The reason a handler task that did not finish gives: what it panicked
    /// with, if that was a string.
    pub fn panicked(error: tokio::task::JoinError) -> Reason {
        if !error.is_panic() {
            return Reason::Panicked(error.to_string());
        }
        let payload = error.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        Reason::Panicked(message)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Undecodable(why) => write!(f, "cannot be decoded: {why}"),
            Reason::Failed => f.write_str("its handling failed on every delivery"),
            Reason::Panicked(why) => write!(f, "its handler panicked: {why}"),
            Reason::NeverFinished => {
                f.write_str("delivered more often than allowed without being finished")
            }
            Reason::TimedOut(limit) => write!(
                f,
                "its handling took longer than {} ms on its last delivery",
                limit.as_millis()
            ),
        }
    }
}

/// One entry given up on, and what to say about it.
#[derive(Debug, Clone)]
pub struct GivenUp<'a> {
    pub stream: &'a str,
    pub group: &'a str,
    pub entry_id: &'a str,
    /// The entry's body as it was on the stream, if it had one.
    pub body: Option<&'a str>,
    pub deliveries: u64,
    pub reason: &'a Reason,
}

impl Bus {
    /// Appends the entry to `dead_letters`, then acknowledges and deletes it
    /// from its stream, in one transaction.
    pub async fn move_to_dead_letters(
        &self,
        dead_letters: &str,
        given_up: &GivenUp<'_>,
    ) -> Result<(), BusError> {
        let mut fields: Vec<(&str, String)> = Vec::with_capacity(6);
        if let Some(body) = given_up.body {
            fields.push((ENTRY_FIELD, body.to_owned()));
        }
        fields.extend([
            ("stream", given_up.stream.to_owned()),
            ("entry", given_up.entry_id.to_owned()),
            ("deliveries", given_up.deliveries.to_string()),
            ("reason", given_up.reason.to_string()),
            ("failed_at_ms", crate::now_ms().to_string()),
        ]);
        let mut connection = self.connection();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .xadd(dead_letters, "*", &fields)
            .ignore()
            .xack(given_up.stream, given_up.group, &[given_up.entry_id])
            .ignore()
            .xdel(given_up.stream, &[given_up.entry_id])
            .ignore();
        bounded(pipe.query_async::<()>(&mut connection)).await?;
        Ok(())
    }

    /// How many times each of `ids`, pending in `group`, has been delivered.
    /// An id no longer pending is left out.
    pub async fn delivery_counts(
        &self,
        stream: &str,
        group: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, u64>, BusError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.xpending_count(stream, group, *id, *id, 1);
        }
        let mut connection = self.connection();
        let replies: Vec<StreamPendingCountReply> =
            bounded(pipe.query_async(&mut connection)).await?;
        Ok(replies
            .into_iter()
            .flat_map(|reply| reply.ids)
            .map(|pending| (pending.id, pending.times_delivered as u64))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_before_the_last_delivery_is_retried_and_on_it_given_up() {
        for deliveries in 1..5 {
            assert_eq!(
                after_failure(deliveries, 5),
                Verdict::Handle,
                "{deliveries}"
            );
        }
        assert_eq!(after_failure(5, 5), Verdict::GiveUp);
        assert_eq!(after_failure(6, 5), Verdict::GiveUp);
    }

    #[test]
    fn an_entry_delivered_past_the_limit_is_not_handled_again() {
        assert_eq!(before_handling(1, 5), Verdict::Handle);
        assert_eq!(before_handling(5, 5), Verdict::Handle, "the last chance");
        assert_eq!(before_handling(6, 5), Verdict::GiveUp);
    }

    #[test]
    fn a_limit_of_zero_still_allows_one_delivery() {
        assert_eq!(before_handling(1, 0), Verdict::Handle);
        assert_eq!(after_failure(1, 0), Verdict::GiveUp);
        assert_eq!(before_handling(2, 0), Verdict::GiveUp);
    }

    #[tokio::test]
    async fn a_panic_is_given_up_on_with_what_it_said() {
        let panicked = tokio::spawn(async { panic!("no such group") }).await;
        let error = panicked.expect_err("it panicked");
        assert_eq!(
            Reason::panicked(error),
            Reason::Panicked("no such group".into())
        );
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            Reason::Panicked("index out of bounds".into()).to_string(),
            "its handler panicked: index out of bounds"
        );
        assert_eq!(
            Reason::Failed.to_string(),
            "its handling failed on every delivery"
        );
    }
}
