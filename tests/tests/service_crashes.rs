//! Faults behind the gateways during a burst of messages: a chat-service
//! replica killed without a word, Redis restarted, the database frozen for
//! 10 s. Requests meanwhile get `SERVICE_UNAVAILABLE` or `TIMEOUT`, never
//! anything else; a client that retries with the same `clientMsgId` gets
//! every message stored exactly once, numbered without gaps; every recipient
//! has each message, live or through `SYNC`; and the system answers again
//! without anything being restarted by hand.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::chat::{Circle, messages_of};
use switchyard_tests::received::Received;
use switchyard_tests::{CHAT, Client, FERRETDB, GATEWAY, REDIS, Stack, assert_status, status};
use tokio::time::Instant;

/// How long the gateways wait before telling a client `TIMEOUT`.
const ACTION_TIMEOUT_MS: u64 = 1500;
/// Messages in the burst a chat-service replica dies in.
const BURST: usize = 30;
/// When the replica dies, after the burst was sent.
const KILL_AFTER: Duration = Duration::from_millis(150);
/// Messages sent during each outage.
const DURING: usize = 4;
/// How long the database stays frozen.
const FROZEN: Duration = Duration::from_secs(10);
/// How long everything may take to answer again after the last fault.
const RECOVERY: Duration = Duration::from_secs(60);

/// What the sender sent, and what the server acknowledged.
struct Outbox {
    /// In the order sent: client message id, target (0 Bob, 1 Cid, 2 the
    /// group), payload.
    sent: Vec<(String, usize, Value)>,
    /// The acknowledged message id of each client message id.
    acknowledged: BTreeMap<String, (String, String, i64)>,
}

impl Outbox {
    /// Message `n`, noted as sent: its client message id and request.
    fn prepare(&mut self, targets: &[Value], n: usize) -> (String, Value) {
        let client_msg_id = format!("m-{n}");
        let target = n % targets.len();
        let payload = json!({"to": targets[target], "text": format!("message {n}"), "clientMsgId": client_msg_id});
        self.sent
            .push((client_msg_id.clone(), target, payload.clone()));
        (client_msg_id, payload)
    }

    /// Sends message `n` and returns the status of its reply.
    async fn send(&mut self, client: &mut Client, targets: &[Value], n: usize) -> String {
        let (client_msg_id, payload) = self.prepare(targets, n);
        self.deliver(client, &client_msg_id, payload).await
    }

    async fn deliver(
        &mut self,
        client: &mut Client,
        client_msg_id: &str,
        payload: Value,
    ) -> String {
        let reply = client.chat("SEND_MESSAGE", payload).await;
        self.record(client_msg_id, &reply)
    }

    /// Notes a reply: `MESSAGE_SENT` is an acknowledgement; `TIMEOUT` and
    /// `SERVICE_UNAVAILABLE` say to retry; nothing else may come.
    fn record(&mut self, client_msg_id: &str, reply: &Value) -> String {
        let status = status(reply).to_owned();
        match status.as_str() {
            "MESSAGE_SENT" => {
                let field = |name: &str| reply[name].as_str().unwrap_or_default().to_owned();
                let seq = reply["seq"].as_i64().expect("MESSAGE_SENT has a seq");
                let acknowledged = (field("messageId"), field("conversationId"), seq);
                if let Some(before) = self.acknowledged.get(client_msg_id) {
                    assert_eq!(before, &acknowledged, "a retry answers the first message");
                }
                self.acknowledged
                    .insert(client_msg_id.to_owned(), acknowledged);
            }
            "SERVICE_UNAVAILABLE" | "TIMEOUT" => {}
            _ => panic!("{client_msg_id}: neither sent nor a refusal to retry: {reply}"),
        }
        status
    }

    /// Retries each message not acknowledged yet, as a client does, until
    /// every one is.
    async fn retry_until_all_sent(&mut self, client: &mut Client) {
        let deadline = Instant::now() + RECOVERY;
        loop {
            let missing: Vec<(String, Value)> = self
                .sent
                .iter()
                .filter(|(id, _, _)| !self.acknowledged.contains_key(id))
                .map(|(id, _, payload)| (id.clone(), payload.clone()))
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} messages still not sent {RECOVERY:?} after the last fault",
                missing.len()
            );
            for (id, payload) in missing {
                self.deliver(client, &id, payload).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The acknowledged message ids meant for `who` (0 Bob, 1 Cid), in the
    /// order sent.
    fn meant_for(&self, who: usize) -> HashSet<String> {
        self.sent
            .iter()
            .filter(|(_, target, _)| *target == who || *target == 2)
            .map(|(id, _, _)| self.acknowledged[id].0.clone())
            .collect()
    }
}

#[tokio::test]
async fn messages_survive_a_killed_replica_a_redis_restart_and_a_frozen_database() {
    let mut stack = Stack::builder()
        .gateways(2)
        .chat_replicas(2)
        .generous_limits()
        .service_env(
            GATEWAY,
            "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS",
            ACTION_TIMEOUT_MS.to_string(),
        )
        // The survivor takes over the dead replica's entries soon.
        .service_env(CHAT, "SWITCHYARD__BUS__CLAIM_IDLE_MS", "3000")
        .start()
        .await;
    let Circle {
        mut ana,
        mut bob,
        mut cid,
        group,
    } = Circle::gather(&stack).await;
    let mut bob_has = Received::start(&mut bob.client).await;
    let mut cid_has = Received::start(&mut cid.client).await;
    let targets = [
        json!({"userId": bob.user_id}),
        json!({"userId": cid.user_id}),
        json!({"groupId": group}),
    ];
    let mut outbox = Outbox {
        sent: Vec::new(),
        acknowledged: BTreeMap::new(),
    };

    // A replica dies while the burst, sent all at once, is being handled.
    let (ids, requests): (Vec<String>, Vec<Value>) = (0..BURST)
        .map(|n| {
            let (id, mut request) = outbox.prepare(&targets, n);
            request["action"] = json!("SEND_MESSAGE");
            (id, request)
        })
        .unzip();
    let mut n = BURST;
    let (replies, ()) = tokio::join!(ana.client.request_all(requests, RECOVERY), async {
        tokio::time::sleep(KILL_AFTER).await;
        stack.kill_service(CHAT, 0).await;
    });
    let burst: Vec<String> = ids
        .iter()
        .zip(&replies)
        .map(|(id, reply)| outbox.record(id, reply))
        .collect();
    eprintln!("the burst a replica died in: {burst:?}");

    // Redis restarts: requests meanwhile are refused.
    stack.stop_service(REDIS, 0).await;
    for _ in 0..DURING {
        let status = outbox.send(&mut ana.client, &targets, n).await;
        assert_eq!(status, "SERVICE_UNAVAILABLE", "with Redis down");
        n += 1;
    }
    stack.start_service(REDIS, 0).await;
    outbox.retry_until_all_sent(&mut ana.client).await;

    // The database freezes: nothing can be stored, and the gateways say
    // so in time.
    stack.pause_service(FERRETDB, 0);
    let frozen_at = Instant::now();
    for _ in 0..DURING {
        let status = outbox.send(&mut ana.client, &targets, n).await;
        assert!(
            status == "TIMEOUT" || status == "SERVICE_UNAVAILABLE",
            "with the database frozen: {status}"
        );
        n += 1;
    }
    tokio::time::sleep(FROZEN.saturating_sub(frozen_at.elapsed())).await;
    stack.resume_service(FERRETDB, 0);
    outbox.retry_until_all_sent(&mut ana.client).await;

    // Every message is stored once, each conversation numbered 1, 2, 3...
    let mut stored = HashSet::new();
    let conversations: HashSet<&String> = outbox.acknowledged.values().map(|(_, c, _)| c).collect();
    for conversation in conversations {
        let history = ana.client.history(conversation, None, Some(100)).await;
        let messages = messages_of(&history);
        let seqs: Vec<i64> = messages
            .iter()
            .map(|m| m["seq"].as_i64().unwrap_or_default())
            .collect();
        let expected: Vec<i64> = (1..=i64::try_from(seqs.len()).expect("few")).collect();
        assert_eq!(seqs, expected, "{conversation}: numbered without gaps");
        for message in messages {
            let id = message["messageId"].as_str().unwrap_or_default().to_owned();
            assert!(stored.insert(id.clone()), "{id} stored twice");
        }
    }
    let acknowledged: HashSet<String> = outbox
        .acknowledged
        .values()
        .map(|(id, _, _)| id.clone())
        .collect();
    assert_eq!(
        stored, acknowledged,
        "what is stored is what was acknowledged"
    );
    assert_eq!(acknowledged.len(), n, "every message was acknowledged once");

    // Each recipient has every message meant for them, once: live, or
    // after being told to reconnect, through SYNC. A message whose sender
    // was answered by a resend while the action that stored it waits to be
    // handled again reaches them when it is (within the claim time).
    for (user, has, who) in [(&mut bob, &mut bob_has, 0), (&mut cid, &mut cid_has, 1)] {
        let meant = outbox.meant_for(who);
        let deadline = Instant::now() + RECOVERY;
        let mut live = 0;
        let (missing, unexpected) = loop {
            if !has.take_in(&mut user.client).await {
                user.client = Client::connect(&stack.gateway_url(1)).await;
                let reply = user.client.fastlogin(&user.email, &user.token).await;
                assert_status(&reply, "USER_LOGGED");
                has.sync(&mut user.client).await;
            } else if live == 0 {
                live = has.messages.len();
            }
            let had: HashSet<String> = has.in_order().into_iter().collect();
            let missing: Vec<String> = meant.difference(&had).cloned().collect();
            let unexpected: Vec<String> = had.difference(&meant).cloned().collect();
            if (missing.is_empty() && unexpected.is_empty()) || Instant::now() > deadline {
                break (missing, unexpected);
            }
        };
        eprintln!(
            "{}: {live} messages at first look, {} in all",
            user.email,
            has.messages.len()
        );
        assert!(
            missing.is_empty() && unexpected.is_empty(),
            "{} is missing {missing:?} and has {unexpected:?} besides",
            user.email
        );
        // A SYNC from the newest position has nothing more.
        let before = has.messages.len();
        has.sync(&mut user.client).await;
        assert_eq!(
            has.messages.len(),
            before,
            "a SYNC after all had nothing new"
        );
    }
}
