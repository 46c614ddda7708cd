//! A database that stops answering in the middle of a write holds up the
//! messages caught in it, not chat-service: the write is abandoned after
//! its time limit and the message handled again, so once the database
//! answers, new messages flow at once and the ones caught are stored once,
//! when sent again with the same `clientMsgId`.
//!
//! The stall is the one seen under overload on FerretDB: the server still
//! answers `ping` (so the driver's monitor finds nothing wrong) while the
//! commands it was given are never answered.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, befriend, messages_of};
use switchyard_tests::ports::free_port;
use switchyard_tests::stalling_database::StallingDatabase;
use switchyard_tests::{CHAT, GATEWAY, Stack, assert_status, status};
use tokio::time::Instant;

/// How long one write of the message log may take, and one handling.
const OPERATION_TIMEOUT_MS: &str = "1000";
const HANDLE_TIMEOUT_MS: &str = "2000";
/// How long a message sent once the database answers again may take to be
/// acknowledged: its own write plus the retries of those caught in the
/// stall, with room for a slow machine. Without a time limit on the writes
/// it is never acknowledged.
const ACKNOWLEDGED_WITHIN: Duration = Duration::from_secs(20);
/// Reads Bob sends into the stall: more than the 4 of one user handled at
/// once and the driver's 10 connections.
const STALLED_READS: usize = 12;

#[tokio::test]
async fn a_database_that_stops_answering_holds_up_only_what_it_swallowed() {
    let database = StallingDatabase::start().await;
    let port = free_port();
    database.forward_to(port);
    let stack = Stack::builder()
        .chat(true)
        .generous_limits()
        .ferretdb_port(port)
        .service_env(CHAT, "SWITCHYARD__MONGODB__URI", database.uri())
        .service_env(
            CHAT,
            "SWITCHYARD__MONGODB__OPERATION_TIMEOUT_MS",
            OPERATION_TIMEOUT_MS,
        )
        .service_env(
            CHAT,
            "SWITCHYARD__BUS__HANDLE_TIMEOUT_MS",
            HANDLE_TIMEOUT_MS,
        )
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS", "3000")
        .start()
        .await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 0, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;
    let bob_id = bob.user_id.clone();
    let first = ana.client.send_to_user(&bob_id, "before", "before").await;
    assert_status(&first, "MESSAGE_SENT");

    // The database stops answering while two of Ana's messages are on their
    // way, and more of Bob's reads than he may have handled at once (and
    // than chat-service has connections to the database).
    database.stall();
    let caught = ["during 1", "during 2"];
    let sends = caught
        .iter()
        .map(|text| send_request(&bob_id, text))
        .collect();
    // Bob also creates a group: a change, which is finished however late.
    let reads = std::iter::once(serde_json::json!({"action": "CREATE_GROUP", "name": "Stalled"}))
        .chain((0..STALLED_READS).map(|_| serde_json::json!({"action": "LIST_CONVERSATIONS"})))
        .collect();
    let limit = Duration::from_secs(10);
    let (replies, _) = tokio::join!(
        ana.client.request_all(sends, limit),
        bob.client.request_all(reads, limit)
    );
    for reply in &replies {
        assert_ne!(
            status(reply),
            "MESSAGE_SENT",
            "stored while stalled? {reply}"
        );
    }
    assert!(
        database.swallowed() > 0,
        "the stall caught no command: the test proves nothing"
    );

    // It answers again, but what it swallowed stays unanswered for good.
    database.recover();
    let started = Instant::now();
    let mut after = ana.client.send_to_user(&bob_id, "after", "after").await;
    while status(&after) != "MESSAGE_SENT" {
        assert!(
            matches!(status(&after), "TIMEOUT" | "BUSY" | "SERVICE_UNAVAILABLE"),
            "{after}"
        );
        assert!(
            started.elapsed() < ACKNOWLEDGED_WITHIN,
            "a message sent after the stall is still not acknowledged after {:?}: {after}",
            started.elapsed()
        );
        after = ana.client.send_to_user(&bob_id, "after", "after").await;
    }

    // Bob's reads caught in the stall hold nothing of his either.
    let mut list = bob.client.chat("LIST_CONVERSATIONS", Value::Null).await;
    while status(&list) != "CONVERSATIONS" {
        assert_eq!(status(&list), "TIMEOUT", "{list}");
        assert!(started.elapsed() < ACKNOWLEDGED_WITHIN, "{list}");
        list = bob.client.chat("LIST_CONVERSATIONS", Value::Null).await;
    }

    // Bob's group is created once, though his request timed out.
    let mut groups = Vec::new();
    while groups.is_empty() {
        assert!(
            started.elapsed() < ACKNOWLEDGED_WITHIN,
            "the group was never created"
        );
        let reply = bob.client.chat("LIST_GROUPS", Value::Null).await;
        if status(&reply) == "GROUPS" {
            groups = reply["groups"].as_array().cloned().unwrap_or_default();
        }
        if groups.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, ["Stalled"], "{groups:?}");

    // Ana sends again what was not acknowledged, with the same clientMsgId.
    for text in caught {
        let mut reply = ana.client.send_to_user(&bob_id, text, text).await;
        while status(&reply) != "MESSAGE_SENT" {
            assert!(
                started.elapsed() < ACKNOWLEDGED_WITHIN * 2,
                "{text}: {reply}"
            );
            reply = ana.client.send_to_user(&bob_id, text, text).await;
        }
    }

    // Each is stored once, numbered without gaps, and reached Bob once.
    let conversation = ana.client.conversations().await[0]["conversationId"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let history = ana.client.history(&conversation, None, Some(100)).await;
    let stored: BTreeMap<String, i64> = messages_of(&history)
        .iter()
        .map(|m| (text_of(m), m["seq"].as_i64().unwrap_or(-1)))
        .collect();
    let texts: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(texts, ["after", "before", "during 1", "during 2"]);
    let mut seqs: Vec<i64> = stored.values().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3, 4], "{history}");
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    while received.values().sum::<usize>() < 4 {
        let event = bob.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
        *received.entry(text_of(&event)).or_default() += 1;
    }
    assert!(
        received.len() == 4 && received.values().all(|n| *n == 1),
        "Bob got {received:?}"
    );
}

fn send_request(to: &str, text: &str) -> Value {
    serde_json::json!({
        "action": "SEND_MESSAGE",
        "to": {"userId": to},
        "text": text,
        "clientMsgId": text,
    })
}

fn text_of(message: &Value) -> String {
    message["text"].as_str().unwrap_or("?").to_owned()
}
