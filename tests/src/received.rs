//! What a client received of the kept events, as a client keeping a
//! position would: live, then after a reconnect through `SYNC`; for tests
//! that check nothing was missed or repeated.

use std::collections::HashSet;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::chat::{EVENT_TIMEOUT, QUIET};
use crate::{Client, assert_status};

/// The messages one user's client has, by position, and the newest
/// position it had from the server.
pub struct Received {
    pub position: String,
    pub messages: Vec<(EventId, String)>,
}

/// A position's event id, comparable: `<epoch>:<ms>-<seq>`.
pub type EventId = (u64, u64);

pub fn event_id(position: &str) -> EventId {
    let id = position.rsplit(':').next().unwrap_or_default();
    let (ms, seq) = id.split_once('-').unwrap_or_default();
    (
        ms.parse().expect("a position's ms"),
        seq.parse().expect("a position's seq"),
    )
}

impl Received {
    /// Asks where things stand, as a client does once it is logged in.
    pub async fn start(client: &mut Client) -> Received {
        client.frames_within(QUIET).await;
        let reply = client.request(json!({"action": "SYNC"})).await;
        assert_status(&reply, "SYNCED");
        Received {
            position: reply["position"].as_str().expect("a position").to_owned(),
            messages: Vec::new(),
        }
    }

    pub fn note(&mut self, frame: &Value) {
        let Some(position) = frame["position"].as_str() else {
            return;
        };
        if event_id(position) > event_id(&self.position) {
            self.position = position.to_owned();
        }
        if frame["rocketStatus"] == "NEW_MESSAGE" {
            let id = frame["messageId"].as_str().unwrap_or_default().to_owned();
            self.messages.push((event_id(position), id));
        }
    }

    pub async fn read_until_closed(&mut self, client: &mut Client) {
        client.expect_close(EVENT_TIMEOUT).await;
        for frame in client.take_buffered() {
            self.note(&frame);
        }
    }

    /// `SYNC`s from the newest position had, on a new connection.
    pub async fn sync(&mut self, client: &mut Client) {
        let reply = client
            .request(json!({"action": "SYNC", "since": self.position}))
            .await;
        assert_status(&reply, "SYNCED");
        for frame in client.take_buffered() {
            self.note(&frame);
        }
        for event in reply["events"].as_array().into_iter().flatten() {
            self.note(event);
        }
    }

    /// Takes in what arrives live until things are quiet; false if the
    /// server closed the connection meanwhile.
    pub async fn take_in(&mut self, client: &mut Client) -> bool {
        let open = client.buffer_until(Instant::now() + QUIET).await;
        for frame in client.take_buffered() {
            self.note(&frame);
        }
        open
    }

    /// The message ids had, in position order; each once, or the test fails.
    pub fn in_order(&self) -> Vec<String> {
        let mut messages = self.messages.clone();
        messages.sort();
        let unique: HashSet<&String> = messages.iter().map(|(_, id)| id).collect();
        assert_eq!(
            unique.len(),
            messages.len(),
            "a message twice: {messages:?}"
        );
        messages.into_iter().map(|(_, id)| id).collect()
    }
}
