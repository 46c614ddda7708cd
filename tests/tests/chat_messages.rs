//! One-to-one messages across two gateways: numbering, live delivery to
//! every connection but the sending one, history pages, unread counts,
//! temporary conversations between group members, and resends that store
//! nothing twice.

use std::time::Duration;

use mongodb::bson::doc;
use serde_json::{Value, json};
use switchyard_tests::chat::{
    ChatUser, EVENT_TIMEOUT, MESSAGES, QUIET, add_member, assert_refused, befriend, chat_stack,
    history_texts, messages_of, sent, with_status,
};
use switchyard_tests::{Client, Stack, assert_status};

const ANA: &str = "ana@example.com";
const BOB: &str = "bob@example.com";

const MESSAGE_COUNT: i64 = 25;

#[tokio::test]
async fn a_conversation_is_numbered_delivered_paged_and_read() {
    let stack = chat_stack().await;
    let (mut ana, mut bob) = ana_and_bob_as_friends(&stack).await;
    // Ana's other connections: one on the gateway she sends through, one
    // on the other.
    let mut ana_same_gateway = ana.connect_again(&stack, 0).await;
    let mut ana_other_gateway = ana.connect_again(&stack, 1).await;

    let mut sent_messages = Vec::new();
    for n in 1..=MESSAGE_COUNT {
        let reply = ana
            .client
            .send_to_user(&bob.user_id, &format!("message {n}"), &format!("ana-{n}"))
            .await;
        let message = sent(&reply);
        assert_eq!(message.seq, n, "seq counts up from 1 by one: {reply}");
        assert!(!message.temporary, "friends write permanently: {reply}");
        assert_eq!(reply["clientMsgId"], format!("ana-{n}"), "{reply}");
        assert!(reply["sentAt"].is_i64(), "{reply}");
        sent_messages.push(message);
    }
    let conversation = sent_messages[0].conversation_id.clone();
    assert!(
        sent_messages
            .iter()
            .all(|m| m.conversation_id == conversation),
        "one conversation: {sent_messages:?}"
    );
    let mut ids: Vec<&str> = sent_messages
        .iter()
        .map(|m| m.message_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        sent_messages.len(),
        "every message has its own id"
    );

    // Bob, on the other gateway, and Ana's other connections get every
    // message live, in order.
    for (who, client) in [
        ("Bob", &mut bob.client),
        (
            "Ana's connection on the same gateway",
            &mut ana_same_gateway,
        ),
        (
            "Ana's connection on the other gateway",
            &mut ana_other_gateway,
        ),
    ] {
        for (n, message) in (1..).zip(&sent_messages) {
            let event = client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
            assert_eq!(
                event["messageId"],
                message.message_id.as_str(),
                "{who}: {event}"
            );
            assert_eq!(event["seq"], n, "{who}: {event}");
            assert_eq!(
                event["conversationId"],
                conversation.as_str(),
                "{who}: {event}"
            );
            assert_eq!(event["senderId"], ana.user_id.as_str(), "{who}: {event}");
            assert_eq!(event["clientMsgId"], format!("ana-{n}"), "{who}: {event}");
            assert_eq!(event["text"], format!("message {n}"), "{who}: {event}");
            assert_eq!(event["attachments"], json!([]), "{who}: {event}");
            assert_eq!(
                event["conversation"],
                json!({"conversationId": conversation, "kind": "direct", "groupId": null, "temporary": false}),
                "{who}: {event}"
            );
        }
    }
    // The sending connection has its replies, not the events.
    let own = ana.client.frames_within(QUIET).await;
    assert!(
        with_status(&own, "NEW_MESSAGE").is_empty(),
        "the sending connection gets no NEW_MESSAGE: {own:?}"
    );

    // Pages of ten, newest first, each in ascending order.
    let page = bob.client.history(&conversation, None, Some(10)).await;
    assert_page(&page, 16..=25, true);
    let page = bob.client.history(&conversation, Some(16), Some(10)).await;
    assert_page(&page, 6..=15, true);
    let page = bob.client.history(&conversation, Some(6), Some(10)).await;
    assert_page(&page, 1..=5, false);
    // The whole conversation fits the default page, for either user.
    let all = ana.client.history(&conversation, None, None).await;
    assert_page(&all, 1..=MESSAGE_COUNT, false);
    let stored: Vec<&str> = messages_of(&all)
        .iter()
        .map(|m| m["messageId"].as_str().unwrap_or_default())
        .collect();
    let replied: Vec<&str> = sent_messages
        .iter()
        .map(|m| m.message_id.as_str())
        .collect();
    assert_eq!(stored, replied, "history holds the messages that were sent");

    // Bob has all 25 unread; Ana, who sent them, none.
    let entry = only_conversation(&bob.client.conversations().await, &conversation);
    assert_eq!(entry["kind"], "direct", "{entry}");
    assert_eq!(entry["temporary"], false, "{entry}");
    assert_eq!(entry["lastSeq"], MESSAGE_COUNT, "{entry}");
    assert_eq!(entry["unread"], MESSAGE_COUNT, "{entry}");
    assert_eq!(entry["with"]["userId"], ana.user_id.as_str(), "{entry}");
    assert_eq!(entry["with"]["nickname"], "Ana", "{entry}");
    let last = &entry["lastMessage"];
    assert_eq!(last["seq"], MESSAGE_COUNT, "{entry}");
    assert_eq!(last["text"], "message 25", "{entry}");
    assert_eq!(last["senderId"], ana.user_id.as_str(), "{entry}");
    assert_eq!(
        last["messageId"],
        sent_messages[24].message_id.as_str(),
        "{entry}"
    );
    let entry = only_conversation(&ana_other_gateway.conversations().await, &conversation);
    assert_eq!(
        entry["unread"], 0,
        "the sender has read what she sent: {entry}"
    );
    assert_eq!(entry["with"]["userId"], bob.user_id.as_str(), "{entry}");

    // Reading part of it, then all of it; a mark never moves back.
    mark_read(&mut bob.client, &conversation, 20, 20).await;
    assert_unread(&mut bob.client, &conversation, 5).await;
    mark_read(&mut bob.client, &conversation, 3, 3).await;
    assert_unread(&mut bob.client, &conversation, 5).await;
    mark_read(&mut bob.client, &conversation, 1000, MESSAGE_COUNT).await;
    assert_unread(&mut bob.client, &conversation, 0).await;

    // A reply continues the numbering and is unread for Ana.
    let reply = sent(
        &bob.client
            .send_to_user(&ana.user_id, "message 26", "bob-1")
            .await,
    );
    assert_eq!(reply.seq, MESSAGE_COUNT + 1);
    assert_eq!(reply.conversation_id, conversation);
    assert_unread(&mut ana.client, &conversation, 1).await;
    assert_unread(&mut bob.client, &conversation, 0).await;
}

#[tokio::test]
async fn members_of_a_group_write_temporarily_while_they_share_it() {
    let stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, ANA, "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, BOB, "Bob").await;
    let group_id = ana.client.create_group("Walkers").await;
    add_member(&mut ana, &group_id, &mut bob).await;

    // Not friends, but in one group: both may write, temporarily.
    let first = sent(
        &ana.client
            .send_to_user(&bob.user_id, "Hello from the group", "ana-1")
            .await,
    );
    assert!(
        first.temporary,
        "a conversation through a group is temporary"
    );
    let event = bob.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    assert_eq!(event["messageId"], first.message_id.as_str(), "{event}");
    assert_eq!(event["conversation"]["temporary"], true, "{event}");
    assert_eq!(event["conversation"]["kind"], "direct", "{event}");
    let second = sent(
        &bob.client
            .send_to_user(&ana.user_id, "Hello back", "bob-1")
            .await,
    );
    assert!(second.temporary);
    assert_eq!(second.conversation_id, first.conversation_id);
    assert_eq!(second.seq, 2);
    ana.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    let conversations = ana.client.conversations().await;
    let entry = conversations
        .iter()
        .find(|c| c["conversationId"] == first.conversation_id.as_str())
        .unwrap_or_else(|| panic!("the conversation is listed: {conversations:?}"));
    assert_eq!(entry["temporary"], true, "{entry}");
    assert_eq!(entry["with"]["userId"], bob.user_id.as_str(), "{entry}");

    // Bob leaves: they share no group any more, and neither may write.
    let reply = bob
        .client
        .chat("LEAVE_GROUP", json!({"groupId": group_id}))
        .await;
    assert_status(&reply, "GROUP_LEFT");
    assert_refused(
        &ana.client
            .send_to_user(&bob.user_id, "Still there?", "ana-2")
            .await,
        "FORBIDDEN",
    );
    assert_refused(
        &bob.client
            .send_to_user(&ana.user_id, "Can you hear me?", "bob-2")
            .await,
        "FORBIDDEN",
    );
    let frames = bob.client.frames_within(QUIET).await;
    assert!(
        with_status(&frames, "NEW_MESSAGE").is_empty(),
        "a refused message is not delivered: {frames:?}"
    );

    // What they wrote stays readable to both, and nothing was added.
    for client in [&mut ana.client, &mut bob.client] {
        let history = client.history(&first.conversation_id, None, None).await;
        assert_eq!(
            history_texts(&history),
            vec!["Hello from the group", "Hello back"],
            "{history}"
        );
        assert_eq!(history["hasMore"], false, "{history}");
    }
    let stored = stack
        .stored_where(MESSAGES, doc! {"conversation_id": &first.conversation_id})
        .await;
    assert_eq!(stored.len(), 2, "{stored:?}");
}

#[tokio::test]
async fn a_resent_message_is_stored_and_delivered_once() {
    let stack = chat_stack().await;
    let (mut ana, mut bob) = ana_and_bob_as_friends(&stack).await;
    let mut ana_phone = ana.connect_again(&stack, 1).await;

    let first = sent(
        &ana.client
            .send_to_user(&bob.user_id, "Lunch?", "lunch")
            .await,
    );
    assert_eq!(first.seq, 1);

    // The same clientMsgId again, as a client does after a lost reply:
    // from the same connection, with other text, and from her other
    // connection. Each answer is the first message.
    let resends = [
        ana.client
            .send_to_user(&bob.user_id, "Lunch?", "lunch")
            .await,
        ana.client
            .send_to_user(&bob.user_id, "Lunch at noon?", "lunch")
            .await,
        ana_phone
            .send_to_user(&bob.user_id, "Lunch?", "lunch")
            .await,
    ];
    for reply in &resends {
        assert_eq!(
            sent(reply),
            first,
            "a resend answers the first message: {reply}"
        );
    }

    // Two copies of a new message sent at once: one message.
    let replies = ana
        .client
        .request_all(
            vec![send_request(&bob.user_id, "Or dinner?", "dinner"); 2],
            Duration::from_secs(15),
        )
        .await;
    let dinner = sent(&replies[0]);
    assert_eq!(sent(&replies[1]), dinner, "both copies answer one message");
    assert_eq!(dinner.seq, 2, "the resends took no number");

    let history = bob.client.history(&first.conversation_id, None, None).await;
    assert_eq!(
        history_texts(&history),
        vec!["Lunch?", "Or dinner?"],
        "{history}"
    );
    let stored = stack.stored_where(MESSAGES, doc! {}).await;
    assert_eq!(stored.len(), 2, "{stored:?}");

    // Bob saw each message once.
    let frames = bob.client.frames_within(QUIET).await;
    let seen: Vec<&str> = with_status(&frames, "NEW_MESSAGE")
        .iter()
        .map(|f| f["messageId"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        seen,
        vec![first.message_id.as_str(), dinner.message_id.as_str()],
        "one NEW_MESSAGE per message: {frames:?}"
    );
    // So did Ana's phone, which also sent one of the resends.
    let frames = ana_phone.frames_within(QUIET).await;
    assert_eq!(
        with_status(&frames, "NEW_MESSAGE").len(),
        2,
        "one NEW_MESSAGE per message on the sender's other connection: {frames:?}"
    );
}

fn send_request(user_id: &str, text: &str, client_msg_id: &str) -> Value {
    json!({
        "action": "SEND_MESSAGE",
        "to": {"userId": user_id},
        "text": text,
        "clientMsgId": client_msg_id,
    })
}

/// Asserts a `HISTORY` page holds exactly the messages `seqs`, ascending,
/// with their texts, and its `hasMore`.
#[track_caller]
fn assert_page(page: &Value, seqs: std::ops::RangeInclusive<i64>, has_more: bool) {
    assert_status(page, "HISTORY");
    let got: Vec<i64> = messages_of(page)
        .iter()
        .map(|m| m["seq"].as_i64().unwrap_or(-1))
        .collect();
    let expected: Vec<i64> = seqs.collect();
    assert_eq!(got, expected, "the page's seqs: {page}");
    let texts: Vec<String> = expected.iter().map(|n| format!("message {n}")).collect();
    assert_eq!(history_texts(page), texts);
    assert_eq!(page["hasMore"], has_more, "hasMore of {page}");
}

/// Both users of a conversation write at once, each many messages without
/// waiting for answers: every message gets its own number, the numbers run
/// from 1 with no gap, and the conversation's last message is the one with
/// the highest number, whichever write came last.
#[tokio::test]
async fn messages_written_at_once_by_both_users_are_numbered_without_gaps() {
    const EACH: i64 = 12;
    let stack = chat_stack().await;
    let (mut ana, mut bob) = ana_and_bob_as_friends(&stack).await;
    let burst = |to: &str, who: &str| -> Vec<Value> {
        (1..=EACH)
            .map(|n| send_request(to, &format!("{who} {n}"), &format!("{who}-{n}")))
            .collect()
    };
    let (ana_burst, bob_burst) = (burst(&bob.user_id, "ana"), burst(&ana.user_id, "bob"));
    let (ana_replies, bob_replies) = tokio::join!(
        ana.client.request_all(ana_burst, Duration::from_secs(30)),
        bob.client.request_all(bob_burst, Duration::from_secs(30)),
    );
    let mut seqs: Vec<i64> = ana_replies
        .iter()
        .chain(&bob_replies)
        .map(|reply| sent(reply).seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=2 * EACH).collect::<Vec<_>>(),
        "one number each, no gap"
    );

    let conversation_id = sent(&ana_replies[0]).conversation_id;
    let history = bob
        .client
        .history(&conversation_id, None, Some(2 * EACH))
        .await;
    let stored: Vec<i64> = messages_of(&history)
        .iter()
        .map(|m| m["seq"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(stored, (1..=2 * EACH).collect::<Vec<_>>(), "{history}");
    let newest = messages_of(&history)
        .last()
        .map(|m| m["text"].clone())
        .unwrap_or_default();
    let conversations = ana.client.conversations().await;
    let listed = only_conversation(&conversations, &conversation_id);
    assert_eq!(listed["lastSeq"], 2 * EACH, "{listed}");
    assert_eq!(listed["lastMessage"]["seq"], 2 * EACH, "{listed}");
    assert_eq!(listed["lastMessage"]["text"], newest, "{listed}");
}

/// A handler that stored a message and died before moving the
/// conversation's last sequence number on leaves the conversation one
/// behind. The next message must not reuse that number nor skip one, and a
/// resend of the orphan must find it.
#[tokio::test]
async fn a_message_stored_by_a_handler_that_died_keeps_its_number() {
    let stack = chat_stack().await;
    let (mut ana, mut bob) = ana_and_bob_as_friends(&stack).await;
    let first = sent(&ana.client.send_to_user(&bob.user_id, "One", "one").await);

    // The state such a crash leaves: the message is stored, the
    // conversation still says 1.
    let orphan_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    stack
        .mongo()
        .collection::<mongodb::bson::Document>(MESSAGES)
        .insert_one(doc! {
            "_id": format!("{}/two", ana.user_id),
            "message_id": orphan_id,
            "conversation_id": &first.conversation_id,
            "seq": 2_i64,
            "sender_id": &ana.user_id,
            "client_msg_id": "two",
            "text": "Two",
            "attachments": [],
            "sent_at_ms": 1_i64,
        })
        .await
        .expect("storing the orphan message");

    let third = sent(
        &ana.client
            .send_to_user(&bob.user_id, "Three", "three")
            .await,
    );
    assert_eq!(third.seq, 3, "the orphan's number is not reused");
    let resend = sent(&ana.client.send_to_user(&bob.user_id, "Two", "two").await);
    assert_eq!(
        (resend.message_id.as_str(), resend.seq),
        (orphan_id, 2),
        "a resend of the orphan answers the stored message"
    );

    let history = bob.client.history(&first.conversation_id, None, None).await;
    assert_eq!(
        history_texts(&history),
        vec!["One", "Two", "Three"],
        "{history}"
    );
    let seqs: Vec<i64> = messages_of(&history)
        .iter()
        .map(|m| m["seq"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3], "{history}");
    let conversations = bob.client.conversations().await;
    let listed = only_conversation(&conversations, &first.conversation_id);
    assert_eq!(listed["lastSeq"], 3, "{listed}");
    assert_eq!(listed["lastMessage"]["text"], "Three", "{listed}");

    // Once they are no longer friends Ana may send nothing new, but a resend
    // of what was stored still gets its first answer.
    assert_status(
        &bob.client.chat("FRIEND_REMOVE", ana.target()).await,
        "FRIEND_REMOVED",
    );
    let late_resend = sent(
        &ana.client
            .send_to_user(&bob.user_id, "Three", "three")
            .await,
    );
    assert_eq!(late_resend, third, "a resend after the friendship ended");
    assert_refused(
        &ana.client.send_to_user(&bob.user_id, "Four", "four").await,
        "FORBIDDEN",
    );
}

/// Ana on the first gateway and Bob on the second, friends.
async fn ana_and_bob_as_friends(stack: &Stack) -> (ChatUser, ChatUser) {
    let mut ana = ChatUser::sign_up(stack, 0, ANA, "Ana").await;
    let mut bob = ChatUser::sign_up(stack, 1, BOB, "Bob").await;
    befriend(&mut ana, &mut bob).await;
    (ana, bob)
}

/// The one entry of `conversations`, which must be `conversation_id`.
#[track_caller]
fn only_conversation(conversations: &[Value], conversation_id: &str) -> Value {
    assert_eq!(
        conversations.len(),
        1,
        "one conversation: {conversations:?}"
    );
    assert_eq!(conversations[0]["conversationId"], conversation_id);
    conversations[0].clone()
}

async fn mark_read(client: &mut Client, conversation_id: &str, seq: i64, echoed: i64) {
    let reply = client
        .chat(
            "MARK_READ",
            json!({"conversationId": conversation_id, "seq": seq}),
        )
        .await;
    assert_status(&reply, "READ_MARKED");
    assert_eq!(
        reply["seq"], echoed,
        "MARK_READ echoes the clamped seq: {reply}"
    );
}

async fn assert_unread(client: &mut Client, conversation_id: &str, unread: i64) {
    let conversations = client.conversations().await;
    let entry = only_conversation(&conversations, conversation_id);
    assert_eq!(entry["unread"], unread, "{entry}");
}
