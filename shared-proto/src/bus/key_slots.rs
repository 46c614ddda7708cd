//! Slots per key (a user): the worker lets at most `per_key` entries of one
//! key be handled at once, so one key's backlog waits in its own line. A
//! key's bookkeeping exists only while entries of that key hold or wait for
//! one of its slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots of every key with entries in hand.
pub(super) struct KeySlots {
    per_key: usize,
    keys: Mutex<HashMap<String, Key>>,
}

/// The slots of one key, and how many entries hold or wait for one.
struct Key {
    semaphore: Arc<Semaphore>,
    users: usize,
}

/// A key slot held by an entry (or the place of one that waited and gave
/// up); the key's bookkeeping goes when its last entry does.
pub(super) struct KeySlot {
    slots: Arc<KeySlots>,
    key: String,
    _permit: Option<OwnedSemaphorePermit>,
}

impl KeySlots {
    /// `per_key` slots per key, at least 1.
    pub(super) fn new(per_key: usize) -> Arc<KeySlots> {
        Arc::new(KeySlots {
            per_key: per_key.max(1),
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// One of the slots of `key`, once one is free; released when dropped.
    pub(super) async fn acquire(self: &Arc<Self>, key: &str) -> KeySlot {
        let semaphore = {
            let mut keys = self.lock();
            let entry = keys.entry(key.to_owned()).or_insert_with(|| Key {
                semaphore: Arc::new(Semaphore::new(self.per_key)),
                users: 0,
            });
            entry.users += 1;
            entry.semaphore.clone()
        };
        // The guard exists before the wait, so a wait given up still counts
        // its entry out.
        let mut slot = KeySlot {
            slots: self.clone(),
            key: key.to_owned(),
            _permit: None,
        };
        slot._permit = semaphore.acquire_owned().await.ok();
        slot
    }

    /// Keys with entries holding or waiting for a slot.
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Key>> {
        // Plain bookkeeping; a panic elsewhere cannot leave it torn.
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        let mut keys = self.slots.lock();
        if let Some(entry) = keys.get_mut(&self.key) {
            entry.users -= 1;
            if entry.users == 0 {
                keys.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_key_has_its_slots_and_is_forgotten_with_its_last_entry() {
        let slots = KeySlots::new(2);
        let a1 = slots.acquire("ana").await;
        let _a2 = slots.acquire("ana").await;
        let b = slots.acquire("bob").await;
        assert_eq!(slots.keys(), 2);
        let third = tokio::time::timeout(Duration::from_millis(50), slots.acquire("ana")).await;
        assert!(third.is_err(), "ana's two slots are taken");
        drop(a1);
        let _a3 = tokio::time::timeout(Duration::from_millis(50), slots.acquire("ana"))
            .await
            .expect("a slot came free");
        drop(b);
        assert_eq!(slots.keys(), 1, "bob's bookkeeping went with his entry");
    }
}
