//! An action that fails on every delivery is not retried forever: after its
//! last delivery it goes to its service's dead-letter stream, whole, its
//! client is told `INTERNAL`, and the service goes on with everything else.
//! An entry that is no action at all goes there at once.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use switchyard_tests::chat::{ChatUser, QUIET};
use switchyard_tests::ports::free_port;
use switchyard_tests::{CHAT, GATEWAY, Stack, assert_status, status};
use tokio::time::{Instant, sleep};

const CHAT_STREAM: &str = "switchyard:actions:chat";
const DEAD_LETTERS: &str = "switchyard:actions:chat:dead";

/// Deliveries an entry gets in this test (the default is 5).
const MAX_DELIVERIES: usize = 3;

/// What chat-service logs each time an action fails half done.
const HALF_DONE: &str = "action half done; it will be handled again";

#[tokio::test]
async fn an_action_that_fails_on_every_delivery_goes_to_the_dead_letters_after_the_last() {
    let chat_http = format!("127.0.0.1:{}", free_port());
    let stack = Stack::builder()
        .chat(true)
        .generous_limits()
        .env(
            "SWITCHYARD__BUS__MAX_DELIVERIES",
            MAX_DELIVERIES.to_string(),
        )
        .service_env(CHAT, "SWITCHYARD__HTTP__LISTEN", &chat_http)
        // Three deliveries, 1.5 s apart (the harness's claim interval),
        // fit well inside it.
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS", "30000")
        .start()
        .await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;

    // Ana's record of her groups is damaged: any group she creates is stored,
    // but recording her membership of it fails, however often it is tried.
    stack
        .mongo()
        .collection::<Document>("memberships")
        .update_one(
            doc! {"_id": &ana.user_id},
            doc! {"$set": {"groups": "damaged"}},
        )
        .upsert(true)
        .await
        .expect("damage the memberships document");
    ana.client
        .send_json(json!({"action": "CREATE_GROUP", "requestId": "poison", "name": "Hikers"}))
        .await;

    // While it waits for its next delivery, her other actions are served.
    stack.wait_for_log(CHAT, 0, HALF_DONE, 1, QUIET * 5).await;
    let friends = ana.client.chat("LIST_FRIENDS", Value::Null).await;
    assert_status(&friends, "FRIENDS");

    // Not given up before its last delivery...
    stack
        .wait_for_log(
            CHAT,
            0,
            HALF_DONE,
            MAX_DELIVERIES - 1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        dead_letters(&stack).await.len(),
        0,
        "given up before its last delivery"
    );

    // ...and after it, her client hears that it was given up on.
    let started = Instant::now();
    let reply = ana
        .client
        .expect_event("INTERNAL", Duration::from_secs(10))
        .await;
    assert_eq!(reply["requestId"], "poison", "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the last delivery came {:?} after the one before it",
        started.elapsed()
    );
    sleep(QUIET).await;
    assert_eq!(
        stack.log_count(CHAT, 0, HALF_DONE),
        MAX_DELIVERIES,
        "tried exactly {MAX_DELIVERIES} times"
    );

    // The action is on the dead-letter stream, whole, with how often it was
    // delivered and why it was given up on; nothing is left of it on the
    // chat stream.
    let letters = dead_letters(&stack).await;
    let [letter] = letters.as_slice() else {
        panic!("one dead letter: {letters:?}");
    };
    let action: Value = serde_json::from_str(&letter["e"]).expect("the action, as JSON");
    assert_eq!(action["action"], "CREATE_GROUP");
    assert_eq!(action["request_id"], "poison");
    assert_eq!(action["payload"]["name"], "Hikers");
    assert_eq!(letter["stream"], CHAT_STREAM);
    assert_eq!(letter["deliveries"], MAX_DELIVERIES.to_string());
    assert!(
        letter["reason"].contains("failed on every delivery"),
        "{letter:?}"
    );
    assert_eq!(chat_stream_length(&stack).await, 0);
    let action_id = action["action_id"].as_str().expect("an action id");
    assert_eq!(stack.log_count(CHAT, 0, "giving up on an action"), 1);
    assert!(
        stack.log_count(CHAT, 0, action_id) > MAX_DELIVERIES,
        "each try and the giving up are logged with the action id"
    );
    assert_eq!(dead_lettered_metric(&chat_http).await, 1.0);

    // chat-service goes on with everything else.
    let groups = ana.client.chat("LIST_GROUPS", Value::Null).await;
    assert_status(&groups, "GROUPS");

    // An entry that is not an action at all is put there at once, as it was.
    let mut redis = stack.redis().await;
    let _: String = redis::cmd("XADD")
        .arg(CHAT_STREAM)
        .arg("*")
        .arg("e")
        .arg("{not an action")
        .query_async(&mut redis)
        .await
        .expect("XADD");
    let deadline = Instant::now() + Duration::from_secs(5);
    let letters = loop {
        let letters = dead_letters(&stack).await;
        if letters.len() == 2 || Instant::now() > deadline {
            break letters;
        }
        sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[1]["e"], "{not an action");
    assert_eq!(letters[1]["deliveries"], "1");
    assert!(
        letters[1]["reason"].starts_with("cannot be decoded"),
        "{:?}",
        letters[1]
    );
    assert_eq!(chat_stream_length(&stack).await, 0);
    assert_status(
        &ana.client.chat("LIST_FRIENDS", Value::Null).await,
        "FRIENDS",
    );
    assert!(
        ana.client
            .frames_within(QUIET)
            .await
            .iter()
            .all(|f| status(f) != "INTERNAL"),
        "one INTERNAL only"
    );
}

/// Every entry of the dead-letter stream, oldest first, as field maps.
async fn dead_letters(stack: &Stack) -> Vec<std::collections::HashMap<String, String>> {
    let mut redis = stack.redis().await;
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(DEAD_LETTERS)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|entry| {
            entry
                .map
                .into_iter()
                .map(|(field, value)| {
                    let value: String = redis::from_redis_value(value).expect("a string field");
                    (field, value)
                })
                .collect()
        })
        .collect()
}

async fn chat_stream_length(stack: &Stack) -> u64 {
    let mut redis = stack.redis().await;
    redis::cmd("XLEN")
        .arg(CHAT_STREAM)
        .query_async(&mut redis)
        .await
        .expect("XLEN")
}

/// The entries chat-service counted as moved to its dead-letter stream.
async fn dead_lettered_metric(chat_http: &str) -> f64 {
    let stream = format!("stream=\"{CHAT_STREAM}\"");
    Stack::metric(
        chat_http,
        "switchyard_bus_entries_dead_lettered_total",
        &stream,
    )
    .await
}
