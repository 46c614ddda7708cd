//! What a client hears when something behind the gateway is down, that
//! nothing crashes, and that service comes back with what it depends on.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::mail::MAIL_TIMEOUT;
use switchyard_tests::{
    AUTH, Client, DEFAULT_PASSWORD, FERRETDB, GATEWAY, REDIS, Stack, assert_status,
    register_request, signed_up_user, status,
};
use tokio::time::Instant;

/// The gateways' action timeout in these tests, so that a request whose
/// reply was lost in an outage costs seconds, not the default ten.
const ACTION_TIMEOUT_MS: u64 = 1500;

/// How long a refusal during a Redis outage may take at most, so that it
/// is seen as a refusal (the bus's 3 s command timeout, and some margin).
const PROMPT_REFUSAL: Duration = Duration::from_secs(5);

/// How long a test waits for any reply during an outage.
const OUTAGE_REPLY_TIMEOUT: Duration = Duration::from_secs(25);

/// How long a service may take to be usable again once what it depends on
/// is back (reconnecting with backoff).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn with_redis_down_requests_are_refused_and_service_resumes_when_it_is_back() {
    // Long enough that each refusal below is the gateway's own answer, not
    // its deadline (how soon the refusal comes is the next test's business).
    let mut stack = Stack::builder()
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS", "30000")
        .start()
        .await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &client
            .register("before@example.com", DEFAULT_PASSWORD)
            .await,
        "USER_REGISTERED",
    );

    stack.stop_service(REDIS, 0).await;

    // The gateway cannot put the action on the bus, and says so.
    let reply = client
        .request_with_timeout(
            register_request("during@example.com", DEFAULT_PASSWORD),
            OUTAGE_REPLY_TIMEOUT,
        )
        .await;
    assert_status(&reply, "SERVICE_UNAVAILABLE");
    assert_has_message(&reply);
    // The gateway is alive and still takes connections.
    assert!(stack.is_running(GATEWAY, 0), "the gateway exited");
    assert_eq!(stack.gateway_health(0).await, Some(200));
    let mut newcomer = Client::connect(&stack.gateway_url(0)).await;
    let reply = newcomer
        .request_with_timeout(
            register_request("newcomer@example.com", DEFAULT_PASSWORD),
            OUTAGE_REPLY_TIMEOUT,
        )
        .await;
    assert_status(&reply, "SERVICE_UNAVAILABLE");

    // Redis comes back (empty): the gateway resubscribes, the services find
    // their streams again, and the same connection is served.
    stack.start_service(REDIS, 0).await;
    stack.wait_ready(GATEWAY, 0).await;
    let reply = register_until_served(&mut client, "after").await;
    assert_status(&reply, "USER_REGISTERED");

    // "Nothing was done" was true: the refused address is still free.
    assert_status(
        &client
            .register("during@example.com", DEFAULT_PASSWORD)
            .await,
        "USER_REGISTERED",
    );
    // And mail goes out again.
    stack
        .maildev()
        .wait_for_mail("during@example.com", 1, MAIL_TIMEOUT)
        .await;
    assert!(stack.is_running(AUTH, 0), "auth-service exited");
}

#[tokio::test]
async fn with_redis_down_every_request_is_refused_promptly() {
    // Default settings: the gateway's action timeout is 10 s.
    let mut stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &client
            .register("before@example.com", DEFAULT_PASSWORD)
            .await,
        "USER_REGISTERED",
    );

    stack.stop_service(REDIS, 0).await;

    // Not only the first request after Redis went away: every one is told
    // at once that nothing was done. The bus gives a Redis command 3 s
    // (`COMMAND_TIMEOUT` in shared-proto's bus) before it counts as failed.
    for attempt in 1..=3 {
        let started = Instant::now();
        let reply = client
            .request_with_timeout(
                register_request(&format!("during-{attempt}@example.com"), DEFAULT_PASSWORD),
                OUTAGE_REPLY_TIMEOUT,
            )
            .await;
        let waited = started.elapsed();
        assert_eq!(
            status(&reply),
            "SERVICE_UNAVAILABLE",
            "request {attempt} during the outage: {reply}"
        );
        assert!(
            waited < PROMPT_REFUSAL,
            "request {attempt} during the outage was refused only after {waited:?}"
        );
    }
}

#[tokio::test]
async fn with_the_database_down_account_actions_are_refused_and_resume_when_it_is_back() {
    let mut stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    let ana = signed_up_user(&stack, &mut client, "ana@example.com").await;

    stack.stop_service(FERRETDB, 0).await;

    // Each account action that needs the database is refused within a few
    // seconds (the driver gives up finding a server after 3 s).
    let mut other = Client::connect(&stack.gateway_url(0)).await;
    let attempts: [(&str, Value); 2] = [
        (
            "REGISTER",
            register_request("bob@example.com", DEFAULT_PASSWORD),
        ),
        (
            "LOGIN",
            json!({"action": "LOGIN", "userLoginData": {"email": ana.email, "password": ana.password}}),
        ),
    ];
    for (action, request) in attempts {
        let started = Instant::now();
        let reply = other.request(request).await;
        assert_eq!(status(&reply), "SERVICE_UNAVAILABLE", "{action}: {reply}");
        assert_has_message(&reply);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{action}: SERVICE_UNAVAILABLE took {:?}",
            started.elapsed()
        );
    }
    // Resuming a session needs no database: auth-service answers from its
    // copy of the session in Redis.
    assert_status(
        &other.fastlogin(&ana.email, &ana.token).await,
        "USER_LOGGED",
    );
    assert!(stack.is_running(AUTH, 0), "auth-service exited");

    // The database comes back with its data: the session still works, and
    // the refused registration can be made.
    stack.start_service(FERRETDB, 0).await;
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        let reply = other.fastlogin(&ana.email, &ana.token).await;
        if status(&reply) == "USER_LOGGED" {
            break;
        }
        assert_eq!(status(&reply), "SERVICE_UNAVAILABLE", "{reply}");
        assert!(
            Instant::now() < deadline,
            "auth-service still unavailable {RECOVERY_TIMEOUT:?} after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_status(
        &other.register("bob@example.com", DEFAULT_PASSWORD).await,
        "USER_REGISTERED",
    );
}

#[tokio::test]
async fn with_no_service_to_answer_a_request_times_out() {
    let stack = Stack::builder()
        .auth_replicas(0)
        .service_env(
            GATEWAY,
            "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS",
            ACTION_TIMEOUT_MS.to_string(),
        )
        .start()
        .await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    let started = Instant::now();
    let reply = client.register("ana@example.com", DEFAULT_PASSWORD).await;
    let waited = started.elapsed();
    assert_status(&reply, "TIMEOUT");
    assert_has_message(&reply);
    assert!(
        waited >= Duration::from_millis(ACTION_TIMEOUT_MS - 100) && waited < Duration::from_secs(5),
        "TIMEOUT came after {waited:?}, the gateway's limit is {ACTION_TIMEOUT_MS} ms"
    );

    // The connection is fine; it is the service that is missing.
    assert_status(
        &client.request(json!({"action": "LAUNCH_ROCKET"})).await,
        "UNKNOWN_ACTION",
    );
}

#[tokio::test]
async fn an_action_that_timed_out_while_the_service_was_down_is_done_when_it_is_back() {
    let mut stack = Stack::builder()
        .service_env(
            GATEWAY,
            "SWITCHYARD__GATEWAY__ACTION_TIMEOUT_MS",
            ACTION_TIMEOUT_MS.to_string(),
        )
        .start()
        .await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    // auth-service answers while it runs.
    assert_status(
        &client
            .fastlogin("ana@example.com", "no-such-session-token")
            .await,
        "NOT_LOGGED",
    );

    stack.stop_service(AUTH, 0).await;
    let reply = client.register("ana@example.com", DEFAULT_PASSWORD).await;
    assert_status(&reply, "TIMEOUT");
    let request_id = reply["requestId"].clone();

    // The action waited on the bus; once auth-service is back it is handled
    // and the late answer still reaches the client, under the same requestId.
    stack.start_service(AUTH, 0).await;
    let late = client
        .expect_event("USER_REGISTERED", RECOVERY_TIMEOUT)
        .await;
    assert_eq!(late["requestId"], request_id, "{late}");
    stack
        .maildev()
        .wait_for_mail("ana@example.com", 1, MAIL_TIMEOUT)
        .await;
    assert!(stack.stored_user("ana@example.com").await.is_some());
}

/// Registers a new address on `client` until the reply is something other
/// than an outage (`SERVICE_UNAVAILABLE`, or `TIMEOUT` for a reply lost
/// while the bus was coming back), and returns that reply.
///
/// # Panics
/// If every attempt is an outage for [`RECOVERY_TIMEOUT`].
async fn register_until_served(client: &mut Client, prefix: &str) -> Value {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let email = format!("{prefix}-{attempt}@example.com");
        let reply = client
            .request_with_timeout(
                register_request(&email, DEFAULT_PASSWORD),
                OUTAGE_REPLY_TIMEOUT,
            )
            .await;
        if !matches!(status(&reply), "SERVICE_UNAVAILABLE" | "TIMEOUT") {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after {RECOVERY_TIMEOUT:?} ({attempt} attempts): {reply}",
            status(&reply)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[track_caller]
fn assert_has_message(frame: &Value) {
    let message = frame["message"].as_str().unwrap_or_default();
    assert!(
        !message.trim().is_empty(),
        "the frame tells a person what happened: {frame}"
    );
}
