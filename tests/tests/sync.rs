//! `SYNC`: a client that was away gets every event it missed, on any
//! gateway, in order, once, each exactly as it was pushed; and hears
//! `SYNC_GAP` rather than a partial replay when that cannot be vouched for.

use serde_json::{Value, json};
use switchyard_tests::assert_status;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, QUIET, befriend, chat_stack, sent};

/// Direct and group messages sent while the client is away.
const MESSAGES: usize = 100;
/// Promotions and demotions while it is away: state events.
const STATE_CHANGES: usize = 10;

#[tokio::test]
async fn a_client_that_was_away_gets_exactly_what_it_missed_then_live_events() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 0, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;
    let group = ana.client.create_group("Climbers").await;
    assert_status(
        &ana.client
            .moderate("ADD_MEMBER", &group, &bob.user_id)
            .await,
        "MEMBER_ADDED",
    );
    // Bob's first connection stays and sees everything live: the record of
    // what was pushed. His second goes away.
    let mut away = bob.connect_again(&stack, 0).await;
    let witness = &mut bob.client;
    witness.frames_within(QUIET).await;
    away.frames_within(QUIET).await;

    sent(&ana.client.send_to_user(&bob.user_id, "before", "m-0").await);
    let before = away.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    let since = position_of(&before).to_owned();
    witness.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;

    // Bob's second connection goes away; a lot happens.
    drop(away);
    for n in 0..MESSAGES {
        let reply = if n % 2 == 0 {
            ana.client
                .send_to_user(&bob.user_id, &format!("direct {n}"), &format!("d-{n}"))
                .await
        } else {
            ana.client
                .send_to_group(&group, &format!("group {n}"), &format!("g-{n}"))
                .await
        };
        sent(&reply);
    }
    for n in 0..STATE_CHANGES {
        let action = if n % 2 == 0 {
            "PROMOTE_ADMIN"
        } else {
            "DEMOTE_ADMIN"
        };
        let reply = ana.client.moderate(action, &group, &bob.user_id).await;
        assert!(
            reply["rocketStatus"]
                .as_str()
                .is_some_and(|s| s.starts_with("ADMIN_")),
            "{reply}"
        );
    }
    let pushed = positioned(witness.frames_within(QUIET * 3).await);
    assert!(
        pushed.len() >= MESSAGES + STATE_CHANGES,
        "the live connection got only {} positioned events",
        pushed.len()
    );

    // Back, through the other gateway.
    let mut back = bob.connect_again(&stack, 1).await;
    let reply = back
        .request(json!({"action": "SYNC", "since": since}))
        .await;
    assert_status(&reply, "SYNCED");
    let replayed = reply["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        replayed.len(),
        pushed.len(),
        "the replay and the live record differ in length"
    );
    for (n, (replayed, pushed)) in replayed.iter().zip(&pushed).enumerate() {
        assert_eq!(replayed, pushed, "event {n} differs from what was pushed");
    }
    let positions: Vec<&str> = replayed.iter().map(position_of).collect();
    assert_eq!(reply["position"], *positions.last().expect("events"));

    // Then live, with nothing repeated.
    sent(
        &ana.client
            .send_to_user(&bob.user_id, "after", "m-after")
            .await,
    );
    let live = back.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    assert_eq!(live["text"], "after", "{live}");
    let rest = back.frames_within(QUIET).await;
    assert!(
        rest.iter().all(|f| f["rocketStatus"] != "NEW_MESSAGE"),
        "{rest:?}"
    );
    // And a SYNC from the newest position replays nothing.
    let reply = back
        .request(json!({"action": "SYNC", "since": position_of(&live)}))
        .await;
    assert_status(&reply, "SYNCED");
    assert_eq!(reply["events"], json!([]), "{reply}");
}

#[tokio::test]
async fn what_cannot_be_replayed_whole_is_a_gap_and_bad_positions_are_refused() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;
    sent(&ana.client.send_to_user(&bob.user_id, "hello", "m-1").await);
    let event = bob.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    let since = position_of(&event).to_owned();

    // Not logged in, or not a position: refused.
    let mut anonymous = switchyard_tests::client::Client::connect(&stack.gateway_url(0)).await;
    let reply = anonymous
        .request(json!({"action": "SYNC", "since": since}))
        .await;
    assert_status(&reply, "UNAUTHORIZED");
    for bad in [json!("yesterday"), json!(42), json!("1:2")] {
        let reply = bob
            .client
            .request(json!({"action": "SYNC", "since": bad}))
            .await;
        assert_status(&reply, "BAD_REQUEST");
    }

    // Older than the window (one hour): a gap, with where to go on from.
    let (epoch, _) = since.split_once(':').expect("epoch:id");
    let ancient = format!("{epoch}:1000-0");
    let reply = bob
        .client
        .request(json!({"action": "SYNC", "since": ancient}))
        .await;
    assert_status(&reply, "SYNC_GAP");
    assert!(reply["position"].as_str().is_some(), "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("LIST_CONVERSATIONS"))
    );

    // The histories lost (Redis restarted without its data): a new epoch,
    // and the old position is a gap, not an empty replay.
    assert!(
        stack.forget_redis_keys("switchyard:history:*").await > 0,
        "no histories were kept"
    );
    sent(
        &ana.client
            .send_to_user(&bob.user_id, "after the loss", "m-2")
            .await,
    );
    let after = bob.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    assert_ne!(
        position_of(&after).split_once(':').map(|p| p.0),
        Some(epoch)
    );
    let reply = bob
        .client
        .request(json!({"action": "SYNC", "since": since}))
        .await;
    assert_status(&reply, "SYNC_GAP");
}

fn position_of(event: &Value) -> &str {
    event["position"]
        .as_str()
        .unwrap_or_else(|| panic!("an event without a position: {event}"))
}

/// The frames that carry a position (kept events; signals carry none).
fn positioned(frames: Vec<Value>) -> Vec<Value> {
    frames
        .into_iter()
        .filter(|f| f.get("position").is_some())
        .collect()
}
