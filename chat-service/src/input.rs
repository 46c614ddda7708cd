//! Payload fields turned into checked values at the edge, each refusal a
//! sentence the client developer can act on.

use shared_proto::bus::actions::ActionError;
use shared_proto::status::ErrorCode;

pub fn bad_request(message: impl Into<String>) -> ActionError {
    ActionError::refused(ErrorCode::BadRequest, message)
}

/// An id sent by a client: a user, group or conversation id, of whichever
/// type it was parsed as.
pub fn id<'a, T: AsRef<str> + ?Sized>(field: &str, value: &'a T) -> Result<&'a T, ActionError> {
    let text = value.as_ref();
    let ok = !text.is_empty()
        && text.len() <= 80
        && text
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
    shared_proto::client::display_name(field, raw, min, max).map_err(bad_request)
}

/// A search prefix: at least one character, at most 64.
pub fn search_prefix(raw: &str) -> Result<String, ActionError> {
    display_name("query", raw, 1, 64)
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

    /// The `rocketStatus` of a refusal.
    fn status<T>(result: Result<T, ActionError>) -> String {
        match result {
            Err(ActionError::Refused(frame)) => frame.status().to_owned(),
            Err(other) => format!("not a refusal: {other}"),
            Ok(_) => "accepted".to_owned(),
        }
    }

    #[test]
    fn message_text_is_1_to_4000_characters_after_trimming() {
        let max = crate::settings::ChatSettings::default().max_text_chars;
        assert_eq!(max, 4000);
        let longest = "x".repeat(4000);
        assert_eq!(
            message_text(&format!("  {longest}\n\t "), max).ok(),
            Some(longest.clone()),
            "surrounding whitespace does not count"
        );
        assert_eq!(
            status(message_text(&format!("{longest}x"), max)),
            "BAD_REQUEST"
        );
        assert_eq!(message_text("x", max).ok(), Some("x".into()));
        assert_eq!(status(message_text("\n\t \r\n", max)), "BAD_REQUEST");
    }

    #[test]
    fn message_text_keeps_inner_newlines_and_html_as_sent() {
        assert_eq!(
            message_text("<b>great</b>,\n  thanks!", 100).ok(),
            Some("<b>great</b>,\n  thanks!".into())
        );
        assert_eq!(status(message_text("carriage\rreturn", 100)), "BAD_REQUEST");
        assert_eq!(status(message_text("nul\u{0}", 100)), "BAD_REQUEST");
    }

    #[test]
    fn client_msg_id_is_1_to_64_bytes_with_no_control_characters() {
        let longest = "a".repeat(64);
        assert_eq!(client_msg_id(&longest).ok(), Some(longest.as_str()));
        assert_eq!(status(client_msg_id(&"a".repeat(65))), "BAD_REQUEST");
        assert_eq!(status(client_msg_id("")), "BAD_REQUEST");
        assert_eq!(status(client_msg_id("tab\tinside")), "BAD_REQUEST");
        assert_eq!(status(client_msg_id("nl\n")), "BAD_REQUEST");
        // 33 two-byte characters: 66 bytes, over the limit in bytes.
        assert_eq!(status(client_msg_id(&"é".repeat(33))), "BAD_REQUEST");
        assert!(client_msg_id(&"é".repeat(32)).is_ok());
        assert!(client_msg_id("5f0c2a8e-3b1d-4c7a-9e21-8d4b6f1a0c93").is_ok());
    }

    #[test]
    fn ids_are_1_to_80_characters_of_letters_digits_and_dash_underscore_bar_colon() {
        assert!(id("groupId", &"a".repeat(80)).is_ok());
        assert_eq!(status(id("groupId", &"a".repeat(81))), "BAD_REQUEST");
        assert!(id("conversationId", "d:A-z_0|9").is_ok());
        for bad in ["a.b", "a/b", "a$b", "é", "a\nb", " a", "a\u{0}"] {
            assert_eq!(status(id("userId", bad)), "BAD_REQUEST", "{bad:?}");
        }
    }

    #[test]
    fn an_invalid_id_refusal_names_the_field() {
        let Err(ActionError::Refused(frame)) = id("to.groupId", "no spaces") else {
            panic!("an id with a space was accepted");
        };
        let message = frame.get("message").and_then(|m| m.as_str());
        assert_eq!(message, Some("\"to.groupId\" is not a valid id."));
    }

    #[test]
    fn display_names_count_characters_not_bytes_and_refuse_control_characters() {
        assert!(display_name("name", &"é".repeat(4), 2, 4).is_ok());
        assert_eq!(
            status(display_name("name", &"é".repeat(5), 2, 4)),
            "BAD_REQUEST"
        );
        assert_eq!(
            status(display_name("name", "ab\u{7}c", 2, 4)),
            "BAD_REQUEST"
        );
    }

    #[test]
    fn search_query_is_1_to_64_characters() {
        assert_eq!(search_prefix(" hik ").ok(), Some("hik".into()));
        assert!(search_prefix(&"q".repeat(64)).is_ok());
        assert_eq!(status(search_prefix(&"q".repeat(65))), "BAD_REQUEST");
        assert_eq!(status(search_prefix("   ")), "BAD_REQUEST");
        assert_eq!(status(search_prefix("")), "BAD_REQUEST");
    }
}
