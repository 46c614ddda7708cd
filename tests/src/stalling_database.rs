//! A relay in front of the database that can stop answering the way a stuck
//! server does: its connections stay open, `hello` and `ping` are still
//! answered (so the driver's monitor sees nothing wrong), and a connection
//! that sends any other command while it is stalled never hears back again,
//! even after the stall ends, like a request held by a server-side deadlock.
//!
//! The database behind it is the test's real FerretDB; only the relay
//! decides what gets through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// OP_MSG, the wire protocol's message for every command.
const OP_MSG: i32 = 2013;
/// Commands a stuck server still answers: the handshake and the monitor's
/// questions, which touch no data.
const ANSWERED_WHILE_STALLED: &[&str] = &[
    "hello",
    "ismaster",
    "isMaster",
    "ping",
    "buildinfo",
    "buildInfo",
    "endSessions",
];

pub struct StallingDatabase {
    addr: SocketAddr,
    shared: Arc<Shared>,
    upstream: watch::Sender<Option<SocketAddr>>,
}

struct Shared {
    stalled: AtomicBool,
    swallowed: AtomicUsize,
}

impl StallingDatabase {
    /// Listens on a free loopback port; connections wait until
    /// [`forward_to`](Self::forward_to) says where the database is.
    pub async fn start() -> StallingDatabase {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the database relay");
        let addr = listener.local_addr().expect("the relay's address");
        let shared = Arc::new(Shared {
            stalled: AtomicBool::new(false),
            swallowed: AtomicUsize::new(0),
        });
        let (upstream, destination) = watch::channel(None);
        tokio::spawn(accept(listener, destination, shared.clone()));
        StallingDatabase {
            addr,
            shared,
            upstream,
        }
    }

    /// The URI a service uses to reach the database through the relay.
    pub fn uri(&self) -> String {
        format!("mongodb://{}", self.addr)
    }

    /// Where the database listens (see `StackBuilder::ferretdb_port`).
    pub fn forward_to(&self, port: u16) {
        self.upstream
            .send_replace(Some(SocketAddr::from(([127, 0, 0, 1], port))));
    }

    /// From now on every command but the handshake's is swallowed, and its
    /// connection stuck for good.
    pub fn stall(&self) {
        self.shared.stalled.store(true, Ordering::SeqCst);
    }

    /// New commands get through again on connections not stuck.
    pub fn recover(&self) {
        self.shared.stalled.store(false, Ordering::SeqCst);
    }

    /// Commands swallowed so far.
    pub fn swallowed(&self) -> usize {
        self.shared.swallowed.load(Ordering::SeqCst)
    }
}

async fn accept(
    listener: TcpListener,
    destination: watch::Receiver<Option<SocketAddr>>,
    shared: Arc<Shared>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let mut destination = destination.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(upstream) = destination
                .wait_for(Option::is_some)
                .await
                .map(|a| a.unwrap())
            else {
                return;
            };
            if let Ok(server) = TcpStream::connect(upstream).await {
                relay(client, server, shared).await;
            }
        });
    }
}

async fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (mut from_client, to_client) = client.into_split();
    let (from_server, mut to_server) = server.into_split();
    let stuck = Arc::new(AtomicBool::new(false));
    let answers = tokio::spawn(pass_answers(from_server, to_client, stuck.clone()));
    while let Some(message) = read_message(&mut from_client).await {
        if stuck.load(Ordering::SeqCst) {
            continue;
        }
        if shared.stalled.load(Ordering::SeqCst)
            && !command_name(&message).is_some_and(|name| ANSWERED_WHILE_STALLED.contains(&name))
        {
            stuck.store(true, Ordering::SeqCst);
            shared.swallowed.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        if to_server.write_all(&message).await.is_err() {
            break;
        }
    }
    // The client hung up: so does everything behind it.
    answers.abort();
}

/// Copies the server's answers to the client until the connection is stuck;
/// then keeps the client's socket open and silent.
async fn pass_answers(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, stuck: Arc<AtomicBool>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await.unwrap_or(0);
        if stuck.load(Ordering::SeqCst) {
            if read == 0 {
                // Hold the client's half open until the relay is aborted.
                std::future::pending::<()>().await;
            }
            continue;
        }
        if read == 0 || to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// One whole wire-protocol message: its 16-byte header says its length.
async fn read_message(from: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let mut length = [0u8; 4];
    from.read_exact(&mut length).await.ok()?;
    let total = usize::try_from(i32::from_le_bytes(length)).ok()?;
    if total < 16 {
        return None;
    }
    let mut message = vec![0u8; total];
    message[..4].copy_from_slice(&length);
    from.read_exact(&mut message[4..]).await.ok()?;
    Some(message)
}

/// The command an OP_MSG carries: the first key of its body document
/// (header 16 bytes, flags 4, section kind 1, document length 4, element
/// type 1, then the key up to its NUL).
fn command_name(message: &[u8]) -> Option<&str> {
    let opcode = i32::from_le_bytes(message.get(12..16)?.try_into().ok()?);
    if opcode != OP_MSG || *message.get(20)? != 0 {
        return None;
    }
    let key = message.get(26..)?;
    let end = key.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&key[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_the_first_key_of_the_body() {
        let body = mongodb::bson::to_vec(&mongodb::bson::doc! {"insert": "messages", "$db": "x"})
            .expect("a document encodes");
        let mut message = Vec::new();
        message.extend_from_slice(&((16 + 4 + 1 + body.len()) as i32).to_le_bytes());
        message.extend_from_slice(&1i32.to_le_bytes());
        message.extend_from_slice(&0i32.to_le_bytes());
        message.extend_from_slice(&OP_MSG.to_le_bytes());
        message.extend_from_slice(&0u32.to_le_bytes());
        message.push(0);
        message.extend_from_slice(&body);
        assert_eq!(command_name(&message), Some("insert"));
    }
}
