//! Opening client WebSockets: one TCP socket bound to a chosen 127.0.0.x
//! source, then the WebSocket handshake over it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::metrics::Failure;
use crate::target::Target;

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// The largest frame a client accepts.
const MAX_FRAME: usize = 1 << 20;

/// Small buffers, so that tens of thousands of client sockets fit in the load
/// generator's memory; the frames are small.
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_FRAME * 4)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
}

/// Spreads connections over targets and source addresses.
#[derive(Debug, Clone)]
pub struct Dialer {
    pub targets: Vec<Target>,
    pub sources: Vec<IpAddr>,
    /// The path used for targets given without one.
    pub default_path: String,
    pub timeout: Duration,
}

impl Dialer {
    /// The target connection `index` goes to.
    pub fn target_of(&self, index: usize) -> &Target {
        &self.targets[index % self.targets.len()]
    }

    /// Opens connection `index`: its target and source are chosen round-robin.
    pub async fn open(&self, index: usize) -> Result<Ws, Failure> {
        let target = self.target_of(index);
        let source = self.sources[index % self.sources.len()];
        let url = target.url(&self.default_path);
        let attempt = async {
            let stream = connect_from(source, target.addr).await?;
            let (ws, _response) = tokio_tungstenite::client_async_with_config(
                url.as_str(),
                stream,
                Some(client_config()),
            )
            .await
            .map_err(|e| Failure::new("handshake", format!("{url}: {e}")))?;
            Ok(ws)
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| {
                Failure::new(
                    "connect_timeout",
                    format!("{url}: no handshake within {:?}", self.timeout),
                )
            })?
    }
}

async fn connect_from(source: IpAddr, target: SocketAddr) -> Result<TcpStream, Failure> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| Failure::new(io_kind("socket", &e), e.to_string()))?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| Failure::new(io_kind("bind", &e), format!("bind {source}: {e}")))?;
    // Latency is what we measure; Nagle's delay would add to it.
    socket
        .set_nodelay(true)
        .map_err(|e| Failure::new("socket", e.to_string()))?;
    socket
        .connect(target)
        .await
        .map_err(|e| Failure::new(io_kind("connect", &e), format!("{source} -> {target}: {e}")))
}

/// Names the usual resource errors, which tell how to fix the set-up.
fn io_kind(step: &str, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        // EMFILE / ENFILE: raise `ulimit -n`.
        Some(24) | Some(23) => "too_many_open_files".to_owned(),
        // EADDRNOTAVAIL / EADDRINUSE: ephemeral ports of a source are used up.
        Some(99) | Some(98) => "no_free_source_port".to_owned(),
        _ => step.to_owned(),
    }
}
