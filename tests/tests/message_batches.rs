//! Under load, a stored message costs chat-service less than one database
//! command: what a message needs to know (friends, members, the
//! conversation) is remembered, and messages are written in batches, then
//! published and acknowledged together. The
//! numbers in each conversation stay gapless and ordered, every message
//! reaches its recipient, and a change (a friendship ended) holds at once.
//! A batch that touches a hundred conversations is written too: FerretDB
//! holds a connection per statement of an update command, so the message
//! log sends them in small commands.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use switchyard_tests::chat::{ChatUser, Circle, EVENT_TIMEOUT, assert_refused, befriend, sent};
use switchyard_tests::ports::free_port;
use switchyard_tests::redis_commands::RedisCommands;
use switchyard_tests::{CHAT, Stack, assert_status};

/// Pairs of friends writing at once.
const PAIRS: usize = 6;
/// Messages each sender has in flight together.
const PER_SENDER: usize = 24;

#[tokio::test]
async fn a_message_under_load_costs_at_most_one_database_command() {
    let chat_http = format!("127.0.0.1:{}", free_port());
    let stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .generous_limits()
        .service_env(CHAT, "SWITCHYARD__HTTP__LISTEN", &chat_http)
        .start()
        .await;
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    for pair in 0..PAIRS {
        let mut sender = ChatUser::sign_up(
            &stack,
            0,
            &format!("s{pair}@example.com"),
            &format!("S{pair}"),
        )
        .await;
        let mut reader = ChatUser::sign_up(
            &stack,
            1,
            &format!("r{pair}@example.com"),
            &format!("R{pair}"),
        )
        .await;
        befriend(&mut sender, &mut reader).await;
        senders.push(sender);
        readers.push(reader);
    }
    // A first message each: conversations are created and what a message
    // needs is read once.
    for (sender, reader) in senders.iter_mut().zip(&readers) {
        let reply = sender
            .client
            .send_to_user(&reader.user_id, "hello", "first")
            .await;
        assert_eq!(sent(&reply).seq, 1, "{reply}");
    }

    let before = commands(&chat_http).await;
    let runs_before = finishing_runs(&chat_http).await;
    let mut redis_commands = RedisCommands::from_now(&stack).await;
    let replies = join_all(senders.iter_mut().zip(&readers).map(|(sender, reader)| {
        let requests = (0..PER_SENDER)
            .map(|n| {
                json!({
                    "action": "SEND_MESSAGE",
                    "to": {"userId": reader.user_id},
                    "text": format!("message {n}"),
                    "clientMsgId": format!("m-{n}"),
                })
            })
            .collect();
        sender.client.request_all(requests, Duration::from_secs(30))
    }))
    .await;
    let spent = commands(&chat_http).await - before;
    let runs = finishing_runs(&chat_http).await - runs_before;
    let scripts = redis_commands.scripts().await as f64;
    let messages = (PAIRS * PER_SENDER) as f64;
    eprintln!("{spent} database commands for {messages} messages");
    eprintln!("{runs} runs finishing them, {scripts} Redis scripts in all");
    assert!(
        spent / messages <= 1.0,
        "{spent} database commands for {messages} messages: {} per message",
        spent / messages
    );
    // One script admits each message; the messages a batch made durable
    // are published and acknowledged together, not by a script each.
    assert!(
        scripts / messages <= 1.6,
        "{scripts} Redis scripts for {messages} messages ({runs} runs finishing them)"
    );

    // Each conversation numbered 2, 3, … with no gap and no repeat; every
    // message reached its reader once, under the number its sender was told.
    for (pair, (replies, reader)) in replies.iter().zip(readers.iter_mut()).enumerate() {
        let told: BTreeMap<i64, String> = replies
            .iter()
            .enumerate()
            .map(|(n, reply)| (sent(reply).seq, format!("message {n}")))
            .collect();
        let expected: Vec<i64> = (2..).take(PER_SENDER).collect();
        assert_eq!(
            told.keys().copied().collect::<Vec<_>>(),
            expected,
            "pair {pair}'s numbers"
        );
        let mut received = BTreeMap::new();
        while received.len() < PER_SENDER + 1 {
            let event = reader
                .client
                .expect_event("NEW_MESSAGE", EVENT_TIMEOUT)
                .await;
            let seq = event["seq"].as_i64().unwrap_or(-1);
            let text = event["text"].as_str().unwrap_or("?").to_owned();
            assert!(
                received.insert(seq, text).is_none(),
                "reader {pair} got seq {seq} twice"
            );
        }
        assert_eq!(received.remove(&1).as_deref(), Some("hello"));
        assert_eq!(received, told, "what reader {pair} got");
    }
    // The conversation's summary and the sender's read mark moved with the
    // batches.
    let conversations = senders[0].client.conversations().await;
    let last = last_seqs(&conversations);
    assert_eq!(
        last.values().copied().collect::<Vec<_>>(),
        [(PER_SENDER + 1) as i64],
        "{conversations:?}"
    );
    assert_eq!(conversations[0]["unread"], 0, "{}", conversations[0]);

    // What was remembered is forgotten when it changes: an ended friendship
    // refuses the next message at once.
    let (first_sender, first_reader) = (&mut senders[0], &readers[0]);
    let removed = first_sender
        .client
        .chat("FRIEND_REMOVE", json!({"userId": first_reader.user_id}))
        .await;
    assert_status(&removed, "FRIEND_REMOVED");
    let reply = first_sender
        .client
        .send_to_user(&first_reader.user_id, "still there?", "after")
        .await;
    assert_refused(&reply, "FORBIDDEN");
}

/// Runs of the script that publishes and acknowledges what chat-service
/// finished.
async fn finishing_runs(http: &str) -> f64 {
    Stack::metric(http, "switchyard_bus_entries_finished_per_run_count", "").await
}

/// Every database command chat-service has started.
async fn commands(http: &str) -> f64 {
    Stack::metric(http, "switchyard_store_commands_total", "").await
}

fn last_seqs(conversations: &[Value]) -> BTreeMap<String, i64> {
    conversations
        .iter()
        .map(|c| {
            (
                c["conversationId"].as_str().unwrap_or("?").to_owned(),
                c["lastMessage"]["seq"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Sends made with each of two replicas remembering what they need.
const SENDS: usize = 8;

#[tokio::test]
async fn a_change_handled_by_one_replica_holds_on_the_other_at_once() {
    let stack = Stack::builder()
        .gateways(2)
        .chat_replicas(2)
        .generous_limits()
        .start()
        .await;
    let Circle {
        mut ana,
        bob,
        mut cid,
        group,
    } = Circle::gather(&stack).await;

    // Both replicas come to remember the friendship of Ana and Bob, the
    // group's members, and that Cid and Bob share the group.
    for n in 0..SENDS {
        let to_bob = ana
            .client
            .send_to_user(&bob.user_id, "hi", &format!("friend-{n}"))
            .await;
        assert!(!sent(&to_bob).temporary, "{to_bob}");
        let to_group = cid
            .client
            .send_to_group(&group, "hi all", &format!("group-{n}"))
            .await;
        assert_status(&to_group, "MESSAGE_SENT");
        let cid_to_bob = cid
            .client
            .send_to_user(&bob.user_id, "hi Bob", &format!("shared-{n}"))
            .await;
        assert!(sent(&cid_to_bob).temporary, "{cid_to_bob}");
    }

    // Ana and Bob stop being friends (they still share the group): every
    // message after is temporary, whichever replica handles it.
    let removed = ana
        .client
        .chat("FRIEND_REMOVE", json!({"userId": bob.user_id}))
        .await;
    assert_status(&removed, "FRIEND_REMOVED");
    for n in 0..SENDS {
        let reply = ana
            .client
            .send_to_user(&bob.user_id, "still here", &format!("after-{n}"))
            .await;
        assert!(
            sent(&reply).temporary,
            "message {n} after the friendship ended: {reply}"
        );
    }

    // Cid is removed from the group: he can write neither to it nor to Bob,
    // whom he knew only through it.
    let reply = ana
        .client
        .moderate("REMOVE_MEMBER", &group, &cid.user_id)
        .await;
    assert_status(&reply, "MEMBER_REMOVED");
    for n in 0..SENDS {
        let to_group = cid
            .client
            .send_to_group(&group, "let me in", &format!("removed-{n}"))
            .await;
        assert_refused(&to_group, "FORBIDDEN");
        let to_bob = cid
            .client
            .send_to_user(&bob.user_id, "hello?", &format!("stranger-{n}"))
            .await;
        assert_refused(&to_bob, "FORBIDDEN");
    }
}

/// Groups one user writes to at once: a batch then touches more
/// conversations than FerretDB has connections for its statements.
const GROUPS: usize = 120;
const ROUNDS: i64 = 2;

#[tokio::test]
async fn a_batch_across_many_conversations_is_written() {
    let mut stack = Stack::builder().chat(true).generous_limits().start().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut groups = Vec::with_capacity(GROUPS);
    for n in 0..GROUPS {
        groups.push(ana.client.create_group(&format!("Group {n}")).await);
    }

    // Two messages to each group, a round at a time: each round sent at
    // once and taken up by chat-service together (it is paused while they
    // arrive). The second round's read marks exist already, which is what
    // makes a statement hold a connection on FerretDB.
    for round in 1..=ROUNDS {
        let messages = groups
            .iter()
            .enumerate()
            .map(|(n, group)| {
                json!({
                    "action": "SEND_MESSAGE",
                    "to": {"groupId": group},
                    "text": format!("round {round} to group {n}"),
                    "clientMsgId": format!("m-{round}-{n}"),
                })
            })
            .collect();
        stack.pause_service(CHAT, 0);
        let (replies, ()) = tokio::join!(
            ana.client.request_all(messages, Duration::from_secs(60)),
            async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                stack.resume_service(CHAT, 0);
            }
        );
        for reply in &replies {
            assert_status(reply, "MESSAGE_SENT");
        }
    }

    // Every group's summary moved to its message, and each is read by Ana,
    // who sent it.
    let conversations = ana.client.conversations().await;
    assert_eq!(conversations.len(), GROUPS);
    for conversation in &conversations {
        assert_eq!(conversation["lastSeq"], ROUNDS, "{conversation}");
        assert_eq!(conversation["unread"], 0, "{conversation}");
        let text = conversation["lastMessage"]["text"].as_str().unwrap_or("");
        assert!(text.starts_with("round 2 to group "), "{conversation}");
    }
}
