//! The sending side of a client's socket.
//!
//! A frame is written straight away, by whichever task produced it, while the
//! socket has room, which is nearly always: a group event then reaches all its
//! members' sockets from one loop, without waking a task per member (which
//! cost more than the write itself; see docs/benchmarks.md). Only when the
//! kernel's send buffer is full do frames wait, in order, in a backlog that a
//! task started for the purpose drains and then ends. An idle connection has
//! no writer task at all.
//!
//! A client whose backlog reaches its limit reads too slowly to keep up; it is
//! refused further frames rather than allowed to grow our memory, and cut off:
//! its backlog is replaced by a close frame (see [`FrameSink::cut_off`]).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::frame::Frame;
use crate::hub::{FrameSink, Refused};

/// Writes frames to one client socket, in the order they were pushed.
#[derive(Debug, Clone)]
pub struct SocketWriter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    socket: OwnedWriteHalf,
    backlog: Mutex<Backlog>,
    /// Frames a backlog may hold before its client counts as too slow.
    max_backlog: usize,
    /// Told whenever the backlog empties.
    emptied: Notify,
    /// Cancelled when the connection is over: a drain waiting for room gives up.
    abandoned: CancellationToken,
}

#[derive(Debug, Default)]
struct Backlog {
    /// Frames not yet fully written; the first may be partly written.
    frames: VecDeque<Bytes>,
    /// A drain task is running.
    draining: bool,
    /// A close frame was pushed: nothing more is taken.
    closed: bool,
    /// Writing failed: the client is gone.
    failed: bool,
}

impl SocketWriter {
    pub fn new(socket: OwnedWriteHalf, max_backlog: usize) -> SocketWriter {
        SocketWriter {
            shared: Arc::new(Shared {
                socket,
                backlog: Mutex::new(Backlog::default()),
                max_backlog: max_backlog.max(1),
                emptied: Notify::new(),
                abandoned: CancellationToken::new(),
            }),
        }
    }

    /// Waits until everything pushed is written, at most `within`; false if
    /// some of it is still waiting for the client to read.
    pub async fn flushed(&self, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            loop {
                let emptied = self.shared.emptied.notified();
                tokio::pin!(emptied);
                emptied.as_mut().enable();
                if self.shared.lock().frames.is_empty() {
                    return;
                }
                emptied.await;
            }
        })
        .await
        .is_ok()
    }

    /// Gives up on whatever is still waiting, so the socket can close.
    pub fn abandon(&self) {
        self.shared.abandoned.cancel();
    }
}

impl FrameSink for SocketWriter {
    fn push(&self, frame: &Frame) -> Result<(), Refused> {
        let mut backlog = self.shared.lock();
        if backlog.closed || backlog.failed {
            return Err(Refused::Gone);
        }
        if !backlog.frames.is_empty() {
            if backlog.frames.len() >= self.shared.max_backlog {
                return Err(Refused::Behind);
            }
            backlog.frames.push_back(frame.bytes().clone());
            backlog.closed = frame.is_close();
            return Ok(());
        }
        backlog.closed = frame.is_close();
        let bytes = frame.bytes();
        let mut written = 0;
        while written < bytes.len() {
            match self.shared.socket.try_write(&bytes[written..]) {
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    backlog.frames.push_back(bytes.slice(written..));
                    if !backlog.draining {
                        backlog.draining = true;
                        tokio::spawn(drain(self.shared.clone()));
                    }
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    backlog.failed = true;
                    return Err(Refused::Gone);
                }
            }
        }
        Ok(())
    }

    fn cut_off(&self, close: &Frame) {
        let mut backlog = self.shared.lock();
        if backlog.closed || backlog.failed {
            return;
        }
        if backlog.frames.is_empty() {
            drop(backlog);
            // Refused only if the client is gone, when nothing is owed it.
            let _ = self.push(close);
            return;
        }
        // The first frame may be partly written: the rest of it must follow,
        // or what the client reads next is no frame at all. A drain task is
        // running, since the backlog is not empty; it writes the close too.
        backlog.frames.truncate(1);
        backlog.frames.push_back(close.bytes().clone());
        backlog.closed = true;
    }
}

/// Writes the backlog out as the socket makes room, then ends.
async fn drain(shared: Arc<Shared>) {
    loop {
        let ready = tokio::select! {
            ready = shared.socket.writable() => ready.is_ok(),
            _ = shared.abandoned.cancelled() => false,
        };
        let mut backlog = shared.lock();
        if ready {
            write_backlog(&shared.socket, &mut backlog);
        } else {
            backlog.failed = true;
        }
        if backlog.failed {
            backlog.frames.clear();
        }
        if backlog.frames.is_empty() {
            backlog.draining = false;
            drop(backlog);
            shared.emptied.notify_waiters();
            return;
        }
    }
}

/// Writes as much of the backlog as the socket takes now.
fn write_backlog(socket: &OwnedWriteHalf, backlog: &mut Backlog) {
    while let Some(front) = backlog.frames.front_mut() {
        match socket.try_write(front) {
            Ok(n) if n == front.len() => {
                backlog.frames.pop_front();
            }
            Ok(n) => front.advance(n),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                backlog.failed = true;
                return;
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Backlog> {
        // Every update of the backlog is a single step; a poisoned lock holds
        // nothing half-written.
        self.backlog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The socket as the WebSocket library reading it sees it: reads come from
/// the socket, and what the library writes (its answers to pings and to the
/// client's close) joins the connection's other frames, in order, instead of
/// racing them on the socket.
pub struct ReadSide {
    socket: OwnedReadHalf,
    writer: SocketWriter,
}

impl ReadSide {
    pub fn new(socket: OwnedReadHalf, writer: SocketWriter) -> ReadSide {
        ReadSide { socket, writer }
    }
}

impl AsyncRead for ReadSide {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadSide {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // The library writes whole frames from its own buffer, so each call
        // here carries complete frames.
        let frame = Frame::framed(Bytes::copy_from_slice(buf));
        Poll::Ready(match self.writer.push(&frame) {
            Ok(()) => Ok(buf.len()),
            Err(_) => Err(io::ErrorKind::BrokenPipe.into()),
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (server, client)
    }

    async fn read_exactly(client: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut bytes))
            .await
            .expect("the frames arrive in time")
            .expect("read");
        bytes
    }

    /// A client that stops reading fills the kernel's buffers; what follows
    /// waits in the backlog, then arrives whole and in order once it reads.
    #[tokio::test]
    async fn frames_pushed_while_the_client_does_not_read_arrive_in_order_later() {
        let (server, mut client) = socket_pair().await;
        let (_read, write) = server.into_split();
        let writer = SocketWriter::new(write, 10_000);
        let frames: Vec<Frame> = (0..4_000)
            .map(|i| Frame::text(&format!("{i:04}{}", "x".repeat(8_000))))
            .collect();
        for frame in &frames {
            writer.push(frame).expect("taken");
        }
        assert!(
            !writer.shared.lock().frames.is_empty(),
            "32 MB do not fit in the socket buffers of a client that does not read"
        );
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.bytes().to_vec()).collect();
        let received = read_exactly(&mut client, expected.len()).await;
        assert!(received == expected, "the bytes arrive in the order pushed");
        assert!(writer.flushed(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_client_too_far_behind_is_refused_and_a_closed_connection_takes_nothing() {
        let (server, _client) = socket_pair().await;
        let (_read, write) = server.into_split();
        let writer = SocketWriter::new(write, 3);
        let big = Frame::text(&"y".repeat(1 << 20));
        let mut refused = None;
        for _ in 0..64 {
            if let Err(why) = writer.push(&big) {
                refused = Some(why);
                break;
            }
        }
        assert_eq!(refused, Some(Refused::Behind));
        assert!(!writer.flushed(Duration::from_millis(50)).await);

        let (server, _client) = socket_pair().await;
        let (_read, write) = server.into_split();
        let writer = SocketWriter::new(write, 3);
        writer.push(&Frame::close(1012, "bye")).expect("taken");
        assert_eq!(writer.push(&Frame::text("late")), Err(Refused::Gone));
    }

    /// A client cut off gets the rest of the frame it was receiving, then the
    /// close frame, and nothing that was still waiting.
    #[tokio::test]
    async fn a_client_cut_off_reads_the_frame_in_progress_then_the_close() {
        let (server, mut client) = socket_pair().await;
        let (_read, write) = server.into_split();
        let writer = SocketWriter::new(write, 4);
        let frames: Vec<Frame> = (0..64)
            .map(|i| Frame::text(&format!("{i:02}{}", "z".repeat(1 << 20))))
            .collect();
        let mut taken = 0;
        while taken < frames.len() && writer.push(&frames[taken]).is_ok() {
            taken += 1;
        }
        assert!(taken < frames.len(), "the client fell behind");
        let close = Frame::close(4000, "reading too slowly");
        writer.cut_off(&close);
        assert_eq!(writer.push(&Frame::text("late")), Err(Refused::Gone));

        // Read everything, then find where the close frame starts.
        let mut received = Vec::new();
        let read_all = async {
            let mut buffer = vec![0; 1 << 16];
            loop {
                let n = client.read(&mut buffer).await.expect("read");
                received.extend_from_slice(&buffer[..n]);
                if received.ends_with(close.bytes().as_ref()) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read_all)
            .await
            .expect("the close frame arrives");
        let before_close = received.len() - close.bytes().len();
        let whole_frames: usize = frames.iter().take(taken).map(|f| f.bytes().len()).sum();
        assert!(
            before_close < whole_frames,
            "frames still waiting were dropped: {before_close} bytes came before the close"
        );
        let mut offset = 0;
        for frame in &frames[..taken] {
            let len = frame.bytes().len();
            if offset + len > before_close {
                break;
            }
            assert!(
                received[offset..offset + len] == frame.bytes()[..],
                "whole frames, in order"
            );
            offset += len;
        }
        assert_eq!(offset, before_close, "only whole frames precede the close");
    }
}
