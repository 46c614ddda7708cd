//! The data of the auth-service replies that carry any, one `Serialize`
//! struct per kind: a frame is `ServerFrame::new(status, sentence)
//! .with_fields(&body)`. Replies with a status and a sentence alone need
//! none.
//!
//! Field order is the order on the wire (`tests/tests/wire_format.rs` pins
//! `USER_LOGGED`): the JSON maps keep insertion order.

use serde::Serialize;
use shared_proto::action::UserId;

/// `USER_LOGGED`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserLogged<'a> {
    pub flag: ProfileFlag<'a>,
}

/// The `flag` of `USER_LOGGED`: the public profile in the shape the
/// original clients read, with the session token and the user's id.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileFlag<'a> {
    pub email: &'a str,
    pub nickname: &'a str,
    pub confirmed: bool,
    pub token: &'a str,
    pub online: bool,
    pub points: i64,
    pub rank: &'a str,
    pub permission: &'a str,
    pub age: &'a str,
    pub country: &'a str,
    pub ban: bool,
    pub profile_url: &'a str,
    pub user_id: &'a UserId,
}

/// `CONFIRMATION_FAILED`: a machine-readable reason and, where tries are
/// counted, how many are left.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmationFailed<'a> {
    pub reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<i64>,
}

/// `RATE_LIMITED` on a login: when trying again can succeed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryAfter {
    pub retry_after_ms: u64,
}

#[cfg(test)]
mod tests {
    use shared_proto::client::ServerFrame;
    use shared_proto::status::{ErrorCode, ReplyStatus};

    use super::*;

    #[test]
    fn attempts_left_is_absent_where_tries_are_not_counted() {
        let expired = ServerFrame::new(ReplyStatus::ConfirmationFailed, "Expired.").with_fields(
            ConfirmationFailed {
                reason: "EXPIRED",
                attempts_left: None,
            },
        );
        assert_eq!(
            expired.to_text(),
            r#"{"message":"Expired.","rocketStatus":"CONFIRMATION_FAILED","reason":"EXPIRED"}"#
        );
        let wrong = ServerFrame::new(ReplyStatus::ConfirmationFailed, "Wrong.").with_fields(
            ConfirmationFailed {
                reason: "WRONG_CODE",
                attempts_left: Some(2),
            },
        );
        assert_eq!(
            wrong.to_text(),
            r#"{"message":"Wrong.","rocketStatus":"CONFIRMATION_FAILED","reason":"WRONG_CODE","attemptsLeft":2}"#
        );
    }

    #[test]
    fn a_rate_limited_login_says_when_to_retry() {
        let frame = ServerFrame::error(ErrorCode::RateLimited, "Wait.").with_fields(RetryAfter {
            retry_after_ms: 1873,
        });
        assert_eq!(
            frame.to_text(),
            r#"{"message":"Wait.","rocketStatus":"RATE_LIMITED","retryAfterMs":1873}"#
        );
    }
}
