//! What a person sees live while others read and type: read receipts and
//! "typing", across both gateways, only to those in the conversation, and
//! typing at most once in 3 s per user and conversation.

use serde_json::json;
use switchyard_tests::assert_status;
use switchyard_tests::chat::{
    ChatUser, EVENT_TIMEOUT, QUIET, assert_refused, befriend, chat_stack, sent, with_status,
};

#[tokio::test]
async fn a_read_mark_is_pushed_to_the_other_participants_and_the_readers_other_connections() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let mut cid = ChatUser::sign_up(&stack, 0, "cid@example.com", "Cid").await;
    befriend(&mut ana, &mut bob).await;
    let message = sent(&ana.client.send_to_user(&bob.user_id, "Hi", "m-1").await);
    let mut bob_tab = bob.connect_again(&stack, 0).await;

    let reply = bob
        .client
        .chat(
            "MARK_READ",
            json!({"conversationId": message.conversation_id, "seq": 5}),
        )
        .await;
    assert_status(&reply, "READ_MARKED");
    assert_eq!(reply["seq"], 1, "clamped to the last message: {reply}");
    let expected =
        json!({"conversationId": message.conversation_id, "userId": bob.user_id, "seq": 1});
    for (who, client) in [("Ana", &mut ana.client), ("Bob's other tab", &mut bob_tab)] {
        let receipt = client.expect_event("READ_RECEIPT", EVENT_TIMEOUT).await;
        for key in ["conversationId", "userId", "seq"] {
            assert_eq!(receipt[key], expected[key], "{who}: {receipt}");
        }
    }
    // Not the reading connection (it has the reply), and nobody outside.
    assert!(with_status(&bob.client.frames_within(QUIET).await, "READ_RECEIPT").is_empty());
    assert!(with_status(&cid.client.frames_within(QUIET).await, "READ_RECEIPT").is_empty());

    // The caller's unread count follows the mark.
    let conversations = bob.client.conversations().await;
    let unread = conversations
        .iter()
        .find(|c| c["conversationId"] == message.conversation_id.as_str())
        .map(|c| c["unread"].clone());
    assert_eq!(unread, Some(json!(0)), "{conversations:?}");
    let conversations = cid.client.conversations().await;
    assert!(conversations.is_empty(), "{conversations:?}");
}

#[tokio::test]
async fn typing_reaches_the_others_in_the_conversation_at_most_once_in_3_seconds() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let mut cid = ChatUser::sign_up(&stack, 1, "cid@example.com", "Cid").await;
    befriend(&mut ana, &mut bob).await;
    let direct = sent(&ana.client.send_to_user(&bob.user_id, "Hi", "m-1").await).conversation_id;
    bob.client.frames_within(QUIET).await;

    let typing = json!({"conversationId": direct});
    let reply = ana.client.chat("TYPING", typing.clone()).await;
    assert_status(&reply, "TYPING_SENT");
    assert_eq!(reply["forwarded"], true, "{reply}");
    let event = bob.client.expect_event("TYPING", EVENT_TIMEOUT).await;
    assert_eq!(event["userId"], ana.user_id.as_str());
    assert_eq!(event["conversationId"], direct.as_str());

    // Again at once, from another connection on the other gateway: noted,
    // not forwarded.
    let mut ana_tab = ana.connect_again(&stack, 1).await;
    let reply = ana_tab.chat("TYPING", typing.clone()).await;
    assert_eq!(reply["forwarded"], false, "{reply}");
    assert!(with_status(&bob.client.frames_within(QUIET).await, "TYPING").is_empty());
    // The typist's own connections and outsiders hear nothing.
    assert!(with_status(&ana.client.frames_within(QUIET).await, "TYPING").is_empty());
    assert!(with_status(&cid.client.frames_within(QUIET).await, "TYPING").is_empty());

    // After the window, forwarded again.
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    let reply = ana.client.chat("TYPING", typing.clone()).await;
    assert_eq!(reply["forwarded"], true, "{reply}");
    bob.client.expect_event("TYPING", EVENT_TIMEOUT).await;

    // Someone outside the conversation cannot type into it.
    let reply = cid.client.chat("TYPING", typing).await;
    assert_refused(&reply, "NOT_FOUND");
    assert!(with_status(&bob.client.frames_within(QUIET).await, "TYPING").is_empty());

    // In a group: every other member, on any gateway.
    let group = ana.client.create_group("Hikers").await;
    for user in [&bob, &cid] {
        let reply = ana
            .client
            .moderate("ADD_MEMBER", &group, &user.user_id)
            .await;
        assert_status(&reply, "MEMBER_ADDED");
    }
    bob.client.settle().await;
    cid.client.settle().await;
    let reply = cid
        .client
        .chat("TYPING", json!({"conversationId": format!("g:{group}")}))
        .await;
    assert_eq!(reply["forwarded"], true, "{reply}");
    for client in [&mut ana.client, &mut bob.client] {
        let event = client.expect_event("TYPING", EVENT_TIMEOUT).await;
        assert_eq!(event["userId"], cid.user_id.as_str());
    }
}
