//! Centrifugo's JSON client protocol over WebSocket
//! (`/connection/websocket`): `connect` with an HS256 JWT naming the user,
//! `subscribe`, and `publish` by the client into a namespace that allows it.
//! Pushes arrive as `{"push":{"channel":..,"pub":{"data":..}}}`; a frame may
//! hold several newline-separated replies and pushes.
//!
//! The server pings with an empty object `{}` and expects one back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::Message;

use super::{Conn, Dest, Other, Protocol, Stamp, Topology, request};
use crate::dial::{Dialer, Ws};
use crate::ledger::Outcome;
use crate::metrics::Failure;

/// Command ids of measured messages: this plus the stamp id, above the ids
/// set-up commands count up from, and within the protocol's 32 bits.
const MESSAGE_ID_BASE: u64 = 1 << 31;

/// The namespace the server's configuration opens for client publishing.
pub const NAMESPACE: &str = "lg";

#[derive(Debug)]
pub struct Centrifugo {
    secret: String,
    /// Unique per run, so rooms of an earlier run are not reused.
    run_id: String,
    next_id: AtomicU64,
}

impl Centrifugo {
    pub fn new(secret: String, run_id: String) -> Self {
        Centrifugo {
            secret,
            run_id,
            next_id: AtomicU64::new(1),
        }
    }

    fn command_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn user_channel(&self, user: usize) -> String {
        format!("{NAMESPACE}:u-{}-{user}", self.run_id)
    }

    fn room_channel(&self, room: usize) -> String {
        format!("{NAMESPACE}:r-{}-{room}", self.run_id)
    }

    /// An HS256 JWT whose subject is the user.
    pub fn token(&self, user: usize) -> String {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 24 * 3600;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims =
            URL_SAFE_NO_PAD.encode(json!({"sub": format!("user-{user}"), "exp": exp}).to_string());
        let signing_input = format!("{header}.{claims}");
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    async fn command(&self, ws: &mut Ws, body: Value) -> Result<Value, Failure> {
        let id = self.command_id();
        let mut frame = body;
        frame["id"] = json!(id);
        request(self, ws, Message::text(frame.to_string()), |text| {
            text.lines().find_map(|line| {
                let value: Value = serde_json::from_str(line).ok()?;
                if value["id"].as_u64() != Some(id) {
                    return None;
                }
                Some(match value.get("error") {
                    Some(error) => Err(Failure::new(
                        format!("centrifugo_{}", error["code"]),
                        error["message"].as_str().unwrap_or_default().to_owned(),
                    )),
                    None => Ok(value),
                })
            })
        })
        .await
    }

    async fn subscribe(&self, ws: &mut Ws, channel: String) -> Result<(), Failure> {
        self.command(ws, json!({"subscribe": {"channel": channel}}))
            .await
            .map(drop)
    }
}

impl Protocol for Centrifugo {
    async fn prepare(&mut self, _users: usize, _dialer: &Dialer) -> anyhow::Result<()> {
        Ok(())
    }

    async fn login(&self, ws: &mut Ws, user: usize) -> Result<(), Failure> {
        self.command(
            ws,
            json!({"connect": {"token": self.token(user), "name": "loadgen"}}),
        )
        .await?;
        self.subscribe(ws, self.user_channel(user)).await
    }

    async fn wire(
        &mut self,
        mut conns: Vec<Conn>,
        topology: &Topology,
    ) -> anyhow::Result<Vec<Conn>> {
        let mut room_of = vec![None; conns.iter().map(|c| c.index + 1).max().unwrap_or(0)];
        for (r, members) in topology.rooms.iter().enumerate() {
            for &m in members {
                if let Some(slot) = room_of.get_mut(m) {
                    *slot = Some(r);
                }
            }
        }
        let this = &*self;
        let joins = conns.iter_mut().filter_map(|conn| {
            let r = room_of.get(conn.index).copied().flatten()?;
            Some(async move { this.subscribe(&mut conn.ws, this.room_channel(r)).await })
        });
        for result in futures_util::future::join_all(joins).await {
            result?;
        }
        Ok(conns)
    }

    fn message(&self, dest: Dest, stamp: &Stamp) -> Message {
        let channel = match dest {
            Dest::User(user) => self.user_channel(user),
            Dest::Room(room) => self.room_channel(room),
        };
        // A measured message's reply names it by its id; probes need no reply.
        let id = if stamp.is_probe() || stamp.id >= MESSAGE_ID_BASE {
            self.command_id()
        } else {
            MESSAGE_ID_BASE + stamp.id
        };
        Message::text(
            json!({"id": id, "publish": {"channel": channel, "data": {"m": stamp.marker()}}})
                .to_string(),
        )
    }

    fn outcomes(&self, text: &str, mut found: impl FnMut(u64, Outcome)) -> usize {
        let mut count = 0;
        for line in text.lines().filter(|l| l.starts_with("{\"id\":")) {
            let Ok(value) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let Some(id) = value["id"].as_u64().filter(|&id| id >= MESSAGE_ID_BASE) else {
                continue;
            };
            let outcome = if value.get("error").is_some() {
                Outcome::Refused
            } else {
                Outcome::Acked
            };
            found(id - MESSAGE_ID_BASE, outcome);
            count += 1;
        }
        count
    }

    fn batched_ping_reply(&self, text: &str) -> Option<Message> {
        // A ping left unanswered gets the connection closed ("no pong").
        text.lines()
            .any(|line| line.trim() == "{}")
            .then(|| Message::text("{}"))
    }

    fn classify(&self, text: &str) -> Other {
        for line in text.lines() {
            let line = line.trim();
            if line == "{}" {
                return Other::Reply(Message::text("{}"));
            }
            if line.contains("\"error\"") {
                let value: Value = serde_json::from_str(line).unwrap_or_default();
                return Other::Error(format!("centrifugo_{}", value["error"]["code"]));
            }
        }
        Other::Ignore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_signed_with_the_secret() {
        let c = Centrifugo::new("secret".into(), "r".into());
        let token = c.token(5);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64"))
                .expect("json");
        assert_eq!(claims["sub"], "user-5");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").expect("key");
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("base64"))
            .expect("valid signature");
    }

    #[test]
    fn empty_objects_are_pings_and_errors_are_named() {
        let c = Centrifugo::new("s".into(), "r".into());
        assert_eq!(c.classify("{}"), Other::Reply(Message::text("{}")));
        assert_eq!(
            c.classify("{\"id\":3,\"error\":{\"code\":103,\"message\":\"permission denied\"}}"),
            Other::Error("centrifugo_103".into())
        );
        assert_eq!(c.classify("{\"id\":4,\"publish\":{}}"), Other::Ignore);
        let batched = "{\"push\":{\"pub\":{\"data\":{\"m\":\"#LG1.2.3#\"}}}}\n{}";
        assert_eq!(c.batched_ping_reply(batched), Some(Message::text("{}")));
        assert_eq!(c.batched_ping_reply("{\"push\":{}}"), None);
    }

    #[test]
    fn publish_replies_name_their_message() {
        let c = Centrifugo::new("s".into(), "r".into());
        let stamp = Stamp {
            id: 12,
            from: 0,
            at_us: 1,
        };
        let Message::Text(frame) = c.message(Dest::Room(0), &stamp) else {
            panic!("a text frame");
        };
        let id = serde_json::from_str::<Value>(frame.as_str()).expect("json")["id"].clone();
        let replies = format!(
            "{{\"id\":{id},\"publish\":{{}}}}\n{{\"id\":{},\"error\":{{\"code\":108}}}}\n{{\"id\":3}}",
            MESSAGE_ID_BASE + 13
        );
        let mut seen = Vec::new();
        assert_eq!(c.outcomes(&replies, |id, o| seen.push((id, o))), 2);
        assert_eq!(seen, [(12, Outcome::Acked), (13, Outcome::Refused)]);
    }
}
