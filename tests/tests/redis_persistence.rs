//! Redis keeps the action streams on disk (append-only file): work a
//! gateway accepted survives a Redis restart and is done once a service is
//! there to do it.

use std::time::Duration;

use serde_json::json;
use switchyard_tests::chat::{ChatUser, befriend, history_texts};
use switchyard_tests::{CHAT, GATEWAY, REDIS, Stack, assert_status};
use tokio::time::Instant;

/// How long the gateway waits before telling its client `TIMEOUT`.
const ACTION_TIMEOUT_MS: u64 = 1500;
/// How long everything may take to be back after the restarts.
const RECOVERY: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_message_accepted_while_chat_was_down_survives_a_redis_restart() {
    let mut stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .generous_limits()
        .service_env(
            GATEWAY,
            "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS",
            ACTION_TIMEOUT_MS.to_string(),
        )
        .start()
        .await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;

    // Accepted onto the chat stream, with nobody to handle it yet.
    stack.stop_service(CHAT, 0).await;
    let reply = ana
        .client
        .chat(
            "SEND_MESSAGE",
            json!({"to": {"userId": bob.user_id}, "text": "kept", "clientMsgId": "k-1"}),
        )
        .await;
    assert_status(&reply, "TIMEOUT");

    stack.stop_service(REDIS, 0).await;
    stack.start_service(REDIS, 0).await;
    stack.start_service(CHAT, 0).await;
    stack.wait_ready(CHAT, 0).await;

    // The message is stored once, and Bob finds it.
    let deadline = Instant::now() + RECOVERY;
    let conversation = loop {
        let reply = bob
            .client
            .request_with_timeout(json!({"action": "LIST_CONVERSATIONS"}), RECOVERY)
            .await;
        let found = reply["conversations"]
            .as_array()
            .and_then(|list| list.first())
            .and_then(|c| c["conversationId"].as_str())
            .map(str::to_owned);
        if let Some(id) = found {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "the message accepted before the restart never arrived: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let history = bob.client.history(&conversation, None, None).await;
    assert_eq!(
        history_texts(&history),
        vec!["kept".to_owned()],
        "{history}"
    );
}
