//! A group message to a large group: every member's connection gets it, on
//! both gateways, and it costs the bus the same few publications whatever
//! the group's size, because each gateway fans it out to its own
//! connections.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::Value;
use switchyard_tests::assert_status;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, QUIET, chat_stack, sent, sign_up_many};

const MEMBERS: usize = 200;

/// Requests in flight while signing the members up; auth-service hashes
/// passwords one per core, so more would only queue there.
const SIGN_UP_CONCURRENCY: usize = 8;

/// Members added between two drains of everyone's connection (see below).
const ADD_BATCH: usize = 25;

#[tokio::test]
async fn a_message_to_a_group_of_200_reaches_every_member_with_two_publications() {
    let started = Instant::now();
    let stack = chat_stack().await;

    let accounts: Vec<(String, usize)> = (0..MEMBERS)
        .map(|i| (format!("member{i:03}@example.com"), i % 2))
        .collect();
    let mut members = sign_up_many(&stack, &accounts, SIGN_UP_CONCURRENCY).await;
    let signed_up = started.elapsed();

    // The admin sends from a connection of its own, so that every one of
    // the 200 member connections, the admin's included, is a recipient.
    let mut sender = members[0].connect_again(&stack, 1).await;
    let group_id = sender.create_group("Everyone").await;
    let newcomers: Vec<String> = members[1..].iter().map(|m| m.user_id.clone()).collect();
    for batch in newcomers.chunks(ADD_BATCH) {
        for user_id in batch {
            let reply = sender.moderate("ADD_MEMBER", &group_id, user_id).await;
            assert_status(&reply, "MEMBER_ADDED");
        }
        // Each addition is announced to the whole group. The test reads no
        // connection meanwhile, so empty them now and then, lest a gateway
        // take the unread backlog for a slow client and disconnect it.
        drain_all(&mut members).await;
    }
    let info = sender.group_info(&group_id).await;
    assert_eq!(
        info["group"]["memberCount"], MEMBERS,
        "every member was added: {}",
        info["group"]["memberCount"]
    );
    let grouped = started.elapsed();

    // Let the announcements settle, then count what the bus carries.
    drain_all(&mut members).await;
    let mut publications = Publications::watch(&stack).await;
    let stray = publications.within(QUIET).await;
    assert!(
        stray.is_empty(),
        "the bus is quiet before the message: {stray:?}"
    );

    let send_at = Instant::now();
    let reply = sender
        .send_to_group(&group_id, "Hello, everyone", "fanout-1")
        .await;
    let message = sent(&reply);
    let mut missing = Vec::new();
    let deliveries = join_all(members.iter_mut().map(|member| async move {
        let frame = member
            .client
            .expect_event("NEW_MESSAGE", EVENT_TIMEOUT)
            .await;
        (member.email.clone(), member.gateway, frame)
    }))
    .await;
    let delivered_in = send_at.elapsed();
    let mut per_gateway = [0usize; 2];
    for (email, gateway, frame) in &deliveries {
        if frame["messageId"] != message.message_id.as_str() || frame["text"] != "Hello, everyone" {
            missing.push(format!("{email}: {frame}"));
        }
        per_gateway[*gateway] += 1;
    }
    assert!(
        missing.is_empty(),
        "every member gets this message, not another: {missing:?}"
    );
    assert_eq!(per_gateway, [MEMBERS / 2, MEMBERS / 2]);

    // Once each: no member gets a second copy, and the sending connection,
    // which has its reply, gets none.
    let (own, later) = tokio::join!(
        sender.frames_within(QUIET),
        join_all(members.iter_mut().map(|m| m.client.frames_within(QUIET)))
    );
    let is_message = |f: &Value| f["rocketStatus"] == "NEW_MESSAGE";
    assert!(
        !own.iter().any(is_message),
        "the sending connection gets no NEW_MESSAGE: {own:?}"
    );
    let twice: Vec<&str> = members
        .iter()
        .zip(&later)
        .filter(|(_, frames)| frames.iter().any(is_message))
        .map(|(m, _)| m.email.as_str())
        .collect();
    assert!(
        twice.is_empty(),
        "members who got the message twice: {twice:?}"
    );

    // One reply to the sender's gateway and one event on the group's
    // channel: the gateways, not the bus, multiply it by the members.
    let published = publications.within(QUIET).await;
    let group_channel = format!("switchyard:group:{group_id}");
    let mut channels: Vec<String> = published.iter().map(|(c, _)| c.clone()).collect();
    channels.sort();
    let mut expected = vec![group_channel.clone(), "switchyard:gw:gw-1".to_owned()];
    expected.sort();
    assert_eq!(
        channels,
        expected,
        "one SEND_MESSAGE to {MEMBERS} members publishes exactly its reply and one group event; \
         got {} publications: {published:?}",
        published.len()
    );
    let event = published
        .iter()
        .find(|(channel, _)| *channel == group_channel)
        .map(|(_, payload)| payload)
        .expect("checked above");
    assert!(
        event.to_string().contains(&message.message_id),
        "the group event carries the message: {event}"
    );

    eprintln!(
        "{MEMBERS} members signed up in {signed_up:?}, grouped by {grouped:?}; \
         the message reached all of them in {delivered_in:?}; total {:?}",
        started.elapsed()
    );
}

/// Reads whatever is waiting on every member's connection.
async fn drain_all(members: &mut [ChatUser]) {
    join_all(
        members
            .iter_mut()
            .map(|m| m.client.frames_within(Duration::from_millis(50))),
    )
    .await;
}

/// Every message published on the stack's bus, seen through a pattern
/// subscription to all of its channels.
struct Publications {
    stream: redis::aio::PubSubStream,
}

impl Publications {
    async fn watch(stack: &switchyard_tests::Stack) -> Self {
        let client =
            redis::Client::open(stack.redis_url()).expect("the stack's Redis URL is valid");
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .expect("connecting to the stack's Redis");
        // Answered once Redis has registered it: nothing published after
        // this returns is missed.
        pubsub
            .psubscribe("switchyard:*")
            .await
            .expect("PSUBSCRIBE switchyard:*");
        Publications {
            stream: pubsub.into_on_message(),
        }
    }

    /// The (channel, payload) of every publication within `window`.
    async fn within(&mut self, window: Duration) -> Vec<(String, Value)> {
        let deadline = tokio::time::Instant::now() + window;
        let mut seen = Vec::new();
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, self.stream.next()).await {
            let payload =
                serde_json::from_slice(message.get_payload_bytes()).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(message.get_payload_bytes()).into_owned())
                });
            seen.push((message.get_channel_name().to_owned(), payload));
        }
        seen
    }
}
