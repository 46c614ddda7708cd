//! Payload fields turned into checked values at the edge, each refusal a
//! sentence the client developer can act on.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use shared_proto::bus::actions::ActionError;
use shared_proto::client::decode_payload;
use shared_proto::envelope::ActionRequest;
use shared_proto::status::ErrorCode;

/// Decodes an action's payload, or refuses it with BAD_REQUEST.
pub fn payload<T: DeserializeOwned>(request: &ActionRequest) -> Result<T, ActionError> {
    decode_payload(&request.action, &request.payload).map_err(ActionError::Refused)
}

pub fn bad_request(message: impl Into<String>) -> ActionError {
    ActionError::refused(ErrorCode::BadRequest, message)
}

/// An id sent by a client: a user, group or conversation id.
pub fn id<'a>(field: &str, value: &'a str) -> Result<&'a str, ActionError> {
    let ok = !value.is_empty()
        && value.len() <= 80
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_|:".contains(c));
    if ok {
        Ok(value)
    } else {
        Err(bad_request(format!("\"{field}\" is not a valid id.")))
    }
}

/// Message text: trimmed, not empty, at most `max_chars`, and free of control
/// characters other than newline and tab. Stored as sent: clients must show
/// it as text, never as HTML.
pub fn message_text(raw: &str, max_chars: usize) -> Result<String, ActionError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(bad_request("The message text is empty."));
    }
    if text.chars().count() > max_chars {
        return Err(bad_request(format!(
            "The message text is longer than {max_chars} characters."
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(bad_request(
            "The message text contains control characters; only newline and tab are allowed.",
        ));
    }
    Ok(text.to_owned())
}

/// The client's own id for a message, which makes a resend harmless.
pub fn client_msg_id(raw: &str) -> Result<&str, ActionError> {
    if raw.is_empty() || raw.len() > 64 || raw.chars().any(char::is_control) {
        return Err(bad_request(
            "\"clientMsgId\" must be a non-empty string of at most 64 characters.",
        ));
    }
    Ok(raw)
}

/// A display name (nickname or group name): trimmed, within bounds, printable.
pub fn display_name(field: &str, raw: &str, min: usize, max: usize) -> Result<String, ActionError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars < min || chars > max || name.chars().any(char::is_control) {
        return Err(bad_request(format!(
            "\"{field}\" must have {min} to {max} printable characters."
        )));
    }
    Ok(name.to_owned())
}

/// A search prefix: at least one character, at most 64.
pub fn search_prefix(raw: &str) -> Result<String, ActionError> {
    display_name("query", raw, 1, 64)
}

/// `{"userId": "..."}`, the payload of most actions on another user.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserTarget {
    pub user_id: String,
}

/// `{"groupId": "..."}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupTarget {
    pub group_id: String,
}

/// `{"groupId": "...", "userId": "..."}`, for moderation actions.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMemberTarget {
    pub group_id: String,
    pub user_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_checked() {
        assert_eq!(
            message_text("  hi there \n", 10).ok(),
            Some("hi there".into())
        );
        assert!(message_text("   ", 10).is_err());
        assert!(message_text("01234567890", 10).is_err());
        assert!(message_text("line\nnext\ttab", 100).is_ok());
        assert!(message_text("bell\u{7}", 100).is_err());
        assert!(message_text("esc\u{1b}[31m", 100).is_err());
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(message_text(&"é".repeat(10), 10).is_ok());
    }

    #[test]
    fn ids_are_plain_tokens() {
        assert!(id("userId", "0193f0a2-7c1e-7abc-9def-0123456789ab").is_ok());
        assert!(id("userId", "").is_err());
        assert!(id("userId", "a b").is_err());
        assert!(id("userId", "{\"$ne\":1}").is_err());
    }
}
