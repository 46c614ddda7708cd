//! The protocol of `bare-broadcast`: `{"join": "<room>"}` (answered with
//! `{"joined": "<room>"}`) and `{"room": "...", "text": ..., "id": ...}`,
//! which the server forwards to every other connection in the room.
//!
//! A user is a room its connections join at login, so one-to-one chat is a
//! message to the peer's room.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{Conn, Dest, Other, Protocol, Stamp, Topology, request};
use crate::dial::{Dialer, Ws};
use crate::metrics::Failure;

#[derive(Debug, Default)]
pub struct Bare;

fn user_room(user: usize) -> String {
    format!("user-{user}")
}

fn room(index: usize) -> String {
    format!("room-{index}")
}

async fn join(protocol: &Bare, ws: &mut Ws, room: String) -> Result<(), Failure> {
    let frame = Message::text(json!({"join": room}).to_string());
    request(protocol, ws, frame, |text| {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        (value["joined"] == room.as_str()).then_some(Ok(()))
    })
    .await
}

impl Protocol for Bare {
    async fn prepare(&mut self, _users: usize, _dialer: &Dialer) -> anyhow::Result<()> {
        Ok(())
    }

    async fn login(&self, ws: &mut Ws, user: usize) -> Result<(), Failure> {
        join(self, ws, user_room(user)).await
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
            Some(async move { join(this, &mut conn.ws, room(r)).await })
        });
        for result in futures_util::future::join_all(joins).await {
            result?;
        }
        Ok(conns)
    }

    fn message(&self, dest: Dest, stamp: &Stamp) -> Message {
        let room = match dest {
            Dest::User(user) => user_room(user),
            Dest::Room(index) => room(index),
        };
        Message::text(json!({"room": room, "text": stamp.marker(), "id": stamp.id}).to_string())
    }

    fn classify(&self, text: &str) -> Other {
        if text.contains("\"error\"") {
            Other::Error("bare_error".into())
        } else {
            Other::Ignore
        }
    }
}
