//! One client connection as the rest of the gateway sees it: where its
//! frames go, and the session it acts as.

use std::sync::{Arc, Mutex, MutexGuard};

use shared_proto::client::ServerFrame;
use shared_proto::envelope::Identity;
use shared_proto::now_ms;
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
                info!(
                    connection = self.id,
                    "disconnecting a client that reads too slowly"
                );
                metrics::counter!("switchyard_gateway_slow_clients_closed_total").increment(1);
                self.sink
                    .cut_off(&Frame::close(close_code::TOO_SLOW, "reading too slowly"));
                self.closed.cancel();
                false
            }
            Err(Refused::Gone) => false,
        }
    }

    /// Closes the connection with this code: the close frame goes after
    /// everything already queued, and the connection stops reading.
    pub fn close(&self, code: u16, reason: &'static str) {
        // If it is refused the connection is being dropped anyway.
        let _ = self.sink.push(&Frame::close(code, reason));
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
            closed: CancellationToken::new(),
        }
    }

    pub(crate) fn session(&self) -> Option<Session> {
        lock(&self.session).clone()
    }

    pub(crate) fn set_session(&self, session: Option<Session>) -> Option<Session> {
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
