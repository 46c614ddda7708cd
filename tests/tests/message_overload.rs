//! Past what chat-service can take, a message is refused at once with the
//! retryable `BUSY` instead of queueing into a `TIMEOUT`: when its partition
//! holds as many entries as it may, or when a queue stands on it (its
//! messages have lately waited longer than the bound), or in delivery (a
//! gateway has lately handed out events later than the bound). Nothing that was
//! acknowledged is lost, and a message sent again with the same
//! `clientMsgId` once the service catches up is stored once. After Redis
//! refuses one, the gateway refuses the rest of a burst itself.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use shared_proto::bus::DELAY_REPORTED_EVERY;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, befriend, messages_of};
use switchyard_tests::redis_commands::RedisCommands;
use switchyard_tests::{CHAT, GATEWAY, Stack, status};
use tokio::time::Instant;

/// Two partitions, each holding half of the gateway's backlog bound.
const PARTITIONS: &str = "2";
const MAX_BACKLOG: &str = "64";
const PER_PARTITION: usize = 32;
/// Messages sent while chat-service is stalled: more than fit.
const SENT: usize = 48;

#[tokio::test]
async fn a_message_past_capacity_is_refused_busy_and_nothing_acknowledged_is_lost() {
    let mut stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .generous_limits()
        .env("SWITCHYARD__BUS__CHAT_PARTITIONS", PARTITIONS)
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__MAX_BACKLOG", MAX_BACKLOG)
        // The bound in entries is what this test is about.
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__MAX_QUEUE_WAIT_MS", "600000")
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS", "2000")
        .start()
        .await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;

    // chat-service stalls: Ana's messages pile up on their partition until
    // it is full, and the rest are refused.
    stack.pause_service(CHAT, 0);
    let asked = AdmissionsAsked::from_now(&stack).await;
    let (queued, busy, statuses) = send_into_stall(&mut ana, &bob, 0..SENT, 1).await;
    assert_eq!(
        (queued, busy),
        (PER_PARTITION, SENT - PER_PARTITION),
        "the partition takes {PER_PARTITION} and refuses the rest: {statuses:?}"
    );
    // Once Redis refused one, the gateway refused the rest of the burst
    // itself: Redis, the busiest part past capacity, was asked about the
    // messages it took and the first it refused, not about every refusal.
    let asked = asked.count().await;
    assert!(
        asked <= PER_PARTITION + 2,
        "Redis was asked to admit {asked} of {SENT} messages, {PER_PARTITION} of which it took"
    );

    // It catches up; Ana sends again whatever was not acknowledged, with the
    // same clientMsgId, until each is.
    stack.resume_service(CHAT, 0);
    let acknowledged = send_until_acknowledged(&mut ana, &bob, 0..SENT).await;

    assert_stored_once_and_delivered_once(&mut ana, &mut bob, &acknowledged).await;
}

/// One partition, with room for far more entries than are sent: only how
/// long its messages have lately waited can refuse them.
#[tokio::test]
async fn a_message_behind_a_standing_queue_is_refused_busy() {
    const FIRST: usize = 20;
    const BURST: usize = 20;
    const MAX_WAIT_MS: i64 = 1_000;
    /// The fewest messages on a partition that are refused for their wait.
    const FEWEST_REFUSED: usize = 8;
    let mut stack = Stack::builder()
        .gateways(1)
        .chat(true)
        .generous_limits()
        .env("SWITCHYARD__BUS__CHAT_PARTITIONS", "1")
        // The stalls below are short of a lease: the partition stays with
        // its replica, whose entries are first deliveries.
        .env("SWITCHYARD__BUS__PARTITION_LEASE_MS", "10000")
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__MAX_BACKLOG", "100000")
        .service_env(
            GATEWAY,
            "SWITCHYARD__GATEWAY__MAX_QUEUE_WAIT_MS",
            MAX_WAIT_MS.to_string(),
        )
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS", "1000")
        .start()
        .await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 0, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;

    // chat-service stalls for longer than the bound while messages queue;
    // once it is back, they are stored, and it reports how long they waited.
    stack.pause_service(CHAT, 0);
    let stalled = Instant::now();
    let first = ana
        .client
        .request_all(
            (0..FIRST).map(|n| message(&bob, n)).collect(),
            Duration::from_secs(10),
        )
        .await;
    assert!(
        first.iter().all(|r| status(r) == "TIMEOUT"),
        "queued while it stalls: {first:?}"
    );
    tokio::time::sleep_until(stalled + Duration::from_millis(1_500)).await;
    stack.resume_service(CHAT, 0);
    wait_until_partition_empty(&stack).await;
    wait_for_report_over(&stack, "*:actions:chat:p0:delay", MAX_WAIT_MS).await;

    // It stalls again. While that report stands, a burst gets as far as
    // the few entries a partition always takes; the rest is refused at once.
    stack.pause_service(CHAT, 0);
    let (queued, busy, statuses) =
        send_into_stall(&mut ana, &bob, FIRST..FIRST + BURST, 1_000).await;
    assert_eq!(
        (queued, busy),
        (FEWEST_REFUSED, BURST - FEWEST_REFUSED),
        "{statuses:?}"
    );

    stack.resume_service(CHAT, 0);
    let acknowledged = send_until_acknowledged(&mut ana, &bob, 0..FIRST + BURST).await;
    assert_stored_once_and_delivered_once(&mut ana, &mut bob, &acknowledged).await;
}

/// Nothing waits on chat-service's streams; a gateway hands events out late
/// (it stalled while messages were published to it): while it says so, a
/// new message is refused, since its readers are not being kept up with.
#[tokio::test]
async fn a_message_is_refused_busy_while_a_gateway_delivers_late() {
    const FIRST: usize = 5;
    const MAX_WAIT_MS: i64 = 1_000;
    let mut stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .generous_limits()
        .service_env(
            GATEWAY,
            "SWITCHYARD__GATEWAY__MAX_QUEUE_WAIT_MS",
            MAX_WAIT_MS.to_string(),
        )
        .start()
        .await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;
    // Bob's gateway heard the friendship's events as they came. It reports
    // the least wait of each interval, so an interval those fresh events
    // opened must close before it stalls, or they would stand for the
    // whole stall.
    tokio::time::sleep(DELAY_REPORTED_EVERY * 2).await;

    // Bob's gateway stalls while Ana's messages are stored and published to
    // it, and for longer than the bound after the last; once it is back it
    // hands them to Bob, each having waited longer than the bound.
    stack.pause_service(GATEWAY, 1);
    for n in 0..FIRST {
        let reply = ana.client.request(message(&bob, n)).await;
        assert_eq!(status(&reply), "MESSAGE_SENT", "{reply}");
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stack.resume_service(GATEWAY, 1);
    wait_for_report_over(&stack, "*:delivery:delay", MAX_WAIT_MS).await;

    let reply = ana.client.request(message(&bob, FIRST)).await;
    assert_eq!(status(&reply), "BUSY", "{reply}");
    assert!(
        reply["retryAfterMs"].as_u64().is_some_and(|ms| ms >= 1_000),
        "{reply}"
    );

    // No event waits any more: once Bob's gateway has heard nothing for a
    // second it says so, and the message goes.
    let acknowledged = send_until_acknowledged(&mut ana, &bob, 0..FIRST + 1).await;
    assert_stored_once_and_delivered_once(&mut ana, &mut bob, &acknowledged).await;
}

fn message(to: &ChatUser, n: usize) -> Value {
    json!({
        "action": "SEND_MESSAGE",
        "to": {"userId": to.user_id},
        "text": format!("message {n}"),
        "clientMsgId": format!("m-{n}"),
    })
}

/// Sends message `n` for each `n` at once while chat-service stalls: how
/// many were queued (and so answered `TIMEOUT`), how many refused `BUSY`,
/// and every answer. Each refusal must say to retry after at least
/// `min_retry_ms`.
async fn send_into_stall(
    ana: &mut ChatUser,
    bob: &ChatUser,
    numbers: std::ops::Range<usize>,
    min_retry_ms: u64,
) -> (usize, usize, Vec<String>) {
    let replies = ana
        .client
        .request_all(
            numbers.map(|n| message(bob, n)).collect(),
            Duration::from_secs(30),
        )
        .await;
    for reply in replies.iter().filter(|r| status(r) == "BUSY") {
        assert!(
            reply["retryAfterMs"]
                .as_u64()
                .is_some_and(|ms| ms >= min_retry_ms),
            "{reply}"
        );
    }
    let statuses: Vec<String> = replies.iter().map(|r| status(r).to_owned()).collect();
    let count = |wanted: &str| statuses.iter().filter(|s| *s == wanted).count();
    (count("TIMEOUT"), count("BUSY"), statuses)
}

/// Sends message `n` for each `n` again and again, with the same
/// `clientMsgId`, until each is acknowledged; what each was numbered.
async fn send_until_acknowledged(
    ana: &mut ChatUser,
    bob: &ChatUser,
    numbers: std::ops::Range<usize>,
) -> BTreeMap<String, i64> {
    let mut acknowledged: BTreeMap<String, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut waiting: Vec<usize> = numbers.collect();
    while !waiting.is_empty() {
        assert!(Instant::now() < deadline, "never acknowledged: {waiting:?}");
        let mut again = Vec::new();
        for n in waiting {
            let reply = ana.client.request(message(bob, n)).await;
            match status(&reply) {
                "MESSAGE_SENT" => {
                    acknowledged
                        .insert(format!("message {n}"), reply["seq"].as_i64().unwrap_or(-1));
                }
                "BUSY" | "TIMEOUT" => again.push(n),
                other => panic!("message {n}: unexpected {other}: {reply}"),
            }
        }
        if !again.is_empty() {
            // As a client would, rather than hammer a refusing server.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        waiting = again;
    }
    acknowledged
}

/// How many times Redis was asked to admit an action since [`from_now`]:
/// the admission script reads its stream's length once each time (a
/// revoked session or a spent budget stops it before; neither happens
/// here). The services' workers read their streams' lengths too, every
/// few hundred milliseconds in these tests, each time with their pending
/// entries, which the admission script never reads: those are taken off.
///
/// [`from_now`]: AdmissionsAsked::from_now
struct AdmissionsAsked(RedisCommands);

impl AdmissionsAsked {
    async fn from_now(stack: &Stack) -> AdmissionsAsked {
        AdmissionsAsked(RedisCommands::from_now(stack).await)
    }

    async fn count(mut self) -> usize {
        let [lengths, pending] = self.0.calls(["xlen", "xpending"]).await;
        lengths.saturating_sub(pending)
    }
}

/// Waits until every message on the only partition has been acknowledged.
async fn wait_until_partition_empty(stack: &Stack) {
    let mut redis = stack.redis().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*:actions:chat:p0")
            .query_async(&mut redis)
            .await
            .expect("listing keys");
        let mut waiting = 0;
        for key in &keys {
            let length: usize = redis::cmd("XLEN")
                .arg(key)
                .query_async(&mut redis)
                .await
                .expect("reading the partition's length");
            waiting += length;
        }
        if waiting == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} messages still wait on the partition"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a report in the hash matching `pattern` says something
/// waited longer than `bound_ms`: chat-service's for its only partition (the
/// stall's length, less the moments before the first message was sent), or
/// a gateway's for the events it handed out.
async fn wait_for_report_over(stack: &Stack, pattern: &str, bound_ms: i64) {
    let mut redis = stack.redis().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut redis)
            .await
            .expect("listing keys");
        if let Some(key) = keys.first() {
            let reports: Vec<String> = redis::cmd("HVALS")
                .arg(key)
                .query_async(&mut redis)
                .await
                .expect("reading the reports");
            let longest = reports
                .iter()
                .filter_map(|report| report.split(' ').next()?.parse::<i64>().ok())
                .max();
            if longest.is_some_and(|delay| delay > bound_ms) {
                return;
            }
            if seen.last() != Some(&reports) {
                seen.push(reports);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no report in {pattern} of a wait over {bound_ms} ms; reports seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged message is stored once, with the number it was
/// acknowledged with, the numbers run from 1 without a gap, and Bob got each
/// once.
async fn assert_stored_once_and_delivered_once(
    ana: &mut ChatUser,
    bob: &mut ChatUser,
    acknowledged: &BTreeMap<String, i64>,
) {
    let total = acknowledged.len();
    let conversation = {
        let reply = ana.client.conversations().await;
        reply[0]["conversationId"]
            .as_str()
            .unwrap_or("?")
            .to_owned()
    };
    let history = ana.client.history(&conversation, None, Some(100)).await;
    let stored: BTreeMap<String, i64> = messages_of(&history)
        .iter()
        .map(|m| {
            (
                m["text"].as_str().unwrap_or("?").to_owned(),
                m["seq"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(&stored, acknowledged, "stored as acknowledged");
    let mut seqs: Vec<i64> = stored.values().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=total as i64).collect::<Vec<_>>());
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    while received.values().sum::<usize>() < total {
        let event = bob.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
        *received
            .entry(event["text"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    assert!(
        received.values().all(|n| *n == 1) && received.len() == total,
        "Bob got {received:?}"
    );
}
