//! A bare WebSocket broadcast server: the ceiling a gateway is compared with.
//!
//! No bus, no storage, no login: a client sends `{"join": "<room>"}` (answered
//! `{"joined": "<room>"}`) and `{"room": "...", "text": ..., "id": ...}`, which
//! is forwarded as is to every other connection in the room.
//!
//! It is a tokio-tungstenite server written the way the library's examples
//! write one: each connection has a reader and a writer task with a bounded
//! outbox. It uses the gateway's read buffer and frame limits
//! (`gateway/src/connection.rs`) and, like the gateway, turns Nagle's
//! algorithm off. The gateway's write path differs: it writes a frame from
//! the task that produced it while the socket has room, without a writer task
//! (`gateway/src/socket_writer.rs`), so per frame it can do less than this.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The gateway's default frame limit (`max_frame_bytes`).
const MAX_FRAME: usize = 64 * 1024;
/// The gateway's default outbox (`outbox_frames`).
const OUTBOX: usize = 256;
/// The gateway's read buffer per connection (`gateway/src/connection.rs`).
const READ_BUFFER: usize = 1024;

/// Bare broadcast WebSocket server: rooms, no bus, no storage.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// WebSocket read buffer per connection, in bytes (default: the gateway's).
    #[arg(long, default_value_t = READ_BUFFER)]
    read_buffer_size: usize,
}

/// The gateway's buffer settings, as set in `gateway/src/connection.rs`.
fn config(read_buffer_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer_size)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_FRAME * 4)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
}

type Outbox = mpsc::Sender<Utf8Bytes>;

#[derive(Default)]
struct Rooms {
    members: Mutex<HashMap<String, HashMap<u64, Outbox>>>,
}

impl Rooms {
    fn join(&self, room: &str, id: u64, outbox: Outbox) {
        self.lock()
            .entry(room.to_owned())
            .or_default()
            .insert(id, outbox);
    }

    fn leave(&self, rooms: &[String], id: u64) {
        let mut members = self.lock();
        for room in rooms {
            if let Some(room_members) = members.get_mut(room) {
                room_members.remove(&id);
                if room_members.is_empty() {
                    members.remove(room);
                }
            }
        }
    }

    /// Queues `frame` for every member but `from`; slow readers are left to
    /// their full outbox (the gateway disconnects them; here they just miss it).
    fn broadcast(&self, room: &str, from: u64, frame: &Utf8Bytes) {
        let targets: Vec<Outbox> = match self.lock().get(room) {
            Some(members) => members
                .iter()
                .filter(|(id, _)| **id != from)
                .map(|(_, outbox)| outbox.clone())
                .collect(),
            None => return,
        };
        for outbox in targets {
            let _ = outbox.try_send(frame.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Outbox>>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(default)]
    join: Option<String>,
    #[serde(default)]
    room: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(&cli.listen).await?;
    eprintln!("bare-broadcast listening on {}", listener.local_addr()?);
    let rooms = Arc::new(Rooms::default());
    let next_id = AtomicU64::new(1);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve(stream, id, rooms.clone(), config(cli.read_buffer_size)));
                }
                Err(e) => {
                    // Out of file descriptors, usually: back off instead of spinning.
                    eprintln!("bare-broadcast: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn serve(stream: TcpStream, id: u64, rooms: Arc<Rooms>, config: WebSocketConfig) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (outbox, mut inbox) = mpsc::channel::<Utf8Bytes>(OUTBOX);
    // The writer batches whatever is queued into one flush.
    let writer = tokio::spawn(async move {
        while let Some(first) = inbox.recv().await {
            if sink.feed(Message::Text(first)).await.is_err() {
                return;
            }
            while let Ok(more) = inbox.try_recv() {
                if sink.feed(Message::Text(more)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut joined = Vec::new();
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(incoming) = serde_json::from_str::<Incoming>(text.as_str()) else {
            let _ = outbox.try_send(Utf8Bytes::from_static(r#"{"error":"expected JSON"}"#));
            continue;
        };
        if let Some(room) = incoming.join {
            rooms.join(&room, id, outbox.clone());
            let reply = serde_json::json!({"joined": room}).to_string();
            joined.push(room);
            let _ = outbox.try_send(Utf8Bytes::from(reply));
        } else if let Some(room) = incoming.room {
            rooms.broadcast(&room, id, &text);
        }
    }
    rooms.leave(&joined, id);
    drop(outbox);
    let _ = writer.await;
}
