//! The wire protocols the load generator speaks, one module each, behind one
//! trait so that every scenario runs unchanged against each server.
//!
//! Every message the load generator sends carries a marker,
//! `#LG<id>.<sender>.<stamp>#`, in its text. Receivers find markers by
//! scanning the frame's text, whatever the protocol wraps around them, so a
//! receipt costs no JSON parsing and frames that batch several messages
//! (Centrifugo) count each one.

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::dial::Ws;
use crate::ledger::Outcome;
use crate::metrics::Failure;

pub mod bare;
pub mod centrifugo;
pub mod switchyard;

/// Which server a run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// This product's client protocol (REGISTER, FASTLOGIN, SEND_MESSAGE, ...).
    Switchyard,
    /// Centrifugo's JSON client protocol (connect, subscribe, publish).
    Centrifugo,
    /// The bare broadcast server of this crate (`bare-broadcast`): the ceiling.
    Bare,
}

impl Kind {
    /// The request path for targets given without one.
    pub fn default_path(self) -> &'static str {
        match self {
            Kind::Switchyard | Kind::Bare => "/",
            Kind::Centrifugo => "/connection/websocket",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Switchyard => "switchyard",
            Kind::Centrifugo => "centrifugo",
            Kind::Bare => "bare",
        }
    }
}

/// A message's identity, carried in its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub id: u64,
    /// The sending connection's index.
    pub from: u32,
    /// When it was (meant to be) sent, in [`crate::clock`] microseconds.
    pub at_us: u64,
}

/// Set in the id of the probes that check the wiring before measuring.
pub const PROBE_BIT: u64 = 1 << 62;

/// This process's tag in its markers: a server still delivering what an
/// earlier run sent (late, after an overload) reaches the same users, and
/// those messages are not this run's.
fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("{:x}", nanos ^ std::process::id().rotate_left(16))
    })
}

impl Stamp {
    pub fn marker(&self) -> String {
        format!("#LG{}:{}.{}.{}#", run_tag(), self.id, self.from, self.at_us)
    }

    pub fn is_probe(&self) -> bool {
        self.id & PROBE_BIT != 0
    }
}

/// Calls `found` for every marker of this process in `text` (those of
/// another run are passed over); returns how many there were.
pub fn scan_markers(text: &str, mut found: impl FnMut(Stamp)) -> usize {
    let mut count = 0;
    let mut rest = text;
    let ours = format!("#LG{}:", run_tag());
    while let Some(start) = rest.find(ours.as_str()) {
        rest = &rest[start + ours.len()..];
        let Some(end) = rest.find('#') else { break };
        let mut parts = rest[..end].splitn(3, '.');
        let parsed = (|| {
            Some(Stamp {
                id: parts.next()?.parse().ok()?,
                from: parts.next()?.parse().ok()?,
                at_us: parts.next()?.parse().ok()?,
            })
        })();
        if let Some(stamp) = parsed {
            found(stamp);
            count += 1;
            rest = &rest[end + 1..];
        }
    }
    count
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// To a user (by index), as one-to-one chat.
    User(usize),
    /// To a room (by index), as group chat.
    Room(usize),
}

/// One open, logged-in connection.
#[derive(Debug)]
pub struct Conn {
    pub index: usize,
    /// The user (by index) it is logged in as.
    pub user: usize,
    pub ws: Ws,
}

/// Who talks to whom, by connection index.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Members of each room; the first is its creator where that matters.
    pub rooms: Vec<Vec<usize>>,
    /// Pairs of friends for one-to-one chat.
    pub pairs: Vec<(usize, usize)>,
}

/// What a frame without a marker means.
#[derive(Debug, PartialEq)]
pub enum Other {
    /// Nothing to do (a reply, an event the scenario does not count).
    Ignore,
    /// Answer with this frame (an application-level ping).
    Reply(Message),
    /// The server reported an error of this kind.
    Error(String),
}

/// A server protocol, from sign-up to the frames of a message.
///
/// `prepare` and `wire` run once per run and may keep state (accounts,
/// group ids); the rest is called from many tasks at once.
pub trait Protocol: Send + Sync + 'static {
    /// Gets `users` identities ready (accounts, tokens) before connecting.
    fn prepare(
        &mut self,
        users: usize,
        dialer: &crate::dial::Dialer,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Logs an open socket in as `user`, and listens to that user's messages.
    fn login(&self, ws: &mut Ws, user: usize) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Sets up rooms and friendships among open connections; returns them all.
    fn wire(
        &mut self,
        conns: Vec<Conn>,
        topology: &Topology,
    ) -> impl Future<Output = anyhow::Result<Vec<Conn>>> + Send;

    /// The frame connection `from` sends for a message.
    fn message(&self, dest: Dest, stamp: &Stamp) -> Message;

    /// What a received text frame without a marker means.
    fn classify(&self, text: &str) -> Other;

    /// The answer to an application-level ping batched into a frame that
    /// also carries messages, if the protocol batches them (Centrifugo does).
    fn batched_ping_reply(&self, _text: &str) -> Option<Message> {
        None
    }

    /// Calls `found` with the stamp id and outcome of every answer to a
    /// measured message in `text`, for protocols that answer the sender
    /// (the bare server does not); returns how many there were.
    fn outcomes(&self, _text: &str, _found: impl FnMut(u64, Outcome)) -> usize {
        0
    }
}

/// How long a set-up request may wait for its reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `frame` and reads until `reply` recognises the answer, answering
/// application pings with `classify` meanwhile; other frames are dropped
/// (this is for set-up, before anything is measured).
pub async fn request<P: Protocol, T>(
    protocol: &P,
    ws: &mut Ws,
    frame: Message,
    mut reply: impl FnMut(&str) -> Option<Result<T, Failure>>,
) -> Result<T, Failure> {
    ws.send(frame)
        .await
        .map_err(|e| Failure::new("send", e.to_string()))?;
    let wait = async {
        loop {
            let message = match ws.next().await {
                None => return Err(Failure::new("closed", "the server closed the connection")),
                Some(Err(e)) => return Err(Failure::new("closed", e.to_string())),
                Some(Ok(message)) => message,
            };
            let Message::Text(text) = message else {
                continue;
            };
            if let Some(answer) = reply(text.as_str()) {
                return answer;
            }
            if let Other::Reply(pong) = protocol.classify(text.as_str()) {
                ws.send(pong)
                    .await
                    .map_err(|e| Failure::new("send", e.to_string()))?;
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, wait)
        .await
        .map_err(|_| {
            Failure::new(
                "reply_timeout",
                format!("no reply within {REQUEST_TIMEOUT:?}"),
            )
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_wherever_they_are() {
        let a = Stamp {
            id: 7,
            from: 3,
            at_us: 123_456,
        };
        let b = Stamp {
            id: PROBE_BIT | 1,
            from: 0,
            at_us: 9,
        };
        let frame = format!(
            "{{\"push\":{{\"data\":{{\"m\":\"{}\"}}}}}}\n{{\"text\":\"{}\"}}",
            a.marker(),
            b.marker()
        );
        let mut seen = Vec::new();
        assert_eq!(scan_markers(&frame, |s| seen.push(s)), 2);
        assert_eq!(seen, vec![a, b]);
        assert!(seen[1].is_probe());
        assert_eq!(
            scan_markers("{\"rocketStatus\":\"MESSAGE_SENT\"}", |_| {}),
            0
        );
        assert_eq!(scan_markers("#LGx.1.2# #LG", |_| {}), 0);
    }

    #[test]
    fn another_runs_markers_are_not_this_runs() {
        // A message an earlier run sent, delivered late to the same users.
        let earlier = "{\"text\":\"#LGearlier:7.3.123456#\"}";
        assert_eq!(scan_markers(earlier, |_| {}), 0);
    }
}
