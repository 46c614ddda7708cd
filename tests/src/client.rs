//! A WebSocket client that speaks the client protocol the way the existing
//! browser clients do, with the checks a test needs.
//!
//! Frames are JSON objects. Pings and pongs are skipped. Frames that arrive
//! while the client waits for something else (a reply to another request,
//! a close) are buffered in order, so pushed events are never lost; the
//! reading methods take from that buffer first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub use tokio_tungstenite::tungstenite::protocol::CloseFrame;
pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long [`Client::request`] waits for its reply: longer than the
/// gateway's default action timeout, so that a `TIMEOUT` reply is seen
/// rather than a test-side timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What one read from the socket produced.
enum Incoming {
    Json(Value),
    Closed(Option<CloseFrame>),
    TimedOut,
}

/// One WebSocket connection to a gateway.
#[derive(Debug)]
pub struct Client {
    socket: Socket,
    url: String,
    /// Frames read while waiting for something else, oldest first.
    buffered: VecDeque<Value>,
    /// Makes `requestId`s unique across every client of the test binary.
    id_prefix: String,
    next_request: u64,
    /// Every text frame received, exactly as sent, once
    /// [`record_raw_frames`](Self::record_raw_frames) is called.
    raw_frames: Option<Vec<String>>,
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:41234/`) without an `Origin` header.
    ///
    /// # Panics
    /// If the upgrade fails; use [`try_connect`](Self::try_connect) to check a refusal.
    pub async fn connect(url: &str) -> Self {
        Self::try_connect(url, None)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connection to {url} failed: {e}"))
    }

    /// Connects with an `Origin` header, as a browser does.
    ///
    /// # Panics
    /// If the upgrade fails.
    pub async fn connect_with_origin(url: &str, origin: &str) -> Self {
        Self::try_connect(url, Some(origin))
            .await
            .unwrap_or_else(|e| {
                panic!("WebSocket connection to {url} with Origin {origin} failed: {e}")
            })
    }

    /// Connects, returning the handshake error instead of panicking, so a test
    /// can check that an upgrade is refused (e.g. an `Origin` not allowed).
    ///
    /// # Panics
    /// If the URL or origin is malformed, or the attempt takes longer than 10 s.
    pub async fn try_connect(url: &str, origin: Option<&str>) -> Result<Self, tungstenite::Error> {
        let mut request = url
            .into_client_request()
            .unwrap_or_else(|e| panic!("{url} is not a WebSocket URL: {e}"));
        if let Some(origin) = origin {
            let value = HeaderValue::from_str(origin)
                .unwrap_or_else(|e| panic!("{origin:?} is not a valid Origin header: {e}"));
            request.headers_mut().insert("Origin", value);
        }
        let (socket, _response) = tokio::time::timeout(CONNECT_TIMEOUT, connect_async(request))
            .await
            .unwrap_or_else(|_| {
                panic!("connecting to {url} took longer than {CONNECT_TIMEOUT:?}")
            })?;
        static CLIENTS: AtomicU64 = AtomicU64::new(0);
        let n = CLIENTS.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            socket,
            url: url.to_owned(),
            buffered: VecDeque::new(),
            id_prefix: format!("c{n}"),
            next_request: 0,
            raw_frames: None,
        })
    }

    /// From now on, keeps every text frame received as the bytes the server
    /// sent, for tests of the wire format.
    pub fn record_raw_frames(&mut self) {
        self.raw_frames.get_or_insert_with(Vec::new);
    }

    /// The text frames received since [`record_raw_frames`](Self::record_raw_frames),
    /// oldest first, exactly as sent.
    pub fn raw_frames(&self) -> &[String] {
        self.raw_frames.as_deref().unwrap_or_default()
    }

    /// The URL this client connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one JSON value as a text frame.
    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a text frame as is (e.g. the legacy `Connection Established`).
    pub async fn send_text(&mut self, text: &str) {
        self.send_message(Message::text(text)).await;
    }

    /// Sends any frame (binary, oversized, close...).
    ///
    /// # Panics
    /// If the connection is already closed.
    pub async fn send_message(&mut self, message: Message) {
        self.socket
            .send(message)
            .await
            .unwrap_or_else(|e| panic!("sending a frame to {}: {e}", self.url));
    }

    /// Sends `request` with a fresh `requestId` and returns the frame that
    /// echoes it, waiting at most [`REQUEST_TIMEOUT`]. Frames with another or
    /// no `requestId` are kept for [`next_event`](Self::next_event).
    ///
    /// # Panics
    /// If `request` is not a JSON object, the connection closes, or no reply comes.
    pub async fn request(&mut self, request: Value) -> Value {
        self.request_with_timeout(request, REQUEST_TIMEOUT).await
    }

    /// [`request`](Self::request) with a chosen time limit.
    pub async fn request_with_timeout(&mut self, mut request: Value, limit: Duration) -> Value {
        self.next_request += 1;
        let id = format!("{}-r{}", self.id_prefix, self.next_request);
        let action = request["action"].as_str().unwrap_or("?").to_owned();
        request
            .as_object_mut()
            .expect("a request is a JSON object")
            .insert("requestId".to_owned(), Value::String(id.clone()));
        self.send_json(request).await;

        let deadline = Instant::now() + limit;
        loop {
            match self.read(deadline).await {
                Incoming::Json(frame) if frame["requestId"].as_str() == Some(id.as_str()) => {
                    return frame;
                }
                Incoming::Json(other) => self.buffered.push_back(other),
                Incoming::Closed(frame) => panic!(
                    "{action} (requestId {id}): the server closed the connection ({}) before replying",
                    describe_close(frame.as_ref())
                ),
                Incoming::TimedOut => panic!(
                    "{action} (requestId {id}): no reply within {limit:?}; frames received meanwhile: {:?}",
                    self.buffered
                ),
            }
        }
    }

    /// Sends every request at once, each with a fresh `requestId`, then
    /// collects their replies, which may come in any order; returns them in
    /// the order of `requests`. This is how one connection has several
    /// actions in flight together. Other frames are kept for
    /// [`next_event`](Self::next_event).
    ///
    /// # Panics
    /// If a request is not a JSON object, the connection closes, or not every
    /// reply has come within `limit`.
    pub async fn request_all(&mut self, requests: Vec<Value>, limit: Duration) -> Vec<Value> {
        let mut ids = Vec::with_capacity(requests.len());
        for mut request in requests {
            self.next_request += 1;
            let id = format!("{}-r{}", self.id_prefix, self.next_request);
            request
                .as_object_mut()
                .expect("a request is a JSON object")
                .insert("requestId".to_owned(), Value::String(id.clone()));
            self.send_json(request).await;
            ids.push(id);
        }

        let mut replies: Vec<Option<Value>> = vec![None; ids.len()];
        let mut missing = ids.len();
        let deadline = Instant::now() + limit;
        while missing > 0 {
            match self.read(deadline).await {
                Incoming::Json(frame) => {
                    let slot = frame["requestId"]
                        .as_str()
                        .and_then(|id| ids.iter().position(|wanted| wanted == id));
                    match slot {
                        Some(i) if replies[i].is_none() => {
                            replies[i] = Some(frame);
                            missing -= 1;
                        }
                        _ => self.buffered.push_back(frame),
                    }
                }
                Incoming::Closed(frame) => panic!(
                    "the server closed the connection ({}) with {missing} of {} replies missing",
                    describe_close(frame.as_ref()),
                    ids.len()
                ),
                Incoming::TimedOut => panic!(
                    "{missing} of {} replies missing after {limit:?}; other frames received meanwhile: {:?}",
                    ids.len(),
                    self.buffered
                ),
            }
        }
        replies.into_iter().flatten().collect()
    }

    /// The next frame, buffered or new, waiting at most `limit`.
    ///
    /// # Panics
    /// If nothing arrives in time or the connection closes.
    pub async fn recv_json(&mut self, limit: Duration) -> Value {
        match self.next_event(limit).await {
            Some(frame) => frame,
            None => panic!("no frame from {} within {limit:?}", self.url),
        }
    }

    /// The next frame, buffered or new, or `None` if none arrives within
    /// `limit` (so a test can also check that nothing is pushed).
    ///
    /// # Panics
    /// If the connection closes.
    pub async fn next_event(&mut self, limit: Duration) -> Option<Value> {
        if let Some(frame) = self.buffered.pop_front() {
            return Some(frame);
        }
        match self.read(Instant::now() + limit).await {
            Incoming::Json(frame) => Some(frame),
            Incoming::TimedOut => None,
            Incoming::Closed(frame) => panic!(
                "the server closed the connection ({}) while an event was awaited",
                describe_close(frame.as_ref())
            ),
        }
    }

    /// The first frame, buffered or new, whose `rocketStatus` is `status`;
    /// other frames stay buffered in order.
    ///
    /// # Panics
    /// If none arrives within `limit` or the connection closes.
    pub async fn expect_event(&mut self, status: &str, limit: Duration) -> Value {
        if let Some(pos) = self
            .buffered
            .iter()
            .position(|f| f["rocketStatus"] == status)
        {
            return self
                .buffered
                .remove(pos)
                .expect("the position was just found in the buffer");
        }
        let deadline = Instant::now() + limit;
        loop {
            match self.read(deadline).await {
                Incoming::Json(frame) if frame["rocketStatus"] == status => return frame,
                Incoming::Json(other) => self.buffered.push_back(other),
                Incoming::Closed(frame) => panic!(
                    "the server closed the connection ({}) while {status} was awaited",
                    describe_close(frame.as_ref())
                ),
                Incoming::TimedOut => panic!(
                    "no {status} within {limit:?}; frames received meanwhile: {:?}",
                    self.buffered
                ),
            }
        }
    }

    /// Waits for the server to close the connection and returns its close
    /// frame (`None` if it closed without one). Frames received meanwhile are
    /// buffered.
    ///
    /// # Panics
    /// If the connection is still open after `limit`.
    pub async fn expect_close(&mut self, limit: Duration) -> Option<CloseFrame> {
        let deadline = Instant::now() + limit;
        loop {
            match self.read(deadline).await {
                Incoming::Json(frame) => self.buffered.push_back(frame),
                Incoming::Closed(frame) => return frame,
                Incoming::TimedOut => panic!(
                    "the connection to {} was still open after {limit:?}; frames received meanwhile: {:?}",
                    self.url, self.buffered
                ),
            }
        }
    }

    /// Buffers every frame that arrives until `deadline`; false if the
    /// server closed the connection meanwhile (frames before the close stay
    /// buffered). For a test that sends without waiting for each answer.
    pub async fn buffer_until(&mut self, deadline: Instant) -> bool {
        loop {
            match self.read(deadline).await {
                Incoming::Json(frame) => self.buffered.push_back(frame),
                Incoming::Closed(_) => return false,
                Incoming::TimedOut => return true,
            }
        }
    }

    /// Takes every frame buffered so far, oldest first, without reading
    /// the socket: e.g. what arrived before the server closed the connection.
    pub fn take_buffered(&mut self) -> Vec<Value> {
        self.buffered.drain(..).collect()
    }

    /// Closes the connection politely (close code 1000).
    pub async fn close(mut self) {
        // The server may already have gone; closing is best effort.
        let _ = self.socket.close(None).await;
    }

    /// One JSON frame, a close, or the deadline; pings and pongs are skipped.
    async fn read(&mut self, deadline: Instant) -> Incoming {
        loop {
            let message = match timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Incoming::TimedOut,
                Ok(None) => return Incoming::Closed(None),
                Ok(Some(Err(e))) => match e {
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ) => return Incoming::Closed(None),
                    tungstenite::Error::Io(_) => return Incoming::Closed(None),
                    other => panic!("reading from {}: {other}", self.url),
                },
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    let value = serde_json::from_str(text.as_str()).unwrap_or_else(|e| {
                        panic!(
                            "{} sent a text frame that is not JSON ({e}): {}",
                            self.url,
                            text.as_str()
                        )
                    });
                    if let Some(raw) = self.raw_frames.as_mut() {
                        raw.push(text.as_str().to_owned());
                    }
                    return Incoming::Json(value);
                }
                Message::Close(frame) => return Incoming::Closed(frame),
                Message::Binary(bytes) => panic!(
                    "{} sent a binary frame of {} bytes; the protocol uses text frames only",
                    self.url,
                    bytes.len()
                ),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(frame) => format!(
            "code {}, reason {:?}",
            u16::from(frame.code),
            frame.reason.as_str()
        ),
        None => "no close frame".to_owned(),
    }
}
