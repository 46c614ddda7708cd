//! Finding people and becoming friends, across two gateways: search by
//! nickname prefix and by exact e-mail (never revealing an address), a
//! request seen live, an answer, both sides' lists, and the end of it.

use mongodb::bson::doc;
use serde_json::{Value, json};
use switchyard_tests::assert_status;
use switchyard_tests::chat::{
    ChatUser, EVENT_TIMEOUT, FRIENDSHIPS, QUIET, all_keys, assert_refused, chat_stack, user_ids,
    with_status,
};

const ANA: &str = "ana@example.com";
const BOB: &str = "bob@example.com";
const ANDREA: &str = "andrea@example.com";
const XANDER: &str = "xander@example.com";

#[tokio::test]
async fn two_users_find_each_other_become_friends_and_part() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, ANA, "Anabel").await;
    let mut bob = ChatUser::sign_up(&stack, 1, BOB, "Bobby").await;
    let andrea = ChatUser::sign_up(&stack, 1, ANDREA, "andrea").await;
    // Contains "an" but does not start with it.
    let xander = ChatUser::sign_up(&stack, 0, XANDER, "Xander").await;
    let addresses = [ANA, BOB, ANDREA, XANDER];
    // A second tab of Ana's, on the other gateway.
    let mut ana_tab = ana.connect_again(&stack, 1).await;

    // A nickname prefix, in any case, finds the nicknames that start with it.
    let reply = bob
        .client
        .chat("SEARCH_USERS", json!({"nickname": "AN"}))
        .await;
    assert_status(&reply, "USERS_FOUND");
    let mut found = user_ids(&reply["users"]);
    found.sort();
    let mut expected = vec![ana.user_id.clone(), andrea.user_id.clone()];
    expected.sort();
    assert_eq!(
        found, expected,
        "prefix \"AN\" finds Anabel and andrea only: {reply}"
    );
    assert_reveals_no_address(&reply, &addresses);
    let anabel = reply["users"]
        .as_array()
        .expect("checked above")
        .iter()
        .find(|u| u["userId"] == ana.user_id.as_str())
        .expect("checked above");
    assert_eq!(anabel["nickname"], "Anabel");

    // An exact address finds its one user; part of one finds nobody.
    let reply = bob.client.chat("SEARCH_USERS", json!({"email": ANA})).await;
    assert_status(&reply, "USERS_FOUND");
    assert_eq!(
        user_ids(&reply["users"]),
        vec![ana.user_id.clone()],
        "{reply}"
    );
    assert_eq!(reply["users"][0]["nickname"], "Anabel");
    assert_reveals_no_address(&reply, &addresses);
    let reply = bob
        .client
        .chat("SEARCH_USERS", json!({"email": "ana@example"}))
        .await;
    assert_status(&reply, "USERS_FOUND");
    assert_eq!(user_ids(&reply["users"]), Vec::<String>::new(), "{reply}");

    // Bob asks; both of Ana's connections hear of it at once.
    let reply = bob.client.chat("FRIEND_REQUEST", ana.target()).await;
    assert_status(&reply, "FRIEND_REQUEST_SENT");
    assert_eq!(reply["userId"], ana.user_id.as_str(), "{reply}");
    assert_eq!(reply["user"]["nickname"], "Anabel", "{reply}");
    for tab in [&mut ana.client, &mut ana_tab] {
        let event = tab
            .expect_event("FRIEND_REQUEST_RECEIVED", EVENT_TIMEOUT)
            .await;
        assert_eq!(event["userId"], bob.user_id.as_str(), "{event}");
        assert_eq!(event["user"]["userId"], bob.user_id.as_str(), "{event}");
        assert_eq!(event["user"]["nickname"], "Bobby", "{event}");
        assert_reveals_no_address(&event, &addresses);
    }

    // Until Ana answers, it is a request on both sides, not a friendship.
    let bobs = bob.client.list_friends().await;
    assert_lists(&bobs, &[], &[], &[&ana.user_id]);
    let anas = ana.client.list_friends().await;
    assert_lists(&anas, &[], &[&bob.user_id], &[]);

    // Ana accepts on her first tab: Bob and her other tab are told.
    let reply = ana
        .client
        .chat(
            "FRIEND_RESPOND",
            json!({"userId": bob.user_id, "accept": true}),
        )
        .await;
    assert_status(&reply, "FRIEND_RESPONDED");
    assert_eq!(reply["accepted"], true, "{reply}");
    assert_eq!(reply["userId"], bob.user_id.as_str(), "{reply}");
    assert_eq!(reply["user"]["nickname"], "Bobby", "{reply}");
    let event = bob.client.expect_event("FRIEND_ADDED", EVENT_TIMEOUT).await;
    assert_eq!(event["userId"], ana.user_id.as_str(), "{event}");
    assert_eq!(event["user"]["nickname"], "Anabel", "{event}");
    assert_reveals_no_address(&event, &addresses);
    let event = ana_tab.expect_event("FRIEND_ADDED", EVENT_TIMEOUT).await;
    assert_eq!(event["userId"], bob.user_id.as_str(), "{event}");
    assert_eq!(event["user"]["nickname"], "Bobby", "{event}");
    // The accepting connection has its reply instead.
    let own = ana.client.frames_within(QUIET).await;
    assert!(
        with_status(&own, "FRIEND_ADDED").is_empty(),
        "the accepting connection gets no FRIEND_ADDED: {own:?}"
    );

    let bobs = bob.client.list_friends().await;
    assert_lists(&bobs, &[&ana.user_id], &[], &[]);
    assert_reveals_no_address(&bobs, &addresses);
    let anas = ana_tab.list_friends().await;
    assert_lists(&anas, &[&bob.user_id], &[], &[]);
    assert_eq!(anas["friends"][0]["nickname"], "Bobby", "{anas}");

    // Friends may write to each other.
    let reply = bob
        .client
        .send_to_user(&ana.user_id, "Hi Ana", "bob-1")
        .await;
    assert_status(&reply, "MESSAGE_SENT");
    assert_eq!(reply["temporary"], false, "between friends: {reply}");

    // Bob ends it; Ana hears of it on both tabs.
    let reply = bob.client.chat("FRIEND_REMOVE", ana.target()).await;
    assert_status(&reply, "FRIEND_REMOVED");
    assert_eq!(reply["userId"], ana.user_id.as_str(), "{reply}");
    for tab in [&mut ana.client, &mut ana_tab] {
        let event = tab.expect_event("FRIEND_REMOVED", EVENT_TIMEOUT).await;
        assert_eq!(event["userId"], bob.user_id.as_str(), "{event}");
    }
    assert_lists(&bob.client.list_friends().await, &[], &[], &[]);
    assert_lists(&ana.client.list_friends().await, &[], &[], &[]);
    assert!(
        stack.stored_where(FRIENDSHIPS, doc! {}).await.is_empty(),
        "nothing of the friendship is kept"
    );

    // And no longer may they write to each other.
    let reply = bob
        .client
        .send_to_user(&ana.user_id, "Still there?", "bob-2")
        .await;
    assert_refused(&reply, "FORBIDDEN");

    // Nobody else heard of any of it.
    for mut bystander in [andrea.client, xander.client] {
        let frames = bystander.frames_within(QUIET).await;
        assert!(frames.is_empty(), "bystanders get nothing: {frames:?}");
    }
}

#[tokio::test]
async fn a_declined_request_tells_the_asker_and_leaves_nothing() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, ANA, "Anabel").await;
    let mut bob = ChatUser::sign_up(&stack, 1, BOB, "Bobby").await;

    assert_status(
        &bob.client.chat("FRIEND_REQUEST", ana.target()).await,
        "FRIEND_REQUEST_SENT",
    );
    ana.client
        .expect_event("FRIEND_REQUEST_RECEIVED", EVENT_TIMEOUT)
        .await;
    let reply = ana
        .client
        .chat(
            "FRIEND_RESPOND",
            json!({"userId": bob.user_id, "accept": false}),
        )
        .await;
    assert_status(&reply, "FRIEND_RESPONDED");
    assert_eq!(reply["accepted"], false, "{reply}");

    let event = bob
        .client
        .expect_event("FRIEND_REQUEST_DECLINED", EVENT_TIMEOUT)
        .await;
    assert_eq!(event["userId"], ana.user_id.as_str(), "{event}");
    let frames = bob.client.frames_within(QUIET).await;
    assert!(
        with_status(&frames, "FRIEND_ADDED").is_empty(),
        "no friendship was made: {frames:?}"
    );
    assert_lists(&bob.client.list_friends().await, &[], &[], &[]);
    assert_lists(&ana.client.list_friends().await, &[], &[], &[]);
    assert!(stack.stored_where(FRIENDSHIPS, doc! {}).await.is_empty());

    // The request is gone: answering it again finds nothing, and they are
    // still strangers.
    let reply = ana
        .client
        .chat(
            "FRIEND_RESPOND",
            json!({"userId": bob.user_id, "accept": true}),
        )
        .await;
    assert_refused(&reply, "NOT_FOUND");
    assert_refused(
        &bob.client
            .send_to_user(&ana.user_id, "Please?", "bob-1")
            .await,
        "FORBIDDEN",
    );
}

/// Asserts the three lists of a `FRIENDS` reply, in any order.
#[track_caller]
fn assert_lists(reply: &Value, friends: &[&str], incoming: &[&str], outgoing: &[&str]) {
    assert_status(reply, "FRIENDS");
    for (field, expected) in [
        ("friends", friends),
        ("incoming", incoming),
        ("outgoing", outgoing),
    ] {
        let mut got = user_ids(&reply[field]);
        got.sort();
        let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        expected.sort();
        assert_eq!(got, expected, "{field} of {reply}");
    }
}

/// Asserts that a frame shows nobody's e-mail address: no `email` field
/// anywhere in it, and none of `addresses` in its text.
#[track_caller]
fn assert_reveals_no_address(frame: &Value, addresses: &[&str]) {
    let keys = all_keys(frame);
    assert!(
        !keys.iter().any(|k| k.eq_ignore_ascii_case("email")),
        "a frame about other users has no email field: {frame}"
    );
    let text = frame.to_string().to_lowercase();
    for address in addresses {
        assert!(
            !text.contains(address),
            "{address} appears in a frame about other users: {frame}"
        );
    }
}
