//! A gateway killed without a word (SIGKILL) while its clients chat: they
//! reconnect to another, `SYNC` from the last position they had, and miss
//! nothing; their friends see them offline within 30 s, and online again
//! once they are back.

use std::time::Duration;

use serde_json::json;
use switchyard_tests::chat::{Circle, EVENT_TIMEOUT, QUIET, chat_stack, sent};
use switchyard_tests::received::Received;
use switchyard_tests::{Client, GATEWAY, assert_status};
use tokio::time::Instant;

/// Messages Ana sends, in turn to Bob, to Cid and to their group.
const MESSAGES: usize = 60;
/// Between two of Ana's messages: the burst lasts a few seconds.
const PAUSE: Duration = Duration::from_millis(40);
/// A user of a gateway killed without a word looks offline at most this
/// long afterwards (the lease's life, plus a sweep).
const LAPSE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn clients_of_a_killed_gateway_reconnect_elsewhere_and_miss_nothing() {
    let mut stack = chat_stack().await;
    let Circle {
        mut ana,
        mut bob,
        mut cid,
        group,
    } = Circle::gather(&stack).await;
    // Where Bob and Cid stand before the burst, as a client learns it.
    let mut bob_has = Received::start(&mut bob.client).await;
    let mut cid_has = Received::start(&mut cid.client).await;
    ana.client.frames_within(QUIET).await;

    // Ana writes while Bob's and Cid's gateway is killed.
    let targets = [
        json!({"userId": bob.user_id}),
        json!({"userId": cid.user_id}),
        json!({"groupId": group}),
    ];
    let burst = tokio::spawn(async move {
        let mut sent_ids = Vec::new();
        for n in 0..MESSAGES {
            let to = targets[n % targets.len()].clone();
            let payload =
                json!({"to": to, "text": format!("burst {n}"), "clientMsgId": format!("b-{n}")});
            let reply = ana.client.chat("SEND_MESSAGE", payload).await;
            sent_ids.push((n % targets.len(), sent(&reply).message_id));
            tokio::time::sleep(PAUSE).await;
        }
        (ana, sent_ids)
    });
    tokio::time::sleep(PAUSE * (MESSAGES as u32) / 3).await;
    stack.kill_service(GATEWAY, 1).await;
    bob_has.read_until_closed(&mut bob.client).await;
    cid_has.read_until_closed(&mut cid.client).await;
    assert!(
        !bob_has.messages.is_empty(),
        "Bob heard part of the burst live before his gateway died"
    );

    // Bob comes back at once, through the other gateway, while Ana writes.
    let mut bob_back = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &bob_back.fastlogin(&bob.email, &bob.token).await,
        "USER_LOGGED",
    );
    bob_has.sync(&mut bob_back).await;
    let (mut ana, sent_ids) = burst.await.expect("the burst");

    // Cid stays away until Ana sees him offline, then comes back.
    let started = Instant::now();
    let mut about_bob = Vec::new();
    loop {
        let presence = ana
            .client
            .expect_event("PRESENCE", LAPSE.saturating_sub(started.elapsed()))
            .await;
        if presence["userId"] == cid.user_id.as_str() {
            assert_eq!(presence["online"], false, "{presence}");
            break;
        }
        about_bob.push(presence);
    }
    // Bob was back before his old connection lapsed: never offline.
    assert!(
        about_bob.iter().all(|p| p["online"] == true),
        "{about_bob:?}"
    );
    let mut cid_back = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &cid_back.fastlogin(&cid.email, &cid.token).await,
        "USER_LOGGED",
    );
    let presence = ana.client.expect_event("PRESENCE", EVENT_TIMEOUT).await;
    assert_eq!(
        (presence["userId"].as_str(), presence["online"].as_bool()),
        (Some(cid.user_id.as_str()), Some(true)),
        "{presence}"
    );
    cid_has.sync(&mut cid_back).await;

    // Each has every message meant for them, in order, once.
    bob_has.take_in(&mut bob_back).await;
    cid_has.take_in(&mut cid_back).await;
    let meant_for = |who: usize| -> Vec<String> {
        sent_ids
            .iter()
            .filter(|(target, _)| *target == who || *target == 2)
            .map(|(_, id)| id.clone())
            .collect()
    };
    assert_eq!(bob_has.in_order(), meant_for(0), "what Bob has");
    assert_eq!(cid_has.in_order(), meant_for(1), "what Cid has");

    // Both are online to Ana once everything has settled.
    let friends = ana.client.list_friends().await;
    for user in [&bob, &cid] {
        let online = friends["friends"]
            .as_array()
            .and_then(|list| list.iter().find(|f| f["userId"] == user.user_id.as_str()))
            .and_then(|f| f["online"].as_bool());
        assert_eq!(online, Some(true), "{} in {friends}", user.email);
    }
}
