//! Resuming a session (`FASTLOGIN` on a new connection) reads nothing from
//! the database in the common case (neither the session and user in
//! auth-service nor the user's groups in chat-service), so that the clients of a drained
//! gateway come back at once; and a `LOGOUT` or a profile change is still
//! seen by every resume, on every gateway, at once.

use serde_json::json;
use switchyard_tests::chat::ChatUser;
use switchyard_tests::ports::free_port;
use switchyard_tests::{AUTH, CHAT, Client, Stack, assert_status};

/// Resumes measured.
const RESUMES: usize = 12;

#[tokio::test]
async fn a_resume_reads_nothing_from_the_database_and_a_logout_still_ends_it_everywhere() {
    let auth_http = format!("127.0.0.1:{}", free_port());
    let chat_http = format!("127.0.0.1:{}", free_port());
    let stack = Stack::builder()
        .gateways(2)
        .chat(true)
        .generous_limits()
        .service_env(AUTH, "SWITCHYARD__HTTP__LISTEN", &auth_http)
        .service_env(CHAT, "SWITCHYARD__HTTP__LISTEN", &chat_http)
        .start()
        .await;
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let group = ana.client.create_group("Hikers").await;

    // Many resumes, on both gateways: each answered, none reading a user, a
    // session or the user's groups from the database.
    let finds_before = finds(&auth_http).await;
    let chat_finds_before = finds(&chat_http).await;
    let mut resumed = Vec::new();
    for n in 0..RESUMES {
        let mut client = Client::connect(&stack.gateway_url(n % 2)).await;
        let reply = client.fastlogin(&ana.email, &ana.token).await;
        assert_status(&reply, "USER_LOGGED");
        assert_eq!(reply["flag"]["nickname"], "Ana", "{reply}");
        resumed.push(client);
    }
    assert_eq!(
        finds(&auth_http).await - finds_before,
        0.0,
        "auth-service read the database for {RESUMES} resumes"
    );
    assert_eq!(
        finds(&chat_http).await - chat_finds_before,
        0.0,
        "chat-service read the database for {RESUMES} resumes"
    );

    // The groups a resume learns are those of the moment: a group created
    // since is delivered to a connection resumed after.
    let newer = ana.client.create_group("Climbers").await;
    let mut fresh = Client::connect(&stack.gateway_url(1)).await;
    assert_status(
        &fresh.fastlogin(&ana.email, &ana.token).await,
        "USER_LOGGED",
    );
    for group_id in [&group, &newer] {
        let sent = ana
            .client
            .send_to_group(group_id, "hello", &format!("to-{group_id}"))
            .await;
        assert_status(&sent, "MESSAGE_SENT");
        let event = fresh
            .expect_event("NEW_MESSAGE", switchyard_tests::chat::EVENT_TIMEOUT)
            .await;
        assert_eq!(
            event["conversation"]["groupId"],
            group_id.as_str(),
            "{event}"
        );
    }
    drop(fresh);

    // A new nickname shows in the next resume.
    let mut first = resumed.remove(0);
    let reply = first
        .request(json!({"action": "UPDATE_PROFILE", "nickname": "Anabel"}))
        .await;
    assert_status(&reply, "PROFILE_UPDATED");
    let mut client = Client::connect(&stack.gateway_url(1)).await;
    let reply = client.fastlogin(&ana.email, &ana.token).await;
    assert_eq!(reply["flag"]["nickname"], "Anabel", "{reply}");

    // With the copies gone (Redis lost them), resumes read the database
    // again and still work.
    assert!(
        stack.forget_redis_keys("*:auth:*").await > 0,
        "copies were kept"
    );
    let finds_before = finds(&auth_http).await;
    let reply = client.fastlogin(&ana.email, &ana.token).await;
    assert_status(&reply, "USER_LOGGED");
    assert_eq!(reply["flag"]["nickname"], "Anabel", "{reply}");
    assert!(
        finds(&auth_http).await - finds_before >= 1.0,
        "a resume with nothing cached reads the database"
    );

    // A LOGOUT ends the session on every connection using it, on both
    // gateways, and no resume with it works any more.
    let reply = first
        .request(
            json!({"action": "LOGOUT", "userLoginData": {"email": ana.email, "token": ana.token}}),
        )
        .await;
    assert_status(&reply, "USER_LOGOUT");
    for other in &mut resumed {
        other
            .expect_event("SESSION_CLOSED", switchyard_tests::chat::EVENT_TIMEOUT)
            .await;
    }
    for gateway in 0..2 {
        let mut late = Client::connect(&stack.gateway_url(gateway)).await;
        let reply = late.fastlogin(&ana.email, &ana.token).await;
        assert_status(&reply, "NOT_LOGGED");
    }
}

/// How many `find` commands the service at `http` has sent to the database.
async fn finds(http: &str) -> f64 {
    Stack::metric(http, "switchyard_store_commands_total", "command=\"find\"").await
}
