//! What a client that sends something wrong is told, and that its connection
//! keeps working afterwards: every refusal below is followed by a request on
//! the same connection that succeeds (a registration, or resuming a session
//! where there are many refusals to check).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::client::CloseCode;
use switchyard_tests::{
    Client, DEFAULT_PASSWORD, GATEWAY, Session, Stack, USERS, assert_status, register_request,
    signed_up_user, status,
};
use tokio_tungstenite::tungstenite::{self, Message};

/// Gateway-level refusals are immediate; this only bounds a broken gateway.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the gateway may take to close a connection it refuses to serve.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The gateway's default frame limit (`SWITCHYARD__GATEWAY__MAX_FRAME_BYTES`).
const MAX_FRAME_BYTES: usize = 65_536;

/// A chat action; without a login the gateway refuses it.
const CHAT_ACTION: &str = "LIST_FRIENDS";

#[tokio::test]
async fn frames_that_are_not_a_request_are_refused_and_the_connection_goes_on() {
    let stack = Stack::builder().start().await;
    let proof = SessionProof::new(&stack).await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    // (what is wrong, the frame, the requestId the refusal can echo)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("the old clients' greeting", "Connection Established", None),
        ("broken JSON", r#"{"action": "LOGIN""#, None),
        ("an empty frame", "", None),
        ("a JSON array", r#"[{"action": "LOGIN"}]"#, None),
        ("a JSON string", r#""LOGIN""#, None),
        ("a JSON number", "42", None),
        ("JSON null", "null", None),
        ("an object without action", "{}", None),
        (
            "no action, with a requestId",
            r#"{"requestId": "no-action"}"#,
            Some("no-action"),
        ),
        (
            "a numeric action",
            r#"{"action": 5, "requestId": "numeric-action"}"#,
            Some("numeric-action"),
        ),
        (
            "an empty action",
            r#"{"action": "", "requestId": "empty-action"}"#,
            Some("empty-action"),
        ),
        (
            "an action in an array",
            r#"{"action": ["LOGIN"], "requestId": "array-action"}"#,
            Some("array-action"),
        ),
        (
            "a numeric requestId",
            r#"{"action": "LOGIN", "requestId": 7}"#,
            None,
        ),
        (
            "an object as requestId",
            r#"{"action": "LOGIN", "requestId": {"id": 7}}"#,
            None,
        ),
    ];
    for (what, frame, echoed) in cases {
        client.send_text(frame).await;
        let reply = client.recv_json(REPLY_TIMEOUT).await;
        assert_eq!(status(&reply), "BAD_REQUEST", "{what}: {reply}");
        assert_explains(&reply, what);
        assert_eq!(
            reply.get("requestId").and_then(Value::as_str),
            *echoed,
            "{what}: the refusal echoes the requestId when it can be read: {reply}"
        );
        proof.still_serves(&mut client, what).await;
    }
}

#[tokio::test]
async fn the_old_clients_greeting_does_not_disturb_them() {
    let stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    // Exactly what the existing clients send: the greeting, then frames
    // without any requestId.
    client.send_text("Connection Established").await;
    let reply = client.recv_json(REPLY_TIMEOUT).await;
    assert_status(&reply, "BAD_REQUEST");
    client
        .send_json(register_request("old@example.com", DEFAULT_PASSWORD))
        .await;
    let reply = client.recv_json(switchyard_tests::REQUEST_TIMEOUT).await;
    assert_status(&reply, "USER_REGISTERED");
    assert!(
        reply.get("requestId").is_none(),
        "a request without requestId gets a reply without one: {reply}"
    );
}

#[tokio::test]
async fn unknown_and_unauthorized_actions_are_refused_by_name() {
    let stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    let reply = client.request(json!({"action": "LAUNCH_ROCKET"})).await;
    assert_status(&reply, "UNKNOWN_ACTION");
    assert_explains(&reply, "an unknown action");
    assert_still_serves(&mut client, "an unknown action").await;

    // Action names are case-sensitive, as the existing clients send them.
    let mut lower_case = register_request("lower@example.com", DEFAULT_PASSWORD);
    lower_case["action"] = json!("register");
    let reply = client.request(lower_case).await;
    assert_status(&reply, "UNKNOWN_ACTION");
    assert_still_serves(&mut client, "a lower-case action").await;

    let reply = client.request(json!({"action": CHAT_ACTION})).await;
    assert_status(&reply, "UNAUTHORIZED");
    assert_explains(&reply, "a chat action without a login");
    assert_still_serves(&mut client, "a chat action without a login").await;
}

#[tokio::test]
async fn invalid_account_payloads_are_bad_requests_and_store_nothing() {
    // The cases go back to back on one connection, faster than the default
    // limits allow once the services answer quickly; the limits have tests
    // of their own.
    let stack = Stack::builder().generous_limits().start().await;
    let proof = SessionProof::new(&stack).await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    let register = |email: Value, password: Value| json!({"action": "REGISTER", "userRegData": {"email": email, "password": password}});
    let cases: Vec<(&str, Value)> = vec![
        (
            "an address without @",
            register(json!("ana"), json!(DEFAULT_PASSWORD)),
        ),
        (
            "an address without domain",
            register(json!("ana@"), json!(DEFAULT_PASSWORD)),
        ),
        (
            "an address without local part",
            register(json!("@example.com"), json!(DEFAULT_PASSWORD)),
        ),
        (
            "a domain without dot",
            register(json!("ana@example"), json!(DEFAULT_PASSWORD)),
        ),
        (
            "an address with a space",
            register(json!("a na@example.com"), json!(DEFAULT_PASSWORD)),
        ),
        (
            "an empty address",
            register(json!(""), json!(DEFAULT_PASSWORD)),
        ),
        (
            "a 7-character password",
            register(json!("short@example.com"), json!("1234567")),
        ),
        (
            "a 129-character password",
            register(json!("long@example.com"), json!("p".repeat(129))),
        ),
        (
            "a numeric address",
            register(json!(42), json!(DEFAULT_PASSWORD)),
        ),
        (
            "a boolean password",
            register(json!("bool@example.com"), json!(true)),
        ),
        (
            "a null password",
            register(json!("null@example.com"), Value::Null),
        ),
        (
            "no password",
            json!({"action": "REGISTER", "userRegData": {"email": "nopass@example.com"}}),
        ),
        (
            "no address",
            json!({"action": "REGISTER", "userRegData": {"password": DEFAULT_PASSWORD}}),
        ),
        ("no userRegData", json!({"action": "REGISTER"})),
        (
            "userRegData as a string",
            json!({"action": "REGISTER", "userRegData": "ana@example.com"}),
        ),
        (
            "the registration under the login's key",
            json!({"action": "REGISTER", "userLoginData": {"email": "key@example.com", "password": DEFAULT_PASSWORD}}),
        ),
        ("a login without payload", json!({"action": "LOGIN"})),
        (
            "a login with an empty password",
            json!({"action": "LOGIN", "userLoginData": {"email": "ana@example.com", "password": ""}}),
        ),
        (
            "a numeric confirmation code",
            json!({"action": "CONFIRMATION", "userRegData": {"email": "ana@example.com", "token": 12345}}),
        ),
        (
            "an empty confirmation code",
            json!({"action": "CONFIRMATION", "userRegData": {"email": "ana@example.com", "token": " "}}),
        ),
        (
            "a session resume without token",
            json!({"action": "FASTLOGIN", "userLoginData": {"email": "ana@example.com"}}),
        ),
        (
            "a logout with an invalid address",
            json!({"action": "LOGOUT", "userLoginData": {"email": "ana", "token": "t"}}),
        ),
        (
            "a resend without address",
            json!({"action": "RESEND_CONFIRMATION", "userRegData": {}}),
        ),
    ];
    for (what, request) in cases {
        let reply = client.request(request).await;
        assert_eq!(status(&reply), "BAD_REQUEST", "{what}: {reply}");
        assert_explains(&reply, what);
        proof.still_serves(&mut client, what).await;
    }

    // Nothing was stored for the refused registrations: the only account is
    // the one the proof signed up.
    let users = stack.stored_documents(USERS).await;
    let emails: Vec<&str> = users
        .iter()
        .map(|u| u.get_str("email").unwrap_or_default())
        .collect();
    assert_eq!(
        emails,
        [PROOF_EMAIL],
        "a refused registration stored an account"
    );
}

#[tokio::test]
async fn passwords_of_8_to_128_characters_are_accepted() {
    let stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    let cases = [
        (
            "eight@example.com",
            "8 ASCII characters",
            "12345678".to_owned(),
        ),
        ("max@example.com", "128 ASCII characters", "p".repeat(128)),
        // Characters, not bytes: 8 of them take 16 bytes in UTF-8.
        ("umlaut@example.com", "8 two-byte characters", "ü".repeat(8)),
        (
            "umlaut-max@example.com",
            "128 two-byte characters",
            "ü".repeat(128),
        ),
    ];
    for (email, what, password) in &cases {
        let reply = client.register(email, password).await;
        assert_eq!(status(&reply), "USER_REGISTERED", "{what}: {reply}");
    }
    let reply = client
        .register("umlaut-long@example.com", &"ü".repeat(129))
        .await;
    assert_status(&reply, "BAD_REQUEST");
}

#[tokio::test]
async fn a_binary_frame_is_refused_and_the_connection_goes_on() {
    let stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    let frame = register_request("binary@example.com", DEFAULT_PASSWORD).to_string();
    client
        .send_message(Message::binary(frame.into_bytes()))
        .await;
    let reply = client.recv_json(REPLY_TIMEOUT).await;
    assert_status(&reply, "BAD_REQUEST");
    assert_explains(&reply, "a binary frame");
    assert_still_serves(&mut client, "a binary frame").await;
}

#[tokio::test]
async fn an_oversized_frame_closes_the_connection_with_1009() {
    let stack = Stack::builder().start().await;

    // Just under the limit is an ordinary request.
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    let reply = client
        .request(padded_registration(
            "fits@example.com",
            MAX_FRAME_BYTES - 1024,
        ))
        .await;
    assert_status(&reply, "USER_REGISTERED");

    // Over it, the connection is closed with "message too big".
    let oversized = padded_registration("huge@example.com", MAX_FRAME_BYTES + 1024);
    client.send_json(oversized).await;
    let close = client
        .expect_close(CLOSE_TIMEOUT)
        .await
        .expect("the gateway says why it closes");
    assert_eq!(close.code, CloseCode::Size, "{close:?}");
    assert_eq!(u16::from(close.code), 1009);

    // Nothing of it was handled, and the gateway serves new connections.
    assert!(stack.stored_user("huge@example.com").await.is_none());
    let mut next = Client::connect(&stack.gateway_url(0)).await;
    assert_still_serves(&mut next, "another connection's oversized frame").await;
}

#[tokio::test]
async fn frames_over_the_rate_limit_are_refused_unprocessed() {
    // A burst of 5, then one frame every 2 s: the frames below all arrive
    // long before a token is added back.
    let stack = Stack::builder()
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__RATE_BURST", "5")
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__RATE_PER_SEC", "0.5")
        .start()
        .await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    for _ in 0..8 {
        client.send_json(json!({"action": "LAUNCH_ROCKET"})).await;
    }
    let mut replies = Vec::new();
    for _ in 0..8 {
        replies.push(status(&client.recv_json(REPLY_TIMEOUT).await).to_owned());
    }
    assert_eq!(
        replies,
        [
            ["UNKNOWN_ACTION"; 5].as_slice(),
            ["RATE_LIMITED"; 3].as_slice()
        ]
        .concat(),
        "the burst is served, the rest is refused"
    );

    // Refused frames are not processed: a registration over the limit makes
    // no account.
    // (Sent without a requestId: a RATE_LIMITED frame carries none, see
    // docs/protocol.md, since the gateway does not read a refused frame.)
    client
        .send_json(register_request("too-fast@example.com", DEFAULT_PASSWORD))
        .await;
    assert_status(&client.recv_json(REPLY_TIMEOUT).await, "RATE_LIMITED");
    assert!(stack.stored_user("too-fast@example.com").await.is_none());

    // Once a token is back, the connection is served again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_still_serves(&mut client, "being rate limited").await;
}

#[tokio::test]
async fn a_client_that_ignores_the_rate_limit_is_disconnected_with_1008() {
    // No token comes back during the test, so every frame after the burst
    // counts against the client.
    let stack = Stack::builder()
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__RATE_BURST", "5")
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__RATE_PER_SEC", "0.01")
        .start()
        .await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    // The burst, then 100 frames over the limit without slowing down.
    for _ in 0..(5 + 100) {
        client.send_json(json!({"action": "LAUNCH_ROCKET"})).await;
    }
    let close = client
        .expect_close(CLOSE_TIMEOUT)
        .await
        .expect("the gateway says why it closes");
    assert_eq!(close.code, CloseCode::Policy, "{close:?}");
    assert_eq!(u16::from(close.code), 1008);

    let before: Vec<String> = client
        .take_buffered()
        .iter()
        .map(|f| status(f).to_owned())
        .collect();
    assert_eq!(
        before.iter().filter(|s| *s == "RATE_LIMITED").count(),
        99,
        "each frame over the limit but the last was answered RATE_LIMITED: {before:?}"
    );

    // The gateway itself is fine.
    let mut next = Client::connect(&stack.gateway_url(0)).await;
    assert_still_serves(&mut next, "another client being disconnected").await;
}

#[tokio::test]
async fn upgrades_from_origins_not_allowed_are_refused_with_403() {
    let allowed = "https://ok.example";
    let stack = Stack::builder()
        .service_env(GATEWAY, "SWITCHYARD__GATEWAY__ALLOWED_ORIGINS", allowed)
        .start()
        .await;
    let url = stack.gateway_url(0);

    for origin in [Some("https://evil.example"), Some("http://ok.example")] {
        match Client::try_connect(&url, origin).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 403, "Origin {origin:?}");
            }
            Err(other) => panic!("Origin {origin:?}: expected HTTP 403, got {other}"),
            Ok(_) => panic!("Origin {origin:?} was accepted; only {allowed} is allowed"),
        }
    }

    let mut client = Client::connect_with_origin(&url, allowed).await;
    assert_still_serves(&mut client, "connecting from the allowed origin").await;

    // No Origin at all: not a browser, so not what the check is about.
    let mut client = Client::connect(&url).await;
    assert_still_serves(&mut client, "connecting without an Origin").await;
}

/// The account [`SessionProof`] signs up.
const PROOF_EMAIL: &str = "proof@example.com";

/// Proves, cheaply, that a connection still works after a refusal: resuming
/// an open session on it succeeds. (A registration would hash a password
/// each time; tests that check many refusals use this instead.) It leaves
/// the connection logged in.
struct SessionProof {
    session: Session,
}

impl SessionProof {
    /// Signs up [`PROOF_EMAIL`] on a connection of its own.
    async fn new(stack: &Stack) -> Self {
        let mut client = Client::connect(&stack.gateway_url(0)).await;
        let session = signed_up_user(stack, &mut client, PROOF_EMAIL).await;
        Self { session }
    }

    async fn still_serves(&self, client: &mut Client, after: &str) {
        let reply = client
            .fastlogin(&self.session.email, &self.session.token)
            .await;
        assert_eq!(
            status(&reply),
            "USER_LOGGED",
            "after {after}, the connection should still serve: {reply}"
        );
    }
}

/// Proves the connection still works: a registration of a new address on
/// it succeeds.
async fn assert_still_serves(client: &mut Client, after: &str) {
    static REGISTRATIONS: AtomicUsize = AtomicUsize::new(0);
    let n = REGISTRATIONS.fetch_add(1, Ordering::Relaxed);
    let reply = client
        .register(&format!("still-serves-{n}@example.com"), DEFAULT_PASSWORD)
        .await;
    assert_eq!(
        status(&reply),
        "USER_REGISTERED",
        "after {after}, the connection should still serve: {reply}"
    );
}

/// A refusal tells a person what was wrong.
#[track_caller]
fn assert_explains(reply: &Value, what: &str) {
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        !message.trim().is_empty(),
        "{what}: the refusal has no message: {reply}"
    );
}

/// A `REGISTER` frame padded with an extra field to about `size` bytes.
fn padded_registration(email: &str, size: usize) -> Value {
    let mut frame = register_request(email, DEFAULT_PASSWORD);
    let used = frame.to_string().len() + r#","padding":"""#.len();
    frame["padding"] = Value::String("x".repeat(size.saturating_sub(used)));
    frame
}
