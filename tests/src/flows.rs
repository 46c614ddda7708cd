//! The account actions of the client contract as one call each, so that a
//! test reads like the scenario it proves.
//!
//! Each action is sent exactly as the existing clients send it (see
//! `seed-protocol.md`), plus a `requestId`, and returns the reply frame.
//! [`signed_up_user`] walks a new account from registration to a session.

use serde_json::{Value, json};

use crate::client::Client;
use crate::stack::Stack;

/// The password [`signed_up_user`] registers with.
pub const DEFAULT_PASSWORD: &str = "Correct-Horse-Battery-9";

/// A confirmed, logged-in account.
#[derive(Debug, Clone)]
pub struct Session {
    pub email: String,
    pub password: String,
    /// The session token from the `USER_LOGGED` reply.
    pub token: String,
    /// The `flag` object of the `USER_LOGGED` reply (the public profile).
    pub profile: Value,
}

/// The `rocketStatus` of a reply, or `""` if it has none.
pub fn status(reply: &Value) -> &str {
    reply["rocketStatus"].as_str().unwrap_or_default()
}

/// Asserts that `reply` has `rocketStatus` `expected`, showing the whole reply if not.
#[track_caller]
pub fn assert_status(reply: &Value, expected: &str) {
    assert_eq!(
        status(reply),
        expected,
        "expected rocketStatus {expected}, got reply {reply}"
    );
}

/// The `REGISTER` frame, for [`Client::request_all`] and friends.
pub fn register_request(email: &str, password: &str) -> Value {
    json!({
        "action": "REGISTER",
        "userRegData": {"email": email, "password": password},
    })
}

/// A reply without its `requestId`, so that it can be compared with the
/// exact frame the contract prescribes (the echo itself is checked by
/// [`Client::request`], which only returns the frame that carries it).
pub fn without_request_id(reply: &Value) -> Value {
    let mut body = reply.clone();
    if let Some(object) = body.as_object_mut() {
        object.remove("requestId");
    }
    body
}

impl Client {
    /// `REGISTER`; replies `USER_REGISTERED` or `USER_ALREADY_REGISTERED`.
    pub async fn register(&mut self, email: &str, password: &str) -> Value {
        self.request(register_request(email, password)).await
    }

    /// `CONFIRMATION` with the code from the mail; replies `USER_CONFIRMED`.
    pub async fn confirm(&mut self, email: &str, code: &str) -> Value {
        self.request(json!({
            "action": "CONFIRMATION",
            "userRegData": {"email": email, "token": code},
        }))
        .await
    }

    /// `LOGIN`; replies `USER_LOGGED` with the profile in `flag`, or `NOT_LOGGED`.
    pub async fn login(&mut self, email: &str, password: &str) -> Value {
        self.request(json!({
            "action": "LOGIN",
            "userLoginData": {"email": email, "password": password},
        }))
        .await
    }

    /// `FASTLOGIN` with a session token; replies `USER_LOGGED` or `NOT_LOGGED`.
    pub async fn fastlogin(&mut self, email: &str, token: &str) -> Value {
        self.request(json!({
            "action": "FASTLOGIN",
            "userLoginData": {"email": email, "token": token},
        }))
        .await
    }

    /// `LOGOUT`; replies `USER_LOGOUT` or `USER_LOGOUT_ERROR`.
    pub async fn logout(&mut self, email: &str, token: &str) -> Value {
        self.request(json!({
            "action": "LOGOUT",
            "userLoginData": {"email": email, "token": token},
        }))
        .await
    }

    /// `RESEND_CONFIRMATION`: asks for a new confirmation mail.
    pub async fn resend_confirmation(&mut self, email: &str) -> Value {
        self.request(json!({
            "action": "RESEND_CONFIRMATION",
            "userRegData": {"email": email},
        }))
        .await
    }
}

/// Registers `email` with [`DEFAULT_PASSWORD`], reads the confirmation code
/// from the mail, confirms and logs in.
///
/// # Panics
/// If any step does not get its success reply, or no mail arrives within
/// [`MAIL_TIMEOUT`](crate::mail::MAIL_TIMEOUT).
pub async fn signed_up_user(stack: &Stack, client: &mut Client, email: &str) -> Session {
    assert_status(
        &client.register(email, DEFAULT_PASSWORD).await,
        "USER_REGISTERED",
    );

    let code = stack.maildev().confirmation_code(email).await;
    assert_status(&client.confirm(email, &code).await, "USER_CONFIRMED");

    let reply = client.login(email, DEFAULT_PASSWORD).await;
    assert_status(&reply, "USER_LOGGED");
    let profile = reply["flag"].clone();
    let token = profile["token"]
        .as_str()
        .unwrap_or_else(|| panic!("USER_LOGGED reply without flag.token: {reply}"))
        .to_owned();
    Session {
        email: email.to_owned(),
        password: DEFAULT_PASSWORD.to_owned(),
        token,
        profile,
    }
}
