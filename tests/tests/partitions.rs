//! Messages are split by conversation into partitions, each read by one
//! chat-service replica at a time: two replicas share them, and when one is
//! killed while messages flow, the other takes its partitions over. Every
//! acknowledged message is stored once, numbered without gaps in the order
//! of its conversation, and reaches its recipient.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, befriend, messages_of};
use switchyard_tests::{CHAT, Stack, status};
use tokio::time::Instant;

/// Partitions in this test.
const PARTITIONS: u32 = 8;
/// Friends Ana writes to in turn, each a conversation.
const FRIENDS: usize = 6;
/// Rounds of one message to each friend; the replica dies after `KILL_AT`.
const ROUNDS: usize = 12;
const KILL_AT: usize = 4;
/// How long a takeover may take (the lease is 1.5 s in tests).
const TAKEOVER: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_killed_replicas_partitions_move_and_no_acknowledged_message_is_lost() {
    let mut stack = Stack::builder()
        .gateways(2)
        .chat_replicas(2)
        .generous_limits()
        .env("SWITCHYARD__BUS__CHAT_PARTITIONS", PARTITIONS.to_string())
        .start()
        .await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut friends = Vec::new();
    for n in 0..FRIENDS {
        let mut friend =
            ChatUser::sign_up(&stack, 1, &format!("f{n}@example.com"), &format!("F{n}")).await;
        befriend(&mut ana, &mut friend).await;
        friends.push(friend);
    }

    // Both replicas hold a share.
    let holders = wait_for_holders(&stack, |holders| holders.len() == 2).await;
    eprintln!("partitions held by two replicas: {holders:?}");

    // Ana writes to every friend in turn; one replica is killed on the way.
    // What is not acknowledged is sent again with the same clientMsgId.
    let mut acknowledged: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    let mut waiting: Vec<(String, usize)> = Vec::new();
    for round in 0..ROUNDS {
        if round == KILL_AT {
            stack.kill_service(CHAT, 0).await;
        }
        waiting.extend((0..FRIENDS).map(|f| (format!("r{round}-f{f}"), f)));
        let replies = ana
            .client
            .request_all(
                waiting
                    .iter()
                    .map(|(id, f)| {
                        json!({
                            "action": "SEND_MESSAGE",
                            "to": {"userId": friends[*f].user_id},
                            "text": id,
                            "clientMsgId": id,
                        })
                    })
                    .collect(),
                Duration::from_secs(30),
            )
            .await;
        let mut again = Vec::new();
        for ((id, f), reply) in waiting.drain(..).zip(replies) {
            match status(&reply) {
                "MESSAGE_SENT" => {
                    let seq = reply["seq"].as_i64().unwrap_or(-1);
                    acknowledged.insert(id, (f, seq));
                }
                "TIMEOUT" | "SERVICE_UNAVAILABLE" | "BUSY" => again.push((id, f)),
                other => panic!("{id}: unexpected {other}: {reply}"),
            }
        }
        waiting = again;
    }
    let deadline = Instant::now() + TAKEOVER;
    while !waiting.is_empty() {
        assert!(
            Instant::now() < deadline,
            "still not acknowledged: {waiting:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (id, f) = waiting.remove(0);
        let reply = ana.client.send_to_user(&friends[f].user_id, &id, &id).await;
        match status(&reply) {
            "MESSAGE_SENT" => {
                acknowledged.insert(id, (f, reply["seq"].as_i64().unwrap_or(-1)));
            }
            _ => waiting.push((id, f)),
        }
    }
    assert_eq!(acknowledged.len(), FRIENDS * ROUNDS);

    // The survivor holds every partition.
    let holders = wait_for_holders(&stack, |holders| {
        holders.len() == 1 && holders.values().next() == Some(&(PARTITIONS as usize))
    })
    .await;
    eprintln!("after the kill: {holders:?}");

    for (f, friend) in friends.iter_mut().enumerate() {
        // Stored once each, numbered 1, 2, 3… under the number Ana was told.
        let conversation = format!(
            "d:{}",
            if ana.user_id < friend.user_id {
                format!("{}|{}", ana.user_id, friend.user_id)
            } else {
                format!("{}|{}", friend.user_id, ana.user_id)
            }
        );
        let history = ana.client.history(&conversation, None, Some(100)).await;
        let stored: Vec<(i64, String)> = messages_of(&history)
            .iter()
            .map(|m| {
                (
                    m["seq"].as_i64().unwrap_or(-1),
                    m["text"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect();
        let sent_to: BTreeSet<String> = acknowledged
            .iter()
            .filter(|(_, (to, _))| *to == f)
            .map(|(id, _)| id.clone())
            .collect();
        let seqs: Vec<i64> = stored.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(
            seqs,
            (1..=i64::try_from(sent_to.len()).expect("few")).collect::<Vec<_>>(),
            "friend {f}: numbered without gaps"
        );
        let texts: BTreeSet<String> = stored.iter().map(|(_, text)| text.clone()).collect();
        assert_eq!(texts, sent_to, "friend {f}: stored once each");
        for (seq, text) in &stored {
            assert_eq!(
                acknowledged[text].1, *seq,
                "{text}: the number Ana was told"
            );
        }

        // Each reached the friend.
        let mut received = BTreeSet::new();
        let deadline = Instant::now() + TAKEOVER;
        while received.len() < sent_to.len() && Instant::now() < deadline {
            if let Some(event) = friend.client.next_event(EVENT_TIMEOUT).await
                && status(&event) == "NEW_MESSAGE"
            {
                received.insert(event["text"].as_str().unwrap_or("?").to_owned());
            }
        }
        assert_eq!(received, sent_to, "what friend {f} received");
    }
}

/// How many partitions each replica holds, once `settled` says so.
async fn wait_for_holders(
    stack: &Stack,
    settled: impl Fn(&BTreeMap<String, usize>) -> bool,
) -> BTreeMap<String, usize> {
    let mut redis = stack.redis().await;
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let mut holders: BTreeMap<String, usize> = BTreeMap::new();
        for partition in 0..PARTITIONS {
            let holder: Option<String> = redis
                .get(format!("switchyard:lease:chat:p{partition}"))
                .await
                .expect("redis answers");
            if let Some(holder) = holder {
                *holders.entry(holder).or_default() += 1;
            }
        }
        if settled(&holders) {
            return holders;
        }
        assert!(
            Instant::now() < deadline,
            "the partitions did not settle: {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
