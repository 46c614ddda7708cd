//! One client connection as the rest of the gateway sees it: where its
//! frames go, and the session it acts as.

use std::sync::{Arc, Mutex, MutexGuard};

use shared_proto::client::ServerFrame;
use shared_proto::envelope::Identity;
use shared_proto::now_ms;
use shared_proto::position::EventId;
use shared_proto::status::close_code;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::frame::Frame;

/// Where a connection's frames go: its socket (see
/// [`crate::socket_writer`]), or in tests a recorder.
pub trait FrameSink: Send + Sync + std::fmt::Debug {
    /// Queues `frame` after every frame queued before it, or says why not.
    fn push(&self, frame: &Frame) -> Result<(), Refused>;

    /// Ends the connection of a client too far behind: drops the frames
    /// queued for it that have not started on their way, and queues `close`
    /// right after the one being written, so that the client learns why as
    /// soon as it reads again. Nothing is taken after it.
    fn cut_off(&self, close: &Frame);
}

/// Why a connection did not take a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its client reads too slowly: too many frames wait already.
    Behind,
    /// It is closed or its client has gone.
    Gone,
}

/// An event on its way to connections: its frame, encoded once, and its id
/// if it was kept for `SYNC` (signals are not).
#[derive(Debug, Clone)]
pub struct Pushed {
    pub frame: Frame,
    pub id: Option<EventId>,
}

impl Pushed {
    /// An event that is not kept.
    pub fn live(frame: Frame) -> Pushed {
        Pushed { frame, id: None }
    }
}

/// The most live events held back while a `SYNC` is answered (one Redis
/// round trip): a client whose events come faster than that is too slow.
const MAX_HELD_EVENTS: usize = 1024;

/// Which of its user's kept events a connection has been sent, so that a
/// `SYNC` replays what the client missed and nothing it has, and a live
/// event already carried by a replay is not sent again.
#[derive(Debug, Default)]
struct EventCursor {
    /// Every kept event of the user from this id to `last` was sent.
    from: Option<EventId>,
    last: Option<EventId>,
    /// While a `SYNC` is answered: the live events held back until its reply
    /// is out.
    held: Option<Vec<Pushed>>,
}

/// The kept events a connection was sent without a gap: from `from` to
/// `last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentRange {
    pub from: EventId,
    pub last: EventId,
}

/// What a `SYNC` gave the client: every kept event after `after` up to
/// `upto` (or, with no `after`, only where things stand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub after: Option<EventId>,
    pub upto: EventId,
}

/// A logged-in session on a connection.
#[derive(Debug, Clone)]
pub struct Session {
    pub identity: Identity,
    pub expires_at_ms: i64,
}

/// One connection as the rest of the gateway sees it.
#[derive(Debug)]
pub struct ConnectionHandle {
    pub id: u64,
    sink: Arc<dyn FrameSink>,
    session: Mutex<Option<Session>>,
    events: Mutex<EventCursor>,
    /// Cancelled to make the connection's tasks stop.
    pub closed: CancellationToken,
}

impl ConnectionHandle {
    /// Sends one frame to this client.
    pub fn send(&self, frame: &ServerFrame) {
        if let Some(code) = shared_proto::status::ErrorCode::parse(frame.status()) {
            metrics::counter!("switchyard_gateway_errors_total", "code" => code.as_str())
                .increment(1);
        }
        if self.send_frame(&Frame::text(&frame.to_text())) {
            metrics::counter!("switchyard_gateway_frames_out_total").increment(1);
        }
    }

    /// Queues an encoded frame; true if the connection took it. A client that
    /// reads too slowly to keep up is disconnected rather than allowed to grow
    /// our memory, with a close code that tells it to reconnect and fetch
    /// what it missed. (Callers count the frames: a group event counts its
    /// deliveries once.)
    pub fn send_frame(&self, frame: &Frame) -> bool {
        match self.sink.push(frame) {
            Ok(()) => true,
            Err(Refused::Behind) => {
                self.cut_off_too_slow();
                false
            }
            Err(Refused::Gone) => false,
        }
    }

    /// Sends a pushed event, unless this connection was sent it already (by
    /// a `SYNC` reply) or holds events back for one; true if it was sent or
    /// held.
    pub fn send_event(&self, event: &Pushed) -> bool {
        let Some(id) = event.id else {
            return self.send_frame(&event.frame);
        };
        let mut cursor = lock(&self.events);
        if cursor.last.is_some_and(|last| id <= last) {
            return false;
        }
        if let Some(held) = &mut cursor.held {
            if held.len() < MAX_HELD_EVENTS {
                held.push(event.clone());
                return true;
            }
            drop(cursor);
            self.cut_off_too_slow();
            return false;
        }
        // Sent under the lock, so that a `SYNC` reply cannot overtake it.
        let sent = self.send_frame(&event.frame);
        if sent {
            cursor.from.get_or_insert(id);
            cursor.last = Some(id);
        }
        sent
    }

    /// Holds live events back until [`ConnectionHandle::release_events`],
    /// and says which this connection was sent so far.
    pub fn hold_events(&self) -> Option<SentRange> {
        let mut cursor = lock(&self.events);
        cursor.held.get_or_insert_with(Vec::new);
        Some(SentRange {
            from: cursor.from?,
            last: cursor.last?,
        })
    }

    /// Sends the answer to a `SYNC`, then the events held back meanwhile
    /// that it did not carry, and lets live events through again.
    pub fn release_events(&self, reply: &ServerFrame, replayed: Option<Replayed>) {
        let mut cursor = lock(&self.events);
        let held = cursor.held.take().unwrap_or_default();
        if let Some(replayed) = replayed {
            if let Some(after) = replayed.after {
                let first = EventId {
                    ms: after.ms,
                    seq: after.seq.saturating_add(1),
                };
                cursor.from = Some(cursor.from.map_or(first, |from| from.min(first)));
                cursor.last = Some(cursor.last.map_or(replayed.upto, |l| l.max(replayed.upto)));
            }
        }
        self.send(reply);
        self.send_in_order(&mut cursor, held);
    }

    /// Sends the kept events this connection missed while this replica was
    /// not listening (see [`crate::catch_up`]), oldest first, then the live
    /// events held back meanwhile, and lets live events through again.
    pub fn release_caught_up(&self, missed: Vec<Pushed>) {
        let mut cursor = lock(&self.events);
        let held = cursor.held.take().unwrap_or_default();
        self.send_in_order(&mut cursor, missed.into_iter().chain(held));
    }

    /// Sends those of `events` (kept ones, in id order) this connection has
    /// not had yet, under the cursor's lock.
    fn send_in_order(&self, cursor: &mut EventCursor, events: impl IntoIterator<Item = Pushed>) {
        for event in events {
            let id = event.id.unwrap_or_default();
            if cursor.last.is_some_and(|last| id <= last) {
                continue;
            }
            if !self.send_frame(&event.frame) {
                break;
            }
            cursor.from.get_or_insert(id);
            cursor.last = Some(id);
        }
    }

    /// Closes the connection with this code: the close frame goes after
    /// everything already queued, and the connection stops reading.
    pub fn close(&self, code: u16, reason: &'static str) {
        // If it is refused the connection is being dropped anyway.
        let _ = self.sink.push(&Frame::close(code, reason));
        self.closed.cancel();
    }

    fn cut_off_too_slow(&self) {
        info!(
            connection = self.id,
            "disconnecting a client that reads too slowly"
        );
        metrics::counter!("switchyard_gateway_slow_clients_closed_total").increment(1);
        self.sink.cut_off(&Frame::close(
            close_code::RECONNECT_AND_SYNC,
            "reading too slowly",
        ));
        self.closed.cancel();
    }

    /// The identity this connection acts as, if its session has not expired.
    pub fn identity(&self) -> Option<Identity> {
        let session = lock(&self.session);
        session
            .as_ref()
            .filter(|s| s.expires_at_ms > now_ms())
            .map(|s| s.identity.clone())
    }

    pub(crate) fn new(id: u64, sink: Arc<dyn FrameSink>) -> ConnectionHandle {
        ConnectionHandle {
            id,
            sink,
            session: Mutex::new(None),
            events: Mutex::new(EventCursor::default()),
            closed: CancellationToken::new(),
        }
    }

    pub(crate) fn session(&self) -> Option<Session> {
        lock(&self.session).clone()
    }

    pub(crate) fn set_session(&self, session: Option<Session>) -> Option<Session> {
        // What was sent to another session says nothing of this one.
        *lock(&self.events) = EventCursor::default();
        std::mem::replace(&mut *lock(&self.session), session)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The session is replaced in one step; a panic elsewhere cannot leave it
    // half-written, so a poisoned lock is still safe to use.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
