//! Past what chat-service can take, a message is refused at once with the
//! retryable `BUSY` instead of queueing into a `TIMEOUT`; nothing that was
//! acknowledged is lost, and a message sent again with the same
//! `clientMsgId` once the service catches up is stored once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, befriend, messages_of};
use switchyard_tests::{CHAT, GATEWAY, Stack, status};
use tokio::time::Instant;

/// Two partitions, each holding half of the gateway's backlog bound.
const PARTITIONS: &str = "2";
const MAX_BACKLOG: &str = "64";
const PER_PARTITION: usize = 32;
/// Messages sent while chat-service is stalled: more than fit.
const SENT: usize = 48;

#[tokio::test]
async fn a_message_past_capacity_is_refused_busy_and_nothing_acknowledged_is_lost() {
    let mut stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .generous_limits()
        .env("SWITCHYARD__BUS__CHAT_PARTITIONS", PARTITIONS)
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__MAX_BACKLOG", MAX_BACKLOG)
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS", "2000")
        .start()
        .await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;

    // chat-service stalls: Ana's messages pile up on their partition until
    // it is full, and the rest are refused.
    stack.pause_service(CHAT, 0);
    let message = |n: usize| {
        json!({
            "action": "SEND_MESSAGE",
            "to": {"userId": bob.user_id},
            "text": format!("message {n}"),
            "clientMsgId": format!("m-{n}"),
        })
    };
    let replies = ana
        .client
        .request_all((0..SENT).map(message).collect(), Duration::from_secs(30))
        .await;
    let statuses: Vec<&str> = replies.iter().map(status).collect();
    let busy = statuses.iter().filter(|s| **s == "BUSY").count();
    let timed_out = statuses.iter().filter(|s| **s == "TIMEOUT").count();
    assert_eq!(
        (timed_out, busy),
        (PER_PARTITION, SENT - PER_PARTITION),
        "the partition takes {PER_PARTITION} and refuses the rest: {statuses:?}"
    );
    for reply in replies.iter().filter(|r| status(r) == "BUSY") {
        assert!(
            reply["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0),
            "{reply}"
        );
    }

    // It catches up; Ana sends again whatever was not acknowledged, with the
    // same clientMsgId, until each is.
    stack.resume_service(CHAT, 0);
    let mut acknowledged: BTreeMap<String, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut waiting: Vec<usize> = (0..SENT).collect();
    while !waiting.is_empty() {
        assert!(Instant::now() < deadline, "never acknowledged: {waiting:?}");
        let mut again = Vec::new();
        for n in waiting {
            let reply = ana.client.request(message(n)).await;
            match status(&reply) {
                "MESSAGE_SENT" => {
                    acknowledged
                        .insert(format!("message {n}"), reply["seq"].as_i64().unwrap_or(-1));
                }
                "BUSY" | "TIMEOUT" => again.push(n),
                other => panic!("message {n}: unexpected {other}: {reply}"),
            }
        }
        waiting = again;
    }

    // Each is stored once, numbered without gaps, and reached Bob once.
    let conversation = {
        let reply = ana.client.conversations().await;
        reply[0]["conversationId"]
            .as_str()
            .unwrap_or("?")
            .to_owned()
    };
    let history = ana.client.history(&conversation, None, Some(100)).await;
    let stored: BTreeMap<String, i64> = messages_of(&history)
        .iter()
        .map(|m| {
            (
                m["text"].as_str().unwrap_or("?").to_owned(),
                m["seq"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(stored, acknowledged, "stored as acknowledged");
    let mut seqs: Vec<i64> = stored.values().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=SENT as i64).collect::<Vec<_>>());
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    while received.values().sum::<usize>() < SENT {
        let event = bob.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
        *received
            .entry(event["text"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    assert!(
        received.values().all(|n| *n == 1) && received.len() == SENT,
        "Bob got {received:?}"
    );
}
