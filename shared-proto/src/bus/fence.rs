//! How long a replica may still finish the entries of a stream that it reads
//! only while it holds a lease (see [`super::worker::WorkerConfig::fence`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Until when a replica holds a lease, by its own clock: a little less
/// than the lease's life from when its last renewal was sent, so that it
/// stops before anyone else can take it.
#[derive(Debug, Clone)]
pub struct Fence(Arc<Mutex<Instant>>);

impl Fence {
    /// A fence holding until `until`.
    pub fn until(until: Instant) -> Fence {
        Fence(Arc::new(Mutex::new(until)))
    }

    /// Moves the end to `until`, if later.
    pub fn extend_to(&self, until: Instant) {
        let mut end = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *end = (*end).max(until);
    }

    /// True while the lease holds.
    pub fn holds(&self) -> bool {
        let end = *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Instant::now() < end
    }
}
