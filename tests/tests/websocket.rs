//! The WebSocket protocol itself, as any client library speaks it: pings are
//! answered, a client's close is answered, and bytes sent right behind the
//! upgrade request (as some clients do, in the same packet) are not lost.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchyard_tests::Stack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocket};

const LIMIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_ping_gets_its_pong_and_a_close_gets_a_close() {
    let stack = Stack::builder().start().await;
    let (mut socket, _) = connect_async(stack.gateway_url(0)).await.expect("connect");

    socket
        .send(Message::Ping("are you there".into()))
        .await
        .expect("ping");
    let pong = tokio::time::timeout(LIMIT, socket.next())
        .await
        .expect("an answer in time");
    assert!(
        matches!(&pong, Some(Ok(Message::Pong(payload))) if payload.as_ref() == b"are you there"),
        "expected the ping's payload back, got {pong:?}"
    );

    // The connection still serves requests after it.
    socket.send(Message::text("{}")).await.expect("send");
    let reply = next_text(&mut socket).await;
    assert_eq!(reply["rocketStatus"], "BAD_REQUEST", "{reply}");

    socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        })))
        .await
        .expect("close");
    let answer = tokio::time::timeout(LIMIT, socket.next())
        .await
        .expect("an answer in time");
    assert!(
        matches!(&answer, Some(Ok(Message::Close(Some(frame)))) if frame.code == CloseCode::Normal),
        "expected the close frame echoed, got {answer:?}"
    );
}

#[tokio::test]
async fn a_frame_sent_with_the_upgrade_request_is_answered() {
    let stack = Stack::builder().start().await;
    let url = stack.gateway_url(0);
    let address = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    let mut tcp = TcpStream::connect(&address).await.expect("connect");

    // The upgrade request and a first frame, written at once.
    let mut wire = format!(
        "GET / HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes();
    wire.extend(masked_text_frame(br#"{"requestId": "early"}"#));
    tcp.write_all(&wire).await.expect("write");

    // Everything up to the end of the response's headers, then the frames.
    let mut received = Vec::new();
    let headers_end = loop {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(LIMIT, tcp.read(&mut chunk))
            .await
            .expect("the answer comes in time")
            .expect("read");
        assert!(n > 0, "the gateway closed the connection");
        received.extend_from_slice(&chunk[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&received[..headers_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "the accept key of RFC 6455's example: {head}"
    );

    let mut client = WebSocket::from_partially_read(
        tcp.into_std().expect("std socket"),
        received[headers_end..].to_vec(),
        Role::Client,
        None,
    );
    client
        .get_mut()
        .set_nonblocking(false)
        .expect("blocking socket");
    client
        .get_mut()
        .set_read_timeout(Some(LIMIT))
        .expect("read timeout");
    let reply = tokio::task::spawn_blocking(move || client.read().expect("a frame"))
        .await
        .expect("reader");
    let reply: Value = serde_json::from_str(reply.to_text().expect("text")).expect("JSON");
    assert_eq!(reply["rocketStatus"], "BAD_REQUEST", "{reply}");
    assert_eq!(reply["requestId"], "early", "{reply}");
}

async fn next_text<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(LIMIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

/// A client's text frame: masked, as RFC 6455 requires of clients.
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "a short frame");
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend(mask);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i % 4]),
    );
    frame
}
