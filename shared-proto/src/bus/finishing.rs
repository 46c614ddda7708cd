//! Entries that finish at the same moment are finished together: their
//! publications, and the acknowledgement of every one of them, go out in
//! one run of the publishing script instead of one run each.
//!
//! Entries do finish together under load: the message log makes a whole
//! batch of messages durable at once, and every handling of that batch
//! then finishes. One run for all of them is one round trip and one script
//! for Redis and for this process, instead of one per entry.
//!
//! The first entry to finish while no run is under way starts one at once,
//! itself: at a low rate an entry goes alone, as before, and waits for
//! nobody. Entries finishing while a run is under way wait for it to end
//! and go out together in the next, which a task of its own starts, so
//! that the entry that started the first is not held up by the later ones.
//!
//! A run stays one atomic step, as each entry's was: its publications are
//! all published and kept, and its entries all acknowledged, or none is. A
//! run that fails fails each of its entries, which are then handled again.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::history::Acknowledge;
use super::{Bus, BusError, Publication};

/// The most entries finished by one run, which bounds the script's size.
const MOST_PER_RUN: usize = 64;

/// An entry whose handling is over, to publish and acknowledge.
#[derive(Debug)]
pub struct Finished {
    /// Shared by every entry of one worker's stream, not copied per entry.
    pub stream: Arc<str>,
    pub group: Arc<str>,
    pub entry_id: String,
    pub publications: Vec<Publication>,
}

/// The runs of one process's bus.
#[derive(Debug, Default)]
pub(super) struct Finishing {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// A run is under way, or about to be.
    running: bool,
    waiting: Vec<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    entry: Finished,
    done: oneshot::Sender<Result<(), Arc<BusError>>>,
}

impl Finishing {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a single step; a poisoned lock holds nothing torn.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `waiting`; true if no run was under way, so the caller starts one.
    fn queue(&self, waiting: Waiting) -> bool {
        let mut state = self.lock();
        state.waiting.push(waiting);
        !std::mem::replace(&mut state.running, true)
    }

    /// The next run's entries; none, and no run under way any more, once
    /// nothing waits.
    fn next_run(&self) -> Vec<Waiting> {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            state.running = false;
            return Vec::new();
        }
        let take = state.waiting.len().min(MOST_PER_RUN);
        state.waiting.drain(..take).collect()
    }

    /// After a run: true if entries queued meanwhile, so another must
    /// follow; otherwise no run is under way any more.
    fn more_waiting(&self) -> bool {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            state.running = false;
            false
        } else {
            true
        }
    }

    /// Gives up on every entry waiting, which are then handled again: for a
    /// process whose runtime is gone.
    fn abandon(&self) {
        let mut state = self.lock();
        state.waiting.clear();
        state.running = false;
    }
}

/// Held by whoever runs the script for waiting entries: when it ends, or is
/// dropped halfway, the entries that queued meanwhile get a run of their
/// own, on a task of their own.
struct HandOver<'a>(&'a Bus);

impl Drop for HandOver<'_> {
    fn drop(&mut self) {
        let bus = self.0;
        if !bus.finishing.more_waiting() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let bus = bus.clone();
                runtime.spawn(async move { bus.run_until_none_wait().await });
            }
            Err(_) => bus.finishing.abandon(),
        }
    }
}

impl Bus {
    /// Publishes (and keeps) an entry's publications and acknowledges and
    /// deletes it, in one atomic step with whichever other entries finish
    /// at the same moment; see the module's documentation.
    pub async fn finish_entry(&self, entry: Finished) -> Result<(), Arc<BusError>> {
        let (done, finished) = oneshot::channel();
        if self.finishing.queue(Waiting { entry, done }) {
            let _hand_over = HandOver(self);
            let mut run = self.finishing.next_run();
            self.run(&mut run).await;
        }
        finished.await.unwrap_or_else(|_| {
            Err(Arc::new(BusError::Malformed(
                "the run finishing this entry was abandoned".into(),
            )))
        })
    }

    async fn run_until_none_wait(&self) {
        let _hand_over = HandOver(self);
        let mut run = self.finishing.next_run();
        self.run(&mut run).await;
    }

    /// One run of the publishing script for `run`'s entries, whose waiters
    /// are then told how it went.
    async fn run(&self, run: &mut Vec<Waiting>) {
        let publications: Vec<Publication> = run
            .iter_mut()
            .flat_map(|waiting| std::mem::take(&mut waiting.entry.publications))
            .collect();
        let acknowledged: Vec<Acknowledge<'_>> = run
            .iter()
            .map(|waiting| Acknowledge {
                stream: &waiting.entry.stream,
                group: &waiting.entry.group,
                entry_id: &waiting.entry.entry_id,
            })
            .collect();
        metrics::histogram!("switchyard_bus_entries_finished_per_run").record(run.len() as f64);
        let outcome = self
            .publish_kept(&publications, &acknowledged)
            .await
            .map_err(Arc::new);
        for waiting in run.drain(..) {
            // A waiter that stopped waiting needs no answer.
            let _ = waiting.done.send(outcome.clone());
        }
    }
}
