//! What a worker and the handler of its stream agree on: how the stream is
//! read ([`WorkerConfig`]), what the handler is told of each delivery and
//! how it schedules it, and what it decides about an entry.

use std::future::Future;
use std::time::Duration;

use crate::bus::Publication;
use crate::bus::dead_letters::Reason;
use crate::bus::fence::Fence;

/// How one worker reads its stream.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub stream: String,
    pub group: String,
    /// This replica's name in the group; unique per process.
    pub consumer: String,
    /// How long an entry may stay pending with a silent consumer before
    /// another replica claims it.
    pub claim_idle: Duration,
    /// Entries handled at once by this replica.
    pub max_in_flight: usize,
    /// Entries of one key (see [`EntryHandler::admission`]) handled at once.
    pub per_key_in_flight: usize,
    /// Entries read and not yet finished, at most: bounds the memory a
    /// backlog takes here, and how far this replica reads ahead.
    pub max_held: usize,
    /// How long to wait, once stopping, for entries already being handled.
    pub drain_timeout: Duration,
    /// How long one handling may take. Past it the handling is abandoned
    /// as if this replica had died while handling it: an entry with a
    /// deadline (nobody waits for it any more) is acknowledged, any other
    /// is left pending and handled again on its next delivery.
    pub handle_timeout: Duration,
    /// Deliveries an entry gets before it is given up on (at least 1).
    pub max_deliveries: u64,
    /// Where entries given up on go.
    pub dead_letters: String,
    /// Claims every entry left pending by other consumers at once on
    /// starting, however recently delivered: for a stream that only this
    /// replica may read now (a partition it took over, see
    /// `crate::partitions`), whose earlier reader stopped or died.
    pub adopt_at_start: bool,
    /// For such a stream: until when this replica may finish what it
    /// handles. After it, a handled entry is neither published nor
    /// acknowledged: the stream may be another replica's by then, which
    /// claims the entry and finishes it.
    pub fence: Option<Fence>,
}

/// What a handler decided about an entry.
#[derive(Debug)]
pub enum Disposition {
    /// Its effect is durable: publish these, then acknowledge the entry.
    Done(Vec<Publication>),
    /// It could not be handled now; leave it pending so that it is claimed
    /// and tried again after `claim_idle`.
    Retry,
}

/// Facts about one delivery of an entry.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entry_id: String,
    /// True when the entry was claimed from another (presumably dead) replica.
    pub reclaimed: bool,
    /// How many times the entry has been delivered, this time included.
    pub deliveries: u64,
}

/// How the worker schedules one entry before handling it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// Entries with the same key share `per_key_in_flight` slots; `None`
    /// takes no such slot.
    pub key: Option<String>,
    /// If the entry has not started by then (ms since the epoch), nobody
    /// waits for it any more: it is acknowledged without being handled.
    pub shed_at_ms: Option<i64>,
}

/// Handles the entries of one stream.
pub trait EntryHandler<T>: Send + Sync + 'static {
    fn handle(&self, entry: T, delivery: Delivery) -> impl Future<Output = Disposition> + Send;

    /// How to schedule `entry`. By default: no key, never shed.
    fn admission(&self, _entry: &T) -> Admission {
        Admission::default()
    }

    /// What to publish when `entry` is given up on and moved to the
    /// dead-letter stream, e.g. an error for a requester still waiting.
    /// By default nothing.
    fn given_up(&self, _entry: &T, _deliveries: u64, _reason: &Reason) -> Vec<Publication> {
        Vec::new()
    }
}
