//! A gateway that stopped hearing Redis for a while (its subscription was
//! cut, Redis restarted) sends each of its clients the events they missed
//! meanwhile, in order and once, before the live ones after; and closes with
//! the code that says "reconnect and SYNC" a client it cannot vouch for.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, QUIET, befriend, chat_stack, sent};
use switchyard_tests::{Client, GATEWAY, assert_status};
use tokio::time::Instant;

/// Messages sent to Bob while his gateway hears nothing.
const MISSED: usize = 20;
/// How long a gateway may take to listen again once it runs.
const RECOVERY: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_gateway_that_stopped_hearing_redis_sends_its_clients_what_they_missed() {
    let mut stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;
    let group = ana.client.create_group("Climbers").await;
    assert_status(
        &ana.client
            .moderate("ADD_MEMBER", &group, &bob.user_id)
            .await,
        "MEMBER_ADDED",
    );
    bob.client.frames_within(QUIET).await;

    // Bob's gateway is frozen and its subscription cut: whatever Redis
    // publishes now never reaches it. Ana's gateway listens again at once.
    stack.pause_service(GATEWAY, 1);
    cut_subscriptions(&stack).await;
    let mut texts = Vec::new();
    for n in 0..MISSED {
        let text = format!("missed {n}");
        let to = if n % 2 == 0 {
            json!({"userId": bob.user_id})
        } else {
            json!({"groupId": group})
        };
        let payload = json!({"to": to, "text": text, "clientMsgId": format!("m-{n}")});
        sent(&send_when_heard(&mut ana.client, payload).await);
        texts.push(text);
    }

    // Bob's gateway runs again: Bob gets every one, in order, once, each
    // with its position, and then the live ones.
    stack.resume_service(GATEWAY, 1);
    let mut received = Vec::new();
    for _ in 0..MISSED {
        received.push(bob.client.expect_event("NEW_MESSAGE", RECOVERY).await);
    }
    let received_texts: Vec<&str> = received
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        received_texts, texts,
        "what Bob got after his gateway was back"
    );
    let positions: Vec<&str> = received.iter().map(position_of).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions rise: {positions:?}"
    );
    sent(&ana.client.send_to_user(&bob.user_id, "live", "live").await);
    let live = bob.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    assert_eq!(live["text"], "live", "{live}");
    let rest = bob.client.frames_within(QUIET).await;
    assert!(
        rest.iter().all(|f| f["rocketStatus"] != "NEW_MESSAGE"),
        "nothing twice: {rest:?}"
    );

    // Again, but the event histories are lost meanwhile (Redis restarted
    // without its data): the gateway cannot vouch for what Bob missed and
    // tells him to reconnect and SYNC, which says what was lost.
    let since = position_of(&live).to_owned();
    // Ana's gateway is in the same place as soon as it listens again.
    stack.pause_service(GATEWAY, 1);
    forget_histories(&stack).await;
    cut_subscriptions(&stack).await;
    assert_told_to_sync(&mut ana.client).await;
    let mut ana_back = ana.connect_again(&stack, 0).await;
    let payload = json!({"to": {"userId": bob.user_id}, "text": "lost", "clientMsgId": "lost"});
    sent(&send_when_heard(&mut ana_back, payload).await);
    stack.resume_service(GATEWAY, 1);
    assert_told_to_sync(&mut bob.client).await;
    let mut back = bob.connect_again(&stack, 1).await;
    let reply = back
        .request(json!({"action": "SYNC", "since": since}))
        .await;
    assert_status(&reply, "SYNC_GAP");
}

/// Waits for the server to close `client` with the code that says
/// "reconnect and SYNC".
async fn assert_told_to_sync(client: &mut Client) {
    let close = client.expect_close(RECOVERY).await;
    assert_eq!(
        close.map(|c| u16::from(c.code)),
        Some(4000),
        "closed with the code that says reconnect and SYNC"
    );
}

/// Cuts every gateway's Redis subscription, as a network fault would.
async fn cut_subscriptions(stack: &switchyard_tests::Stack) {
    let mut redis = stack.redis().await;
    let cut: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut redis)
        .await
        .expect("CLIENT KILL");
    assert!(cut >= 2, "each gateway had a subscription; cut {cut}");
}

/// Deletes the event histories and their epoch, as a Redis that restarted
/// without its data would have lost them.
async fn forget_histories(stack: &switchyard_tests::Stack) {
    assert!(
        stack.forget_redis_keys("*:history:*").await > 0,
        "histories and their epoch were kept"
    );
}

/// Sends a message as soon as the client's gateway, listening again after
/// its subscription was cut, takes actions.
async fn send_when_heard(client: &mut Client, payload: Value) -> Value {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let reply = client.chat("SEND_MESSAGE", payload.clone()).await;
        if reply["rocketStatus"] != "SERVICE_UNAVAILABLE" || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn position_of(event: &Value) -> &str {
    event["position"]
        .as_str()
        .expect("a kept event has a position")
}
