//! A connection that has read `USER_LOGGED` is ready: it acts as the user,
//! and it receives what is sent to the user and to the user's groups from
//! then on. A client may act and expect events the moment it is logged in,
//! without waiting or asking anything first.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, befriend, sign_up_many};
use switchyard_tests::{CHAT, Client, GATEWAY, Stack, assert_status, status};
use tokio::time::{Instant, sleep};

/// Logins at once, one per member; each member logs in this many times.
const AT_ONCE: usize = 30;
const ROUNDS: usize = 10;

/// Requests in flight while signing up (auth-service hashes one per core).
const SIGN_UP_CONCURRENCY: usize = 8;

/// Requests a member's first device has in flight when the member logs in
/// on another: as many as chat-service works on at once for one user, so
/// whatever the login makes chat-service do for the user waits behind them,
/// while their partner's messages, in the partner's own line, do not.
const BUSY_WITH: usize = 4;

/// A member, and the friend who writes to them and shares a group with them.
struct Pair {
    member: ChatUser,
    partner: ChatUser,
    group_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_ready_for_actions_and_events_when_its_login_is_answered() {
    let stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .generous_limits()
        .start()
        .await;
    let pairs = pairs(&stack).await;

    // Each member logs in ROUNDS times on a new connection, alternating
    // gateways, all members at once, while their first device is busy. The
    // moment the login is answered the new connection asks for the member's
    // friends, and the partner writes to the member and to their group.
    let started = Instant::now();
    let trials = pairs.into_iter().enumerate().map(|(w, pair)| {
        let url = |round: usize| stack.gateway_url((w + round) % 2);
        let urls: Vec<String> = (0..ROUNDS).map(url).collect();
        logins(w, pair, urls)
    });
    let failures: Vec<String> = join_all(trials).await.into_iter().flatten().collect();
    eprintln!(
        "{} logins, {AT_ONCE} at a time, took {:?}",
        AT_ONCE * ROUNDS,
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} logins were not ready when answered:\n{}",
        failures.len(),
        AT_ONCE * ROUNDS,
        failures.join("\n")
    );
}

#[tokio::test]
async fn with_chat_service_stalled_a_login_is_answered_in_time_and_gets_group_events_later() {
    let mut stack = Stack::builder()
        .chat(true)
        .generous_limits()
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__LOGIN_SETUP_MS", "1000")
        // The gateway asks chat-service again this often.
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS", "2000")
        .start()
        .await;
    let ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 0, "bob@example.com", "Bob").await;
    let group_id = bob.client.create_group("Hikers").await;
    let added = bob
        .client
        .moderate("ADD_MEMBER", &group_id, &ana.user_id)
        .await;
    assert_status(&added, "MEMBER_ADDED");

    // chat-service stalls: Ana's new device logs in all the same, late by no
    // more than the gateway's LOGIN_SETUP_MS (1 s here).
    stack.pause_service(CHAT, 0);
    let mut phone = Client::connect(&stack.gateway_url(0)).await;
    let started = Instant::now();
    let login = phone.fastlogin(&ana.email, &ana.token).await;
    let took = started.elapsed();
    assert_status(&login, "USER_LOGGED");
    assert!(
        took < Duration::from_secs(3),
        "the login waited {took:?} for chat-service"
    );
    sleep(Duration::from_secs(1)).await;
    stack.resume_service(CHAT, 0);

    // Once chat-service is back, the group's events reach the new device.
    let deadline = Instant::now() + Duration::from_secs(15);
    for i in 0.. {
        let sent = bob
            .client
            .send_to_group(&group_id, "anyone there?", &format!("m-{i}"))
            .await;
        assert_status(&sent, "MESSAGE_SENT");
        let arrived = phone.frames_within(Duration::from_millis(500)).await;
        if arrived.iter().any(|f| status(f) == "NEW_MESSAGE") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no group message reached the device 15 s after chat-service came back"
        );
    }
}

/// Signs up the members and their partners, each pair on different
/// gateways, makes each pair friends and gives it a group of two.
async fn pairs(stack: &Stack) -> Vec<Pair> {
    let accounts: Vec<(String, usize)> = (0..AT_ONCE)
        .flat_map(|i| {
            [
                (format!("member{i:02}@example.com"), i % 2),
                (format!("partner{i:02}@example.com"), (i + 1) % 2),
            ]
        })
        .collect();
    let mut users = sign_up_many(stack, &accounts, SIGN_UP_CONCURRENCY)
        .await
        .into_iter();
    let mut pairs = Vec::with_capacity(AT_ONCE);
    while let (Some(mut member), Some(mut partner)) = (users.next(), users.next()) {
        befriend(&mut partner, &mut member).await;
        let group_id = partner
            .client
            .create_group(&format!("{} and {}", partner.nickname, member.nickname))
            .await;
        let added = partner
            .client
            .moderate("ADD_MEMBER", &group_id, &member.user_id)
            .await;
        assert_status(&added, "MEMBER_ADDED");
        pairs.push(Pair {
            member,
            partner,
            group_id,
        });
    }
    pairs
}

/// One member's logins, one per URL; returns what went wrong in each.
async fn logins(w: usize, mut pair: Pair, urls: Vec<String>) -> Vec<String> {
    let Pair {
        member,
        partner,
        group_id,
    } = &mut pair;
    let mut failures = Vec::new();
    for (round, url) in urls.iter().enumerate() {
        let busy: Vec<String> = (0..BUSY_WITH)
            .map(|i| format!("busy-{round}-{i}"))
            .collect();
        for id in &busy {
            member
                .client
                .send_json(json!({"action": "LIST_CONVERSATIONS", "requestId": id}))
                .await;
        }
        let mut client = Client::connect(url).await;
        let login = client.fastlogin(&member.email, &member.token).await;
        assert_status(&login, "USER_LOGGED");
        client
            .send_json(json!({"action": "LIST_FRIENDS", "requestId": "friends"}))
            .await;
        let direct = format!("direct-{w}-{round}");
        let group = format!("group-{w}-{round}");
        let sends = vec![
            json!({"action": "SEND_MESSAGE", "to": {"userId": member.user_id}, "text": "hi", "clientMsgId": direct}),
            json!({"action": "SEND_MESSAGE", "to": {"groupId": group_id}, "text": "hi all", "clientMsgId": group}),
        ];
        let (sent, missing, ()) = tokio::join!(
            partner.client.request_all(sends, Duration::from_secs(15)),
            awaited(&mut client, &direct, &group),
            answered(&mut member.client, &busy),
        );
        for reply in &sent {
            assert_status(reply, "MESSAGE_SENT");
        }
        if !missing.is_empty() {
            failures.push(format!("{} at {url}: {missing:?}", member.email));
        }
        client.close().await;
        // What reached the partner's and the first device's connections
        // meanwhile is not looked at.
        partner.client.take_buffered();
        member.client.take_buffered();
    }
    failures
}

/// Reads until every request of `ids` is answered; other frames are dropped.
async fn answered(client: &mut Client, ids: &[String]) {
    let mut left: Vec<&String> = ids.iter().collect();
    while !left.is_empty() {
        let frame = client.recv_json(Duration::from_secs(15)).await;
        left.retain(|id| frame["requestId"] != id.as_str());
    }
}

/// Waits for the answer to `LIST_FRIENDS` and for the two messages; returns
/// what did not come as it should.
async fn awaited(client: &mut Client, direct: &str, group: &str) -> Vec<String> {
    let mut friends: Option<Value> = None;
    let (mut got_direct, mut got_group) = (false, false);
    // Long enough for chat-service to work through everything the others
    // sent meanwhile: a message that is late is not one missed.
    let deadline = Instant::now() + EVENT_TIMEOUT * 3;
    while !(friends.is_some() && got_direct && got_group) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(frame) = client.next_event(left).await else {
            break;
        };
        if frame["requestId"] == "friends" {
            friends = Some(frame);
        } else if status(&frame) == "NEW_MESSAGE" {
            got_direct |= frame["clientMsgId"] == direct;
            got_group |= frame["clientMsgId"] == group;
        }
    }
    let mut missing = Vec::new();
    match friends {
        Some(frame) if status(&frame) == "FRIENDS" => {}
        Some(frame) => missing.push(format!("LIST_FRIENDS answered {frame}")),
        None => missing.push("no answer to LIST_FRIENDS".to_owned()),
    }
    if !got_direct {
        missing.push("the direct message".to_owned());
    }
    if !got_group {
        missing.push("the group message".to_owned());
    }
    missing
}
