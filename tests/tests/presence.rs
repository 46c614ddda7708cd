//! Who is online: friends are told when a user's first connection anywhere
//! opens and when their last one closes, or lapses because their gateway
//! died without a word; lists of friends and a group's members say who is.

use std::time::Duration;

use serde_json::Value;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, befriend, chat_stack, with_status};
use switchyard_tests::{Client, GATEWAY, assert_status};

/// A user of a gateway killed without a word looks offline at most this
/// long afterwards (the lease's life, plus a sweep).
const LAPSE: Duration = Duration::from_secs(30);
/// Long enough for a presence change that is coming to arrive.
const SETTLE: Duration = Duration::from_millis(1500);

/// `client`'s next `PRESENCE` about `user_id`, as (userId, online).
async fn presence(client: &mut Client, limit: Duration) -> (String, bool) {
    let event = client.expect_event("PRESENCE", limit).await;
    (
        event["userId"].as_str().unwrap_or_default().to_owned(),
        event["online"]
            .as_bool()
            .expect("PRESENCE says online or not"),
    )
}

fn online_of(list: &Value, user_id: &str) -> Option<bool> {
    list.as_array()?.iter().find(|u| u["userId"] == user_id)?["online"].as_bool()
}

#[tokio::test]
async fn friends_see_a_user_come_and_go_on_any_gateway() {
    let mut stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let mut cid = ChatUser::sign_up(&stack, 0, "cid@example.com", "Cid").await;
    befriend(&mut ana, &mut bob).await;
    let friends = ana.client.list_friends().await;
    assert_eq!(
        online_of(&friends["friends"], &bob.user_id),
        Some(true),
        "{friends}"
    );

    // Bob's only connection closes: Ana hears it; Cid, no friend, does not.
    bob.client.close().await;
    assert_eq!(
        presence(&mut ana.client, EVENT_TIMEOUT).await,
        (bob.user_id.clone(), false)
    );
    let friends = ana.client.list_friends().await;
    assert_eq!(
        online_of(&friends["friends"], &bob.user_id),
        Some(false),
        "{friends}"
    );

    // Back, on the other gateway.
    let mut bob_1 = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &bob_1.fastlogin("bob@example.com", &bob.token).await,
        "USER_LOGGED",
    );
    assert_eq!(
        presence(&mut ana.client, EVENT_TIMEOUT).await,
        (bob.user_id.clone(), true)
    );

    // A second connection, on the gateway about to die, and the first
    // closed: Bob is still online, so nobody is told anything.
    let mut bob_2 = Client::connect(&stack.gateway_url(1)).await;
    assert_status(
        &bob_2.fastlogin("bob@example.com", &bob.token).await,
        "USER_LOGGED",
    );
    bob_1.close().await;
    let frames = ana.client.frames_within(SETTLE).await;
    assert!(with_status(&frames, "PRESENCE").is_empty(), "{frames:?}");

    // A group's members say who is online.
    let group = ana.client.create_group("Hikers").await;
    let reply = ana
        .client
        .moderate("ADD_MEMBER", &group, &bob.user_id)
        .await;
    assert_status(&reply, "MEMBER_ADDED");
    let info = ana.client.group_info(&group).await;
    assert_eq!(
        online_of(&info["group"]["members"], &bob.user_id),
        Some(true),
        "{info}"
    );
    assert_eq!(
        online_of(&info["group"]["members"], &ana.user_id),
        Some(true),
        "{info}"
    );

    // Bob's gateway dies without a word: his lease lapses and Ana hears it.
    stack.kill_service(GATEWAY, 1).await;
    assert_eq!(
        presence(&mut ana.client, LAPSE).await,
        (bob.user_id.clone(), false)
    );
    let info = ana.client.group_info(&group).await;
    assert_eq!(
        online_of(&info["group"]["members"], &bob.user_id),
        Some(false),
        "{info}"
    );
    let frames = cid.client.frames_within(SETTLE).await;
    assert!(with_status(&frames, "PRESENCE").is_empty(), "{frames:?}");
}
