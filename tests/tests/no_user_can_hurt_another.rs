//! One user, however many connections they open and however fast they send,
//! cannot make the system slow for anybody else, and work nobody waits for
//! any more is not done: each test is a misbehaviour seen from outside,
//! turned into a check of what the other users see.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, befriend, sent};
use switchyard_tests::ports::free_port;
use switchyard_tests::{CHAT, Client, FERRETDB, GATEWAY, REDIS, Stack, assert_status, status};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The stream chat-service reads its actions from.
const CHAT_STREAM: &str = "switchyard:actions:chat";

/// The tests here measure how long others wait while one misbehaves; run
/// side by side, they would measure each other. Each holds this throughout.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the flood of the first test lasts.
const FLOOD: Duration = Duration::from_secs(10);

/// Ana, who misbehaves, and Bob, who does not, are friends with a
/// conversation; each is logged in on gateway 0 and 1 respectively.
async fn ana_and_bob(stack: &Stack) -> (ChatUser, ChatUser, String) {
    let mut ana = ChatUser::sign_up(stack, 0, "ana@example.com", "Ana").await;
    let mut bob = ChatUser::sign_up(stack, 1, "bob@example.com", "Bob").await;
    befriend(&mut ana, &mut bob).await;
    let first = sent(&bob.client.send_to_user(&ana.user_id, "hi Ana", "b-0").await);
    ana.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    (ana, bob, first.conversation_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_accounts_flood_from_fifty_connections_leaves_other_users_served() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // The product's own limits: nothing raised.
    let stack = Stack::builder().gateways(2).chat(true).start().await;
    let (ana, mut bob, conversation) = ana_and_bob(&stack).await;

    // Ana opens 50 more connections over both gateways. She already holds
    // one; the limit is 20 per account.
    let mut logins = Vec::new();
    for i in 0..50 {
        let url = stack.gateway_url(i % 2);
        let (email, token) = (ana.email.clone(), ana.token.clone());
        logins.push(tokio::spawn(async move {
            let mut client = Client::connect(&url).await;
            let reply = client.fastlogin(&email, &token).await;
            (status(&reply).to_owned(), client)
        }));
    }
    let mut flooders = Vec::new();
    let mut refused = 0;
    for login in logins {
        let (verdict, client) = login.await.expect("login task");
        match verdict.as_str() {
            "USER_LOGGED" => flooders.push(client),
            "TOO_MANY_CONNECTIONS" => refused += 1,
            other => panic!("FASTLOGIN answered {other}"),
        }
    }
    assert_eq!(
        flooders.len(),
        19,
        "one account holds at most 20 connections at once (it had one)"
    );
    assert_eq!(refused, 31);

    // Each of them asks for 100 messages of history every 50 ms.
    let flood_end = Instant::now() + FLOOD;
    let mut floods = Vec::new();
    for client in flooders {
        let conversation = conversation.clone();
        floods.push(tokio::spawn(flood_with_history(
            client,
            conversation,
            flood_end,
        )));
    }

    // Meanwhile Bob chats and reads as a person does, ten times a second.
    let mut latencies = Vec::new();
    let mut i = 0;
    while Instant::now() < flood_end {
        let started = Instant::now();
        let reply = if i % 2 == 0 {
            bob.client
                .send_to_user(
                    &ana.user_id,
                    &format!("message {i}"),
                    &format!("b-{}", i + 1),
                )
                .await
        } else {
            bob.client.history(&conversation, None, Some(20)).await
        };
        let expected = if i % 2 == 0 {
            "MESSAGE_SENT"
        } else {
            "HISTORY"
        };
        assert_status(&reply, expected);
        latencies.push(started.elapsed());
        i += 1;
        sleep(Duration::from_millis(100).saturating_sub(started.elapsed())).await;
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "Bob during the flood: p50 {:?}, p99 {p99:?}, max {:?} over {} requests",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );
    assert!(
        p99 < Duration::from_millis(200),
        "Bob's p99 during the flood was {p99:?} over {} requests",
        latencies.len()
    );

    let mut answered = 0;
    let mut limited = 0;
    let mut sent_total = 0;
    for flood in floods {
        let report = flood.await.expect("flood task");
        answered += report.answered;
        limited += report.limited;
        sent_total += report.sent;
    }
    // Her reads share one budget: 30 at once, then 10 a second, whatever
    // the number of her connections.
    let budget = 30 + 10 * (FLOOD.as_secs() as usize + 2);
    assert!(
        answered <= budget,
        "{answered} of Ana's {sent_total} HISTORY requests were served; her budget is {budget}"
    );
    assert!(
        limited > sent_total / 2,
        "most of Ana's {sent_total} requests were refused RATE_LIMITED, not queued ({limited})"
    );

    // Nothing of hers is left for chat-service to work through.
    let mut redis = stack.redis().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let backlog = chat_backlog(&mut redis).await;
        if backlog == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chat-service still had {backlog} actions waiting 5 s after the flood"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// Actions waiting on chat-service's stream, read or not.
async fn chat_backlog(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    redis::cmd("XLEN")
        .arg(CHAT_STREAM)
        .query_async(redis)
        .await
        .expect("XLEN")
}

struct FloodReport {
    sent: usize,
    answered: usize,
    limited: usize,
}

/// Sends `HISTORY` every 50 ms until `end` (or until the gateway closes the
/// connection), then counts the answers.
async fn flood_with_history(mut client: Client, conversation: String, end: Instant) -> FloodReport {
    let mut sent = 0;
    let mut closed = false;
    while Instant::now() < end && !closed {
        client
            .send_json(json!({"action": "HISTORY", "conversationId": conversation, "limit": 100}))
            .await;
        sent += 1;
        // Reading what came meanwhile keeps the socket drained.
        closed = !client
            .buffer_until(Instant::now() + Duration::from_millis(50))
            .await;
    }
    // What is still on its way.
    if !closed {
        client
            .buffer_until(Instant::now() + Duration::from_secs(2))
            .await;
    }
    let frames = client.take_buffered();
    let count = |wanted: &str| frames.iter().filter(|f| status(f) == wanted).count();
    FloodReport {
        sent,
        answered: count("HISTORY"),
        limited: count("RATE_LIMITED"),
    }
}

#[tokio::test]
async fn a_connection_that_floods_at_600_frames_a_second_is_closed_with_1008() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let stack = Stack::builder().start().await;
    let (socket, _) = connect_async(stack.gateway_url(0)).await.expect("upgrade");
    let (mut sink, mut stream) = socket.split();

    // About 600 frames a second: 6 every 10 ms, for at most 15 s.
    let flood = tokio::spawn(async move {
        let end = Instant::now() + Duration::from_secs(15);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while Instant::now() < end {
            tick.tick().await;
            for _ in 0..6 {
                let frame = Message::text(r#"{"action": "LIST_FRIENDS"}"#);
                if sink.send(frame).await.is_err() {
                    return;
                }
            }
        }
    });
    let started = Instant::now();
    let mut statuses = Vec::new();
    let close = timeout(Duration::from_secs(20), async {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON");
                    statuses.push(status(&frame).to_owned());
                }
                Message::Close(frame) => return frame,
                _ => {}
            }
        }
        None
    })
    .await
    .expect("the gateway closes a flooding connection within 20 s")
    .expect("with a close frame");
    flood.abort();
    assert_eq!(close.code, CloseCode::Policy, "{close:?}");
    assert!(
        started.elapsed() < Duration::from_secs(11),
        "closed only after {:?}",
        started.elapsed()
    );
    // Some frames were let through as the bucket refilled: the close does
    // not depend on every frame being refused.
    assert!(statuses.iter().any(|s| s == "UNAUTHORIZED"), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "RATE_LIMITED"));

    // Others are served.
    let mut other = Client::connect(&stack.gateway_url(0)).await;
    let reply = other.request(json!({"action": "LIST_FRIENDS"})).await;
    assert_status(&reply, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_logout_on_one_gateway_no_action_of_that_session_is_taken_on_another() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const TRIALS: usize = 200;
    let stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .generous_limits()
        .start()
        .await;
    let (mut ana, bob, _) = ana_and_bob(&stack).await;
    let mut other_tab = Client::connect(&stack.gateway_url(1)).await;
    for trial in 0..TRIALS {
        let login = ana
            .client
            .login(&ana.email, switchyard_tests::DEFAULT_PASSWORD)
            .await;
        assert_status(&login, "USER_LOGGED");
        let token = login["flag"]["token"].as_str().expect("token").to_owned();
        assert_status(
            &other_tab.fastlogin(&ana.email, &token).await,
            "USER_LOGGED",
        );
        assert_status(&ana.client.logout(&ana.email, &token).await, "USER_LOGOUT");
        // At once, on the other gateway, with the session just closed.
        let reply = other_tab
            .chat(
                "SEND_MESSAGE",
                json!({"to": {"userId": bob.user_id}, "text": "after logout", "clientMsgId": format!("late-{trial}")}),
            )
            .await;
        assert_status(&reply, "UNAUTHORIZED");
        other_tab.take_buffered();
        ana.client.take_buffered();
    }
    let stored = stack
        .mongo()
        .collection::<mongodb::bson::Document>("messages")
        .count_documents(mongodb::bson::doc! {"text": "after logout"})
        .await
        .expect("count");
    assert_eq!(stored, 0, "no message sent after a logout was stored");
}

#[tokio::test]
async fn an_account_holds_a_bounded_number_of_connections_and_gets_them_back() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .service_env(
            GATEWAY,
            "SWITCHYARD__GATEWAY__MAX_CONNECTIONS_PER_USER",
            "3",
        )
        .start()
        .await;
    let ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let second = ana.connect_again(&stack, 1).await;
    let _third = ana.connect_again(&stack, 0).await;

    let mut fourth = Client::connect(&stack.gateway_url(1)).await;
    let reply = fourth.fastlogin(&ana.email, &ana.token).await;
    assert_status(&reply, "TOO_MANY_CONNECTIONS");
    assert!(reply["message"].as_str().is_some_and(|m| m.contains('3')));
    // The refused connection is not logged in.
    assert_status(
        &fourth.request(json!({"action": "LIST_FRIENDS"})).await,
        "UNAUTHORIZED",
    );

    // Closing one gives its place back, on any gateway.
    second.close().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let reply = fourth.fastlogin(&ana.email, &ana.token).await;
        if status(&reply) == "USER_LOGGED" {
            break;
        }
        assert_status(&reply, "TOO_MANY_CONNECTIONS");
        assert!(
            Instant::now() < deadline,
            "the closed connection's place did not come back within 3 s"
        );
        sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `request` until it is answered with `expected`, each try waiting
/// for its own answer; returns how long after `from` that was.
async fn until_answered(
    client: &mut Client,
    request: impl Fn(usize) -> Value,
    expected: &str,
    from: Instant,
    limit: Duration,
) -> Duration {
    let mut attempt = 0;
    loop {
        let reply = client
            .request_with_timeout(request(attempt), Duration::from_secs(15))
            .await;
        if status(&reply) == expected {
            return from.elapsed();
        }
        assert!(
            from.elapsed() < limit,
            "still not answered {expected} {:?} after the fault ended; last answer: {reply}",
            from.elapsed()
        );
        attempt += 1;
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_ten_second_database_stall_answers_resume_within_five_seconds() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let chat_http = format!("127.0.0.1:{}", free_port());
    let mut stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .service_env(CHAT, "SWITCHYARD__HTTP__LISTEN", &chat_http)
        .start()
        .await;
    let (_ana, mut bob, conversation) = ana_and_bob(&stack).await;

    // Bob's client keeps reading while the database is frozen for 12 s:
    // every request times out, and a client that retries piles up work.
    stack.pause_service(FERRETDB, 0);
    let stall_start = Instant::now();
    let mut sent_at = Vec::new();
    while stall_start.elapsed() < Duration::from_secs(12) {
        let id = format!("stalled-{}", sent_at.len());
        bob.client
            .send_json(json!({"action": "HISTORY", "conversationId": conversation, "limit": 100, "requestId": id}))
            .await;
        sent_at.push(Instant::now());
        sleep(Duration::from_millis(100)).await;
    }
    stack.resume_service(FERRETDB, 0);
    let resumed = Instant::now();
    let history = |_| json!({"action": "HISTORY", "conversationId": conversation, "limit": 20});
    let took = until_answered(
        &mut bob.client,
        history,
        "HISTORY",
        resumed,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        took < Duration::from_secs(5),
        "answers resumed after {took:?}"
    );

    // What Bob had long stopped waiting for was not done: a request sent
    // more than the action timeout (10 s) before the database came back
    // got TIMEOUT and never a late HISTORY, except the few chat-service had
    // already started when the database froze (4 per user at once).
    let frames = bob.client.frames_within(Duration::from_secs(3)).await;
    let stale: Vec<String> = sent_at
        .iter()
        .enumerate()
        .filter(|(_, at)| resumed.duration_since(**at) > Duration::from_millis(10_500))
        .map(|(i, _)| format!("stalled-{i}"))
        .collect();
    assert!(
        stale.len() >= 10,
        "only {} requests went stale",
        stale.len()
    );
    let answered_late = frames
        .iter()
        .filter(|f| status(f) == "HISTORY")
        .filter(|f| {
            f["requestId"]
                .as_str()
                .is_some_and(|id| stale.iter().any(|s| s == id))
        })
        .count();
    assert!(
        answered_late <= 4,
        "{answered_late} of {} stale requests were still handled",
        stale.len()
    );
    // And an operator sees it.
    let metrics = reqwest::get(format!("http://{chat_http}/metrics"))
        .await
        .expect("chat-service serves /metrics")
        .text()
        .await
        .expect("metrics text");
    let shed: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("switchyard_bus_entries_shed_total{stream=\"switchyard:actions:chat\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no shed count in chat-service's metrics:\n{metrics}"));
    assert!(shed >= 10.0, "{shed} actions counted as shed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_answers_resume_within_five_seconds() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut stack = Stack::builder().gateways(2).chat(true).start().await;
    let (ana, bob, _) = ana_and_bob(&stack).await;

    stack.stop_service(REDIS, 0).await;
    sleep(Duration::from_secs(2)).await;
    let restarted = Instant::now();
    stack.start_service(REDIS, 0).await;
    // A new Redis knows no session: the client logs in again, as it would
    // after any reconnect, then sends until served.
    let login = |_| json!({"action": "FASTLOGIN", "userLoginData": {"email": bob.email, "token": bob.token}});
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    until_answered(
        &mut client,
        login,
        "USER_LOGGED",
        restarted,
        Duration::from_secs(5),
    )
    .await;
    let to_ana = ana.user_id.clone();
    let send = move |i: usize| json!({"action": "SEND_MESSAGE", "to": {"userId": to_ana}, "text": "back", "clientMsgId": format!("back-{i}")});
    let took = until_answered(
        &mut client,
        send,
        "MESSAGE_SENT",
        restarted,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        took < Duration::from_secs(5),
        "answers resumed after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_queue_in_a_service_does_not_delay_another_user() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Budgets raised so that all of Ana's requests reach chat-service: this
    // is about how the service schedules what it has.
    let mut stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .generous_limits()
        .start()
        .await;
    let (ana, mut bob, conversation) = ana_and_bob(&stack).await;
    const QUEUED: u64 = 300;

    // While chat-service is stalled, Ana queues 300 reads, then Bob one.
    stack.pause_service(CHAT, 0);
    let mut ana_client = ana.client;
    for i in 0..QUEUED {
        ana_client
            .send_json(json!({"action": "HISTORY", "conversationId": conversation, "limit": 100, "requestId": format!("ana-{i}")}))
            .await;
    }
    let mut redis = stack.redis().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queued = chat_backlog(&mut redis).await;
        if queued >= QUEUED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {queued} of Ana's reads queued"
        );
        sleep(Duration::from_millis(20)).await;
    }
    bob.client
        .send_json(json!({"action": "HISTORY", "conversationId": conversation, "limit": 20, "requestId": "bob"}))
        .await;
    sleep(Duration::from_millis(200)).await;

    // Ana's answers are timed as they come.
    let ana_answers = tokio::spawn(async move {
        let mut at = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while (at.len() as u64) < QUEUED && Instant::now() < deadline {
            if let Some(frame) = ana_client.next_event(Duration::from_secs(10)).await {
                if status(&frame) == "HISTORY" {
                    at.push(Instant::now());
                }
            }
        }
        at
    });
    stack.resume_service(CHAT, 0);
    let reply = bob
        .client
        .expect_event("HISTORY", Duration::from_secs(30))
        .await;
    let bob_at = Instant::now();
    assert_eq!(reply["requestId"], "bob");
    let ana_at = ana_answers.await.expect("Ana's answers");
    assert_eq!(
        ana_at.len() as u64,
        QUEUED,
        "every one of Ana's reads was answered"
    );
    let before_bob = ana_at.iter().filter(|at| **at < bob_at).count();
    assert!(
        before_bob < 100,
        "Bob, queued behind Ana's {QUEUED} reads, was answered only after {before_bob} of them"
    );
}

#[tokio::test]
async fn a_service_with_a_full_backlog_is_answered_busy_at_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__MAX_BACKLOG", "5")
        .start()
        .await;
    let (_ana, mut bob, conversation) = ana_and_bob(&stack).await;

    // chat-service stalls: what is sent piles up on its stream.
    stack.pause_service(CHAT, 0);
    let requests = (0..10)
        .map(|_| json!({"action": "HISTORY", "conversationId": conversation, "limit": 20}))
        .collect::<Vec<_>>();
    for request in &requests[..5] {
        bob.client.send_json(request.clone()).await;
    }
    sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let reply = bob.client.request(requests[5].clone()).await;
    assert_status(&reply, "BUSY");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "BUSY came after {:?}",
        started.elapsed()
    );
    assert!(
        reply["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0),
        "{reply}"
    );

    // Once the service has worked off its backlog, Bob is served again.
    stack.resume_service(CHAT, 0);
    let resumed = Instant::now();
    let history = |_| json!({"action": "HISTORY", "conversationId": conversation, "limit": 20});
    until_answered(
        &mut bob.client,
        history,
        "HISTORY",
        resumed,
        Duration::from_secs(10),
    )
    .await;
}
