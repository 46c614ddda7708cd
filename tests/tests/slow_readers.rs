//! A client that stops reading while events keep coming is closed with the
//! close code that tells it to reconnect (and fetch what it missed), and it
//! sees that code as soon as it reads again; a client of the same user that
//! keeps reading gets every event.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shared_proto::status::close_code;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, befriend};
use switchyard_tests::{GATEWAY, Stack, assert_status, status};
use tokio::net::TcpSocket;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::Message;

/// Frames that may wait for one client in the gateway; small, so that a
/// test needs few events to fill it.
const OUTBOX_FRAMES: usize = 16;

/// The longest message text chat-service takes: each event is about 4 KB.
const TEXT_CHARS: usize = 4000;

/// Messages sent at once, before waiting for their replies.
const BATCH: usize = 20;

/// Sending stops here if the gateway never closes the slow client.
const MAX_MESSAGES: usize = 3000;

/// What the gateway logs when it cuts a slow client off.
const CUT_OFF: &str = "disconnecting a client that reads too slowly";

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_the_code_that_says_reconnect() {
    let stack = Stack::builder()
        .chat(true)
        .generous_limits()
        .service_env(
            GATEWAY,
            "SWITCHYARD__GATEWAY__OUTBOX_FRAMES",
            OUTBOX_FRAMES.to_string(),
        )
        .start()
        .await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 0, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;

    // Ana's second device logs in, then stops reading. Its receive buffer
    // is small, so the gateway's queue for it fills after a few events.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket
        .connect(stack.gateway_addr(0))
        .await
        .expect("connect");
    let (mut slow, _) = client_async(stack.gateway_url(0), tcp)
        .await
        .expect("upgrade");
    slow.send(Message::text(
        json!({"action": "FASTLOGIN", "requestId": "login", "userLoginData": {"email": ana.email, "token": ana.token}})
            .to_string(),
    ))
    .await
    .expect("send FASTLOGIN");
    let login = timeout(EVENT_TIMEOUT, next_json(&mut slow))
        .await
        .expect("the login is answered")
        .expect("a JSON frame");
    assert_status(&login, "USER_LOGGED");

    // Her first device keeps reading throughout, until it has every message
    // Bob will have sent.
    let mut reader = ana.client;
    let (total_tx, total_rx) = tokio::sync::watch::channel(None::<usize>);
    let keeps_reading = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut messages = 0;
        while Instant::now() < deadline && !total_rx.borrow().is_some_and(|total| messages >= total)
        {
            // Panics if the gateway closes this connection.
            if let Some(frame) = reader.next_event(Duration::from_millis(100)).await {
                if status(&frame) == "NEW_MESSAGE" {
                    messages += 1;
                }
            }
        }
        messages
    });

    // Bob writes to Ana until the gateway gives up on the slow device.
    let text = "x".repeat(TEXT_CHARS);
    let mut sent = 0;
    while stack.log_count(GATEWAY, 0, CUT_OFF) == 0 {
        assert!(
            sent < MAX_MESSAGES,
            "{sent} messages of {TEXT_CHARS} characters went to a client that reads nothing, and \
             the gateway still holds its connection"
        );
        let requests = (sent..sent + BATCH)
            .map(|i| json!({"action": "SEND_MESSAGE", "to": {"userId": ana.user_id}, "text": text, "clientMsgId": format!("m-{i}")}))
            .collect();
        for reply in bob
            .client
            .request_all(requests, Duration::from_secs(30))
            .await
        {
            assert_status(&reply, "MESSAGE_SENT");
        }
        sent += BATCH;
    }
    eprintln!("the slow device was closed after {sent} messages or fewer");
    total_tx.send_replace(Some(sent));

    // Reading again, the slow device finds some of the messages, then the
    // close frame: well before everything sent since it stopped reading.
    let mut received = 0;
    let close = timeout(Duration::from_secs(10), async {
        loop {
            match slow.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON");
                    assert_eq!(status(&frame), "NEW_MESSAGE", "{frame}");
                    received += 1;
                }
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("the connection failed instead of closing: {err}"),
                None => return None,
            }
        }
    })
    .await
    .expect("the slow device is closed")
    .expect("with a close frame");
    assert_eq!(
        u16::from(close.code),
        close_code::RECONNECT_AND_SYNC,
        "closed with {close:?}"
    );
    assert!(
        received < sent,
        "{received} of {sent} messages reached the slow device"
    );

    // The device that kept reading was not closed and got every message.
    let messages = keeps_reading.await.expect("the reading device stays open");
    assert_eq!(messages, sent, "every message reached the reading device");
}

/// The next text frame as JSON; `None` if the connection closed.
async fn next_json<S>(socket: &mut S) -> Option<Value>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message {
            return Some(serde_json::from_str(&text).expect("JSON"));
        }
    }
    None
}
