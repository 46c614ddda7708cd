//! No user can hurt another through the account actions: guesses at a
//! confirmation code or a password are bounded however many arrive at once
//! and on however many gateways, a logout holds everywhere before it is
//! answered, and no reply grows with what the client sent.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchyard_tests::{
    Client, DEFAULT_PASSWORD, SESSIONS, Stack, assert_status, signed_up_user, status,
};
use tokio::sync::Barrier;

const ANA: &str = "ana@example.com";

/// The default number of tries of one confirmation code.
const CODE_TRIES: usize = 5;
/// The default number of failed logins of one account that go through at once.
const ACCOUNT_FREE_TRIES: usize = 5;
/// The default number of failed logins from one address that go through at once.
const ADDRESS_FREE_TRIES: usize = 20;

/// Lets a test ask for a new code right after the previous one.
const NO_RESEND_INTERVAL: (&str, &str) = ("SWITCHYARD__AUTH__RESEND_INTERVAL_SECS", "0");

#[tokio::test]
async fn a_burst_of_wrong_codes_on_two_gateways_gets_only_the_codes_tries() {
    const CONNECTIONS: usize = 200;
    let (key, value) = NO_RESEND_INTERVAL;
    let stack = Stack::builder().gateways(2).env(key, value).start().await;
    let mut ana = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &ana.register(ANA, DEFAULT_PASSWORD).await,
        "USER_REGISTERED",
    );
    let code = stack.maildev().confirmation_code(ANA).await;
    let wrong = wrong_code_for(&code);

    let clients = connect_many(&stack, CONNECTIONS).await;
    let replies = all_at_once(clients, move |mut client| {
        let wrong = wrong.clone();
        async move { client.confirm(ANA, &wrong).await }
    })
    .await;

    let reason = |reply: &Value| reply["reason"].as_str().unwrap_or_default().to_owned();
    for reply in &replies {
        assert_status(reply, "CONFIRMATION_FAILED");
        assert!(
            ["WRONG_CODE", "LOCKED"].contains(&reason(reply).as_str()),
            "{reply}"
        );
    }
    let mut left: Vec<i64> = replies
        .iter()
        .filter(|r| reason(r) == "WRONG_CODE")
        .map(|r| r["attemptsLeft"].as_i64().expect("attemptsLeft"))
        .collect();
    left.sort_unstable();
    // Each compared try took its own numbered try: the fifth wrong one is
    // answered LOCKED, like every try after it.
    assert_eq!(left.len(), CODE_TRIES - 1, "compared too often: {left:?}");
    assert_eq!(left, [1, 2, 3, 4], "one answer per try left");
    assert_eq!(
        replies.iter().filter(|r| reason(r) == "LOCKED").count(),
        CONNECTIONS - left.len()
    );

    // The right code comes too late: the code is locked.
    let reply = ana.confirm(ANA, &code).await;
    assert_status(&reply, "CONFIRMATION_FAILED");
    assert_eq!(reply["reason"], "LOCKED", "{reply}");
    assert_eq!(reply["attemptsLeft"], 0, "{reply}");

    // A new code has all its tries, and works.
    assert_status(&ana.resend_confirmation(ANA).await, "CONFIRMATION_SENT");
    let new_code = stack.maildev().nth_confirmation_code(ANA, 2).await;
    let mut elsewhere = Client::connect(&stack.gateway_url(1)).await;
    let reply = elsewhere.confirm(ANA, &wrong_code_for(&new_code)).await;
    assert_eq!(reply["attemptsLeft"], 4, "{reply}");
    assert_status(&elsewhere.confirm(ANA, &new_code).await, "USER_CONFIRMED");
}

#[tokio::test]
async fn a_burst_of_wrong_passwords_is_checked_only_a_few_times() {
    const CONNECTIONS: usize = 20;
    const PER_CONNECTION: usize = 10;
    // The first wait after the free failures is 3 s here instead of 1 s, so
    // that the whole burst surely fits in it even on a slow machine and the
    // number of checked passwords is exact.
    let stack = Stack::builder()
        .gateways(2)
        .env("SWITCHYARD__AUTH__LOGIN_FIRST_WAIT_MS", "3000")
        .start()
        .await;
    let mut ana = Client::connect(&stack.gateway_url(0)).await;
    confirmed_account(&stack, &mut ana, ANA).await;

    let clients = connect_many(&stack, CONNECTIONS).await;
    let started = tokio::time::Instant::now();
    let replies: Vec<Value> = all_at_once(clients, |mut client| async move {
        let guesses = (0..PER_CONNECTION)
            .map(|i| login_request(ANA, &format!("guess-number-{i}")))
            .collect();
        client.request_all(guesses, Duration::from_secs(15)).await
    })
    .await
    .into_iter()
    .flatten()
    .collect();
    let burst = started.elapsed();

    let checked = replies.iter().filter(|r| status(r) == "NOT_LOGGED").count();
    for reply in replies.iter().filter(|r| status(r) != "NOT_LOGGED") {
        assert_rate_limited(reply);
    }
    assert!(
        checked <= ACCOUNT_FREE_TRIES,
        "{checked} of {} guesses were checked in {burst:?}",
        replies.len()
    );
    assert_eq!(checked, ACCOUNT_FREE_TRIES, "the free tries are used");

    // Even the right password waits: it is not looked at.
    let reply = ana.login(ANA, DEFAULT_PASSWORD).await;
    let wait = assert_rate_limited(&reply);
    assert!(wait <= Duration::from_secs(3), "{reply}");

    // Once the wait is over the owner gets in.
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_status(&ana.login(ANA, DEFAULT_PASSWORD).await, "USER_LOGGED");
}

#[tokio::test]
async fn guesses_at_many_accounts_from_one_address_are_limited() {
    let stack = Stack::builder().start().await;
    let mut ana = Client::connect(&stack.gateway_url(0)).await;
    confirmed_account(&stack, &mut ana, ANA).await;
    // A successful login costs the address nothing.
    assert_status(&ana.login(ANA, DEFAULT_PASSWORD).await, "USER_LOGGED");

    // One wrong password for each of many accounts: no account reaches its
    // own limit, but the address does.
    let mut guesser = Client::connect(&stack.gateway_url(0)).await;
    for i in 0..ADDRESS_FREE_TRIES {
        let reply = guesser
            .login(&format!("victim-{i}@example.com"), "guess-123")
            .await;
        assert_status(&reply, "NOT_LOGGED");
    }
    let reply = guesser.login("one-more@example.com", "guess-123").await;
    assert_rate_limited(&reply);
    // The address waits, whatever account it names.
    assert_rate_limited(&guesser.login(ANA, DEFAULT_PASSWORD).await);
}

#[tokio::test]
async fn an_enormous_email_is_refused_without_being_echoed() {
    let stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    let email = format!("{}@example.com", "a".repeat(9000));

    let replies = [
        client.register(&email, DEFAULT_PASSWORD).await,
        client.login(&email, DEFAULT_PASSWORD).await,
        client.confirm(&email, "ABCD2345").await,
        client.resend_confirmation(&email).await,
        client.fastlogin(&email, "some-token").await,
        client.logout(&email, "some-token").await,
    ];
    for reply in &replies {
        assert_status(reply, "BAD_REQUEST");
        let message = reply["message"].as_str().expect("a message");
        assert!(
            message.chars().count() < 300,
            "{} characters: {message}",
            message.chars().count()
        );
        assert!(reply.to_string().len() < 600, "{reply}");
    }
}

#[tokio::test]
async fn a_logout_marks_the_session_revoked_for_every_gateway() {
    let stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    let session = signed_up_user(&stack, &mut client, ANA).await;
    let session_id = hex::encode(Sha256::digest(session.token.as_bytes()));
    let marker = format!("switchyard:revoked:{session_id}");
    let mut redis = stack.redis().await;
    let exists: bool = redis.exists(&marker).await.expect("EXISTS");
    assert!(!exists, "an open session is not marked");

    assert_status(&client.logout(ANA, &session.token).await, "USER_LOGOUT");

    // Written before the reply, so it is there now.
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&marker)
        .query_async(&mut redis)
        .await
        .expect("PTTL");
    assert!(ttl_ms > 0, "the marker exists and expires: PTTL {ttl_ms}");
    let stored = stack.stored_documents(SESSIONS).await;
    let expires_at_ms = stored
        .iter()
        .find(|s| s.get_str("_id") == Ok(session_id.as_str()))
        .and_then(|s| s.get_i64("expires_at_ms").ok())
        .expect("the stored session");
    let remaining_ms = expires_at_ms - shared_proto::now_ms();
    assert!(
        ttl_ms <= remaining_ms + 1000,
        "the marker ({ttl_ms} ms) outlives the session ({remaining_ms} ms)"
    );
    assert!(
        ttl_ms > remaining_ms - 60_000,
        "the marker ({ttl_ms} ms) ends long before the session ({remaining_ms} ms)"
    );
}

/// Registers `email` with [`DEFAULT_PASSWORD`] and confirms it, without
/// logging in.
async fn confirmed_account(stack: &Stack, client: &mut Client, email: &str) {
    assert_status(
        &client.register(email, DEFAULT_PASSWORD).await,
        "USER_REGISTERED",
    );
    let code = stack.maildev().confirmation_code(email).await;
    assert_status(&client.confirm(email, &code).await, "USER_CONFIRMED");
}

/// `count` connections, alternating between the stack's gateways.
async fn connect_many(stack: &Stack, count: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        clients.push(Client::connect(&stack.gateway_url(i % stack.gateway_count())).await);
    }
    clients
}

/// Runs `act` on every client at the same moment; returns the results in
/// the clients' order.
async fn all_at_once<T, F, Fut>(clients: Vec<Client>, act: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let start = Arc::new(Barrier::new(clients.len()));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let start = start.clone();
            let work = act(client);
            tokio::spawn(async move {
                start.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("a client task panicked"));
    }
    results
}

fn login_request(email: &str, password: &str) -> Value {
    json!({
        "action": "LOGIN",
        "userLoginData": {"email": email, "password": password},
    })
}

/// Checks a refused login and returns how long it says to wait.
#[track_caller]
fn assert_rate_limited(reply: &Value) -> Duration {
    assert_status(reply, "RATE_LIMITED");
    let wait_ms = reply["retryAfterMs"]
        .as_u64()
        .unwrap_or_else(|| panic!("retryAfterMs in {reply}"));
    assert!(wait_ms > 0, "{reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(message.contains("Wait"), "says how long to wait: {reply}");
    Duration::from_millis(wait_ms)
}

/// A confirmation code the user did not get: the real one with its first
/// symbol changed.
fn wrong_code_for(code: &str) -> String {
    let replacement = if code.starts_with('2') { '3' } else { '2' };
    let mut wrong = String::from(replacement);
    wrong.push_str(&code[1..]);
    wrong
}
