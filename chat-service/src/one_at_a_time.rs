//! One writer at a time per key within this replica: a conversation's
//! summary (last `seq`, last message, the sender's read mark) is moved on by
//! `$max` updates, which MongoDB applies atomically. A database that applies
//! an update as a read and then a write (FerretDB 1.x, used in development)
//! loses one of two concurrent updates of one document; taking turns here
//! makes the result the same on both. Replicas still race each other on such
//! a database; on MongoDB nothing changes but a short wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub struct OneAtATime {
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl OneAtATime {
    /// Waits for `key`'s turn; it ends when the guard is dropped.
    pub async fn turn(&self, key: &str) -> OwnedMutexGuard<()> {
        let turn = {
            let mut turns = self
                .turns
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Keys nobody holds or waits for are forgotten.
            turns.retain(|_, turn| Arc::strong_count(turn) > 1);
            turns.entry(key.to_owned()).or_default().clone()
        };
        turn.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_key_takes_turns_and_others_do_not_wait() {
        let turns = Arc::new(OneAtATime::default());
        let first = turns.turn("a").await;
        let waiting = {
            let turns = turns.clone();
            tokio::spawn(async move { turns.turn("a").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a second turn of one key waits");
        let other = tokio::time::timeout(Duration::from_secs(1), turns.turn("b")).await;
        assert!(other.is_ok(), "another key does not wait");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting).await;
        assert!(second.is_ok(), "the turn passes on when the first ends");
    }
}
