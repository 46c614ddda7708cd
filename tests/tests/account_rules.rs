//! The rules an account lives by: one account per address, codes that lock,
//! expire and can be replaced, no login before confirmation, and secrets
//! that are never stored as they were typed.

use std::time::Duration;

use mongodb::bson::{Bson, Document, doc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use switchyard_tests::mail::MAIL_TIMEOUT;
use switchyard_tests::{Client, DEFAULT_PASSWORD, SESSIONS, Stack, USERS, assert_status, status};

const ANA: &str = "ana@example.com";

/// Wait this long without a new mail before counting them, so that a
/// duplicate on its way is counted too.
const MAIL_QUIET: Duration = Duration::from_millis(1500);

/// Lets a test ask for a new code right after the previous one.
const NO_RESEND_INTERVAL: (&str, &str) = ("SWITCHYARD__AUTH__RESEND_INTERVAL_SECS", "0");

#[tokio::test]
async fn an_address_registers_once_and_keeps_its_first_password() {
    let stack = Stack::builder().gateways(2).start().await;
    let mut first = Client::connect(&stack.gateway_url(0)).await;
    let mut second = Client::connect(&stack.gateway_url(1)).await;

    assert_status(
        &first.register(ANA, "first-password-1").await,
        "USER_REGISTERED",
    );
    // The same address, however it is typed, is taken.
    for spelling in [ANA, "  Ana@Example.COM "] {
        let reply = second.register(spelling, "second-password-2").await;
        assert_status(&reply, "USER_ALREADY_REGISTERED");
    }

    assert_eq!(count_users(&stack, ANA).await, 1);
    let mails = stack
        .maildev()
        .settled_mails(1, MAIL_QUIET, MAIL_TIMEOUT)
        .await;
    assert_eq!(
        mails.iter().filter(|m| m.is_to(ANA)).count(),
        1,
        "the refused registrations send no mail: {mails:?}"
    );

    let code = stack.maildev().confirmation_code(ANA).await;
    assert_status(&first.confirm(ANA, &code).await, "USER_CONFIRMED");
    assert_status(&second.login(ANA, "second-password-2").await, "NOT_LOGGED");
    assert_status(&second.login(ANA, "first-password-1").await, "USER_LOGGED");
}

#[tokio::test]
async fn an_address_is_trimmed_and_lower_cased_everywhere() {
    let stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    assert_status(
        &client
            .register("  Bob@Example.COM ", DEFAULT_PASSWORD)
            .await,
        "USER_REGISTERED",
    );
    let stored = stack
        .stored_user("bob@example.com")
        .await
        .expect("the account is stored under the normalised address");
    assert_eq!(stored.get_str("email"), Ok("bob@example.com"));

    let code = stack.maildev().confirmation_code("bob@example.com").await;
    assert_status(
        &client.confirm("BOB@example.com", &code).await,
        "USER_CONFIRMED",
    );
    let reply = client.login(" bob@EXAMPLE.com", DEFAULT_PASSWORD).await;
    assert_status(&reply, "USER_LOGGED");
    assert_eq!(reply["flag"]["email"], "bob@example.com");
}

#[tokio::test]
async fn concurrent_registrations_of_one_address_make_one_account() {
    const CONNECTIONS: usize = 10;
    let stack = Stack::builder().gateways(2).start().await;
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        clients.push(Client::connect(&stack.gateway_url(i % 2)).await);
    }

    // Every connection registers the address with a password of its own, all
    // at the same moment.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(CONNECTIONS));
    let attempts = clients.into_iter().enumerate().map(|(i, mut client)| {
        let start = start.clone();
        tokio::spawn(async move {
            start.wait().await;
            let reply = client.register(ANA, &password_of(i)).await;
            status(&reply).to_owned()
        })
    });
    let mut outcomes = Vec::with_capacity(CONNECTIONS);
    for attempt in attempts.collect::<Vec<_>>() {
        outcomes.push(attempt.await.expect("a registering task panicked"));
    }

    let winners: Vec<usize> = (0..CONNECTIONS)
        .filter(|&i| outcomes[i] == "USER_REGISTERED")
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one registration wins: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .filter(|s| *s != "USER_REGISTERED")
            .all(|s| s == "USER_ALREADY_REGISTERED"),
        "the others are told the address is taken: {outcomes:?}"
    );
    assert_eq!(count_users(&stack, ANA).await, 1);
    let mails = stack
        .maildev()
        .settled_mails(1, MAIL_QUIET, MAIL_TIMEOUT)
        .await;
    assert_eq!(mails.len(), 1, "one confirmation mail: {mails:?}");

    // The account is the winner's: its password is the one that works.
    let winner = winners[0];
    let loser = (winner + 1) % CONNECTIONS;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    let code = stack.maildev().confirmation_code(ANA).await;
    assert_status(&client.confirm(ANA, &code).await, "USER_CONFIRMED");
    assert_status(&client.login(ANA, &password_of(loser)).await, "NOT_LOGGED");
    assert_status(
        &client.login(ANA, &password_of(winner)).await,
        "USER_LOGGED",
    );
}

#[tokio::test]
async fn five_wrong_codes_lock_the_code_until_a_new_one_is_sent() {
    let (key, value) = NO_RESEND_INTERVAL;
    let stack = Stack::builder().env(key, value).start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &client.register(ANA, DEFAULT_PASSWORD).await,
        "USER_REGISTERED",
    );
    let code = stack.maildev().confirmation_code(ANA).await;
    let wrong = wrong_code_for(&code);

    for left in (1..=4).rev() {
        let reply = client.confirm(ANA, &wrong).await;
        assert_confirmation_failed(&reply, "WRONG_CODE");
        assert_eq!(reply["attemptsLeft"], left, "{reply}");
    }
    // The fifth wrong try uses up the last attempt.
    let reply = client.confirm(ANA, &wrong).await;
    assert_confirmation_failed(&reply, "LOCKED");
    assert_eq!(reply["attemptsLeft"], 0, "{reply}");

    // Locked means locked: the right code is refused too, and the account
    // cannot be used.
    let reply = client.confirm(ANA, &code).await;
    assert_confirmation_failed(&reply, "LOCKED");
    assert_eq!(reply["attemptsLeft"], 0, "{reply}");
    assert_status(
        &client.login(ANA, DEFAULT_PASSWORD).await,
        "USER_NOT_CONFIRMED",
    );

    // A new code starts over with all its attempts.
    assert_status(&client.resend_confirmation(ANA).await, "CONFIRMATION_SENT");
    let new_code = stack.maildev().nth_confirmation_code(ANA, 2).await;
    let reply = client.confirm(ANA, &wrong_code_for(&new_code)).await;
    assert_confirmation_failed(&reply, "WRONG_CODE");
    assert_eq!(reply["attemptsLeft"], 4, "{reply}");
    assert_status(&client.confirm(ANA, &new_code).await, "USER_CONFIRMED");
    assert_status(&client.login(ANA, DEFAULT_PASSWORD).await, "USER_LOGGED");
}

#[tokio::test]
async fn a_code_expires() {
    let stack = Stack::builder()
        .env("SWITCHYARD__AUTH__CODE_TTL_SECS", "1")
        .start()
        .await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &client.register(ANA, DEFAULT_PASSWORD).await,
        "USER_REGISTERED",
    );
    let code = stack.maildev().confirmation_code(ANA).await;

    tokio::time::sleep(Duration::from_secs(2)).await;

    let reply = client.confirm(ANA, &code).await;
    assert_confirmation_failed(&reply, "EXPIRED");
    assert_status(
        &client.login(ANA, DEFAULT_PASSWORD).await,
        "USER_NOT_CONFIRMED",
    );
}

#[tokio::test]
async fn a_resent_code_replaces_the_old_one() {
    let (key, value) = NO_RESEND_INTERVAL;
    let stack = Stack::builder().gateways(2).env(key, value).start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &client.register(ANA, DEFAULT_PASSWORD).await,
        "USER_REGISTERED",
    );
    let old_code = stack.maildev().confirmation_code(ANA).await;

    let mut elsewhere = Client::connect(&stack.gateway_url(1)).await;
    let reply = elsewhere.resend_confirmation(" ANA@example.com").await;
    assert_status(&reply, "CONFIRMATION_SENT");

    // A second mail arrives with a different code.
    let new_code = stack.maildev().nth_confirmation_code(ANA, 2).await;
    assert_ne!(new_code, old_code);

    let reply = client.confirm(ANA, &old_code).await;
    assert_confirmation_failed(&reply, "WRONG_CODE");
    assert_eq!(reply["attemptsLeft"], 4, "{reply}");
    assert_status(&client.confirm(ANA, &new_code).await, "USER_CONFIRMED");
    assert_eq!(stack.maildev().mails_to(ANA).await.len(), 2);
}

#[tokio::test]
async fn resending_is_rate_limited_and_needs_an_account_waiting_for_confirmation() {
    // The default interval between two codes (60 s) applies.
    let stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;

    assert_status(
        &client.resend_confirmation("nobody@example.com").await,
        "NOT_FOUND",
    );
    let reply = client.confirm("nobody@example.com", "ABCD2345").await;
    assert_confirmation_failed(&reply, "UNKNOWN_ACCOUNT");

    assert_status(
        &client.register(ANA, DEFAULT_PASSWORD).await,
        "USER_REGISTERED",
    );
    let code = stack.maildev().confirmation_code(ANA).await;
    let reply = client.resend_confirmation(ANA).await;
    assert_status(&reply, "RATE_LIMITED");

    assert_status(&client.confirm(ANA, &code).await, "USER_CONFIRMED");
    assert_status(
        &client.resend_confirmation(ANA).await,
        "USER_ALREADY_CONFIRMED",
    );
    assert_status(&client.confirm(ANA, &code).await, "USER_ALREADY_CONFIRMED");

    let mails = stack
        .maildev()
        .settled_mails(1, MAIL_QUIET, MAIL_TIMEOUT)
        .await;
    assert_eq!(
        mails.len(),
        1,
        "neither refused resend sent a mail: {mails:?}"
    );
}

#[tokio::test]
async fn login_needs_the_right_password_and_a_confirmed_address() {
    let stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &client.register(ANA, DEFAULT_PASSWORD).await,
        "USER_REGISTERED",
    );

    assert_status(
        &client.login(ANA, DEFAULT_PASSWORD).await,
        "USER_NOT_CONFIRMED",
    );
    // A wrong password tells nothing about the account's state.
    assert_status(&client.login(ANA, "not-the-password").await, "NOT_LOGGED");
    assert_status(
        &client.login("nobody@example.com", DEFAULT_PASSWORD).await,
        "NOT_LOGGED",
    );

    let code = stack.maildev().confirmation_code(ANA).await;
    assert_status(&client.confirm(ANA, &code).await, "USER_CONFIRMED");
    assert_status(&client.login(ANA, "not-the-password").await, "NOT_LOGGED");
    let reply = client.login(ANA, DEFAULT_PASSWORD).await;
    assert_status(&reply, "USER_LOGGED");
    let token = reply["flag"]["token"].as_str().expect("a session token");

    // A token opens only its own account's session.
    let mut other = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &other
            .fastlogin(ANA, "made-up-token-made-up-token-made-up-token-00")
            .await,
        "NOT_LOGGED",
    );
    assert_status(
        &other.fastlogin("bob@example.com", token).await,
        "NOT_LOGGED",
    );
    assert_status(&other.fastlogin(ANA, token).await, "USER_LOGGED");
}

#[tokio::test]
async fn passwords_codes_and_tokens_are_stored_only_as_hashes() {
    let stack = Stack::builder().start().await;
    let password = "Plain-Text-Never-Stored-42";
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    assert_status(&client.register(ANA, password).await, "USER_REGISTERED");
    let code = stack.maildev().confirmation_code(ANA).await;

    // While the code waits, its hash is stored, not the code.
    let user = stack.stored_user(ANA).await.expect("the account is stored");
    let password_hash = user.get_str("password_hash").expect("a password hash");
    assert!(
        password_hash.starts_with("$argon2id$"),
        "passwords are hashed with Argon2id: {password_hash}"
    );
    assert_eq!(user.get_bool("confirmed"), Ok(false));
    let pending = user.get_document("code").expect("a pending code");
    for field in ["hash", "salt", "attempts", "expires_at_ms"] {
        assert!(pending.contains_key(field), "code.{field} in {pending}");
    }
    assert_nothing_stored_contains(&stack, &[password, &code]).await;

    assert_status(&client.confirm(ANA, &code).await, "USER_CONFIRMED");
    let reply = client.login(ANA, password).await;
    assert_status(&reply, "USER_LOGGED");
    let token = reply["flag"]["token"]
        .as_str()
        .expect("a session token")
        .to_owned();

    // The session is found by the token's SHA-256, and holds no token.
    let sessions = stack.stored_documents(SESSIONS).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    assert_eq!(
        session.get_str("_id"),
        Ok(hex::encode(Sha256::digest(token.as_bytes())).as_str())
    );
    assert_eq!(session.get_str("email"), Ok(ANA));
    assert_eq!(session.get_str("user_id"), user.get_str("_id"));
    assert_eq!(session.get_bool("revoked"), Ok(false));
    assert!(session.contains_key("expires_at_ms"), "{session}");
    assert_nothing_stored_contains(&stack, &[password, &code, &token]).await;
}

#[tokio::test]
async fn the_database_refuses_a_second_account_for_an_address() {
    let stack = Stack::builder().start().await;
    let mut client = Client::connect(&stack.gateway_url(0)).await;
    assert_status(
        &client.register(ANA, DEFAULT_PASSWORD).await,
        "USER_REGISTERED",
    );

    // The unique index is what makes concurrent registrations safe, whatever
    // the replicas do; check the database itself enforces it.
    let users = stack.mongo().collection::<Document>(USERS);
    let mut duplicate = stack.stored_user(ANA).await.expect("the account is stored");
    duplicate.insert("_id", "another-id");
    let refused = users.insert_one(duplicate).await;
    assert!(
        refused.is_err(),
        "a second document with the same e-mail was accepted"
    );
    assert_eq!(count_users(&stack, ANA).await, 1);
}

/// A confirmation code the user did not get: the real one with its first
/// symbol changed (codes are compared without regard to case or dashes, so
/// only a different symbol makes it wrong).
fn wrong_code_for(code: &str) -> String {
    let replacement = if code.starts_with('2') { '3' } else { '2' };
    let mut wrong = String::from(replacement);
    wrong.push_str(&code[1..]);
    wrong
}

fn password_of(connection: usize) -> String {
    format!("password-of-connection-{connection}")
}

#[track_caller]
fn assert_confirmation_failed(reply: &Value, reason: &str) {
    assert_status(reply, "CONFIRMATION_FAILED");
    assert_eq!(reply["reason"], reason, "{reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "a refusal says why: {reply}");
}

async fn count_users(stack: &Stack, email: &str) -> u64 {
    stack
        .mongo()
        .collection::<Document>(USERS)
        .count_documents(doc! {"email": email})
        .await
        .expect("counting accounts")
}

/// Fails if any string anywhere in the database contains one of `secrets`.
async fn assert_nothing_stored_contains(stack: &Stack, secrets: &[&str]) {
    let everything = stack.everything_stored().await;
    assert!(!everything.is_empty(), "the database holds the account");
    for (collection, document) in &everything {
        let mut strings = Vec::new();
        collect_strings(&Bson::Document(document.clone()), &mut strings);
        for secret in secrets {
            assert!(
                !strings.iter().any(|s| s.contains(secret)),
                "{collection} stores the secret {secret:?} as typed: {document}"
            );
        }
    }
}

fn collect_strings(value: &Bson, into: &mut Vec<String>) {
    match value {
        Bson::String(s) => into.push(s.clone()),
        Bson::Document(document) => {
            for (key, value) in document {
                into.push(key.clone());
                collect_strings(value, into);
            }
        }
        Bson::Array(items) => items.iter().for_each(|item| collect_strings(item, into)),
        Bson::Binary(binary) => into.push(String::from_utf8_lossy(&binary.bytes).into_owned()),
        _ => {}
    }
}
