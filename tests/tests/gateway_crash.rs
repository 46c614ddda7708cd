//! A gateway killed without a word (SIGKILL) while its clients chat: they
//! reconnect to another, `SYNC` from the last position they had, and miss
//! nothing; their friends see them offline within 30 s, and online again
//! once they are back.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, QUIET, befriend, chat_stack, sent};
use switchyard_tests::{Client, GATEWAY, assert_status};
use tokio::time::Instant;

/// Messages Ana sends, in turn to Bob, to Cid and to their group.
const MESSAGES: usize = 60;
/// Between two of Ana's messages: the burst lasts a few seconds.
const PAUSE: Duration = Duration::from_millis(40);
/// A user of a gateway killed without a word looks offline at most this
/// long afterwards (the lease's life, plus a sweep).
const LAPSE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn clients_of_a_killed_gateway_reconnect_elsewhere_and_miss_nothing() {
    let mut stack = chat_stack().await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(&stack, 1, "bob@example.com", "Bob").await;
    let mut cid = ChatUser::sign_up(&stack, 1, "cid@example.com", "Cid").await;
    befriend(&mut ana, &mut bob).await;
    befriend(&mut ana, &mut cid).await;
    let group = ana.client.create_group("Climbers").await;
    for member in [&bob, &cid] {
        let reply = ana
            .client
            .moderate("ADD_MEMBER", &group, &member.user_id)
            .await;
        assert_status(&reply, "MEMBER_ADDED");
    }
    // Where Bob and Cid stand before the burst, as a client learns it.
    let mut bob_seen = Seen::start(&mut bob.client).await;
    let mut cid_seen = Seen::start(&mut cid.client).await;
    ana.client.frames_within(QUIET).await;

    // Ana writes while Bob's and Cid's gateway is killed.
    let targets = [
        json!({"userId": bob.user_id}),
        json!({"userId": cid.user_id}),
        json!({"groupId": group}),
    ];
    let burst = tokio::spawn(async move {
        let mut sent_ids = Vec::new();
        for n in 0..MESSAGES {
            let to = targets[n % targets.len()].clone();
            let payload =
                json!({"to": to, "text": format!("burst {n}"), "clientMsgId": format!("b-{n}")});
            let reply = ana.client.chat("SEND_MESSAGE", payload).await;
            sent_ids.push((n % targets.len(), sent(&reply).message_id));
            tokio::time::sleep(PAUSE).await;
        }
        (ana, sent_ids)
    });
    tokio::time::sleep(PAUSE * (MESSAGES as u32) / 3).await;
    stack.kill_service(GATEWAY, 1).await;
    bob_seen.read_until_closed(&mut bob.client).await;
    cid_seen.read_until_closed(&mut cid.client).await;
    assert!(
        !bob_seen.messages.is_empty(),
        "Bob heard part of the burst live before his gateway died"
    );

    // Bob comes back at once, through the other gateway, while Ana writes.
    let mut bob_back = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &bob_back.fastlogin(&bob.email, &bob.token).await,
        "USER_LOGGED",
    );
    bob_seen.sync(&mut bob_back).await;
    let (mut ana, sent_ids) = burst.await.expect("the burst");

    // Cid stays away until Ana sees him offline, then comes back.
    let started = Instant::now();
    let mut about_bob = Vec::new();
    loop {
        let presence = ana
            .client
            .expect_event("PRESENCE", LAPSE.saturating_sub(started.elapsed()))
            .await;
        if presence["userId"] == cid.user_id.as_str() {
            assert_eq!(presence["online"], false, "{presence}");
            break;
        }
        about_bob.push(presence);
    }
    // Bob was back before his old connection lapsed: never offline.
    assert!(
        about_bob.iter().all(|p| p["online"] == true),
        "{about_bob:?}"
    );
    let mut cid_back = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &cid_back.fastlogin(&cid.email, &cid.token).await,
        "USER_LOGGED",
    );
    let presence = ana.client.expect_event("PRESENCE", EVENT_TIMEOUT).await;
    assert_eq!(
        (presence["userId"].as_str(), presence["online"].as_bool()),
        (Some(cid.user_id.as_str()), Some(true)),
        "{presence}"
    );
    cid_seen.sync(&mut cid_back).await;

    // Each has every message meant for them, in order, once.
    bob_seen.collect(&mut bob_back).await;
    cid_seen.collect(&mut cid_back).await;
    let meant_for = |who: usize| -> Vec<String> {
        sent_ids
            .iter()
            .filter(|(target, _)| *target == who || *target == 2)
            .map(|(_, id)| id.clone())
            .collect()
    };
    assert_eq!(bob_seen.in_order(), meant_for(0), "what Bob has");
    assert_eq!(cid_seen.in_order(), meant_for(1), "what Cid has");

    // Both are online to Ana once everything has settled.
    let friends = ana.client.list_friends().await;
    for user in [&bob, &cid] {
        let online = friends["friends"]
            .as_array()
            .and_then(|list| list.iter().find(|f| f["userId"] == user.user_id.as_str()))
            .and_then(|f| f["online"].as_bool());
        assert_eq!(online, Some(true), "{} in {friends}", user.email);
    }
}

/// The messages one user's client has, by position, and the newest
/// position it had from the server.
struct Seen {
    position: String,
    messages: Vec<(EventId, String)>,
}

/// A position's event id, comparable: `<epoch>:<ms>-<seq>`.
type EventId = (u64, u64);

fn event_id(position: &str) -> EventId {
    let id = position.rsplit(':').next().unwrap_or_default();
    let (ms, seq) = id.split_once('-').unwrap_or_default();
    (
        ms.parse().expect("a position's ms"),
        seq.parse().expect("a position's seq"),
    )
}

impl Seen {
    /// Asks where things stand, as a client does once it is logged in.
    async fn start(client: &mut Client) -> Seen {
        client.frames_within(QUIET).await;
        let reply = client.request(json!({"action": "SYNC"})).await;
        assert_status(&reply, "SYNCED");
        Seen {
            position: reply["position"].as_str().expect("a position").to_owned(),
            messages: Vec::new(),
        }
    }

    fn note(&mut self, frame: &Value) {
        let Some(position) = frame["position"].as_str() else {
            return;
        };
        if event_id(position) > event_id(&self.position) {
            self.position = position.to_owned();
        }
        if frame["rocketStatus"] == "NEW_MESSAGE" {
            let id = frame["messageId"].as_str().unwrap_or_default().to_owned();
            self.messages.push((event_id(position), id));
        }
    }

    async fn read_until_closed(&mut self, client: &mut Client) {
        client.expect_close(EVENT_TIMEOUT).await;
        for frame in client.take_buffered() {
            self.note(&frame);
        }
    }

    /// `SYNC`s from the newest position had, on a new connection.
    async fn sync(&mut self, client: &mut Client) {
        let reply = client
            .request(json!({"action": "SYNC", "since": self.position}))
            .await;
        assert_status(&reply, "SYNCED");
        for frame in client.take_buffered() {
            self.note(&frame);
        }
        for event in reply["events"].as_array().into_iter().flatten() {
            self.note(event);
        }
    }

    /// Takes in what arrives live until things are quiet.
    async fn collect(&mut self, client: &mut Client) {
        for frame in client.frames_within(QUIET).await {
            self.note(&frame);
        }
    }

    /// The message ids had, in position order; each once, or the test fails.
    fn in_order(&self) -> Vec<String> {
        let mut messages = self.messages.clone();
        messages.sort();
        let unique: HashSet<&String> = messages.iter().map(|(_, id)| id).collect();
        assert_eq!(
            unique.len(),
            messages.len(),
            "a message twice: {messages:?}"
        );
        messages.into_iter().map(|(_, id)| id).collect()
    }
}
