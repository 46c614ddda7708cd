//! The client envelope: one JSON object per WebSocket text frame.
//!
//! Client to server: `{"action": "NAME", "requestId"?: "...", ...payload}`.
//! Server to client: `{"rocketStatus": "STATUS", "message": "...", ...data}`,
//! with `requestId` echoed on every reply to a request that carried one.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::status::ErrorCode;

/// The longest `action` name or `requestId` we accept; anything longer is
/// garbage, not a client.
pub const MAX_TOKEN_LEN: usize = 128;

/// A client frame whose envelope has been checked: it is a JSON object with a
/// non-empty string `action` and, if present, a string `requestId`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRequest {
    pub action: String,
    pub request_id: Option<String>,
    /// Every other field of the frame, as sent.
    pub payload: Map<String, Value>,
}

/// Why a client frame was refused before it reached any service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error(
        "The frame is not JSON. Send one JSON object per text frame, e.g. {{\"action\": \"LOGIN\", ...}}."
    )]
    NotJson,
    #[error("The frame is JSON but not an object. Send one JSON object with an \"action\" field.")]
    NotObject,
    #[error("The frame has no \"action\" field. Add \"action\" naming what you want to do.")]
    MissingAction,
    #[error("The \"action\" field must be a non-empty string of at most 128 characters.")]
    InvalidAction,
    #[error("The \"requestId\" field, when present, must be a string of at most 128 characters.")]
    InvalidRequestId,
}

/// A refused frame, with the `requestId` to echo if one could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRejection {
    pub request_id: Option<String>,
    pub error: FrameError,
}

impl FrameRejection {
    /// The error frame that tells the client what was wrong.
    pub fn to_frame(&self) -> ServerFrame {
        ServerFrame::error(ErrorCode::BadRequest, self.error.to_string())
            .with_request_id(self.request_id.as_deref())
    }
}

/// Checks a text frame's envelope. Never panics, whatever the input.
pub fn parse_client_frame(text: &str) -> Result<ClientRequest, FrameRejection> {
    let reject = |request_id: Option<String>, error| FrameRejection { request_id, error };
    let value: Value = serde_json::from_str(text).map_err(|_| reject(None, FrameError::NotJson))?;
    let Value::Object(mut payload) = value else {
        return Err(reject(None, FrameError::NotObject));
    };
    let request_id = match payload.remove("requestId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.len() <= MAX_TOKEN_LEN => Some(id),
        Some(_) => return Err(reject(None, FrameError::InvalidRequestId)),
    };
    let action = match payload.remove("action") {
        None | Some(Value::Null) => return Err(reject(request_id, FrameError::MissingAction)),
        Some(Value::String(action)) if !action.is_empty() && action.len() <= MAX_TOKEN_LEN => {
            action
        }
        Some(_) => return Err(reject(request_id, FrameError::InvalidAction)),
    };
    Ok(ClientRequest {
        action,
        request_id,
        payload,
    })
}

/// Decodes an action's payload into its typed form, or says what is wrong
/// with it in a sentence a client developer can act on.
pub fn decode_payload<T: DeserializeOwned>(
    action: &str,
    payload: &Map<String, Value>,
) -> Result<T, ServerFrame> {
    T::deserialize(Value::Object(payload.clone())).map_err(|err| {
        // The decoder's sentence can quote the offending value whole.
        let reason = excerpt(&err.to_string(), MAX_ECHOED_CHARS * 2);
        ServerFrame::error(
            ErrorCode::BadRequest,
            format!("Invalid {action} payload: {reason}."),
        )
    })
}

/// How much of a client's own input a reply may quote back.
pub const MAX_ECHOED_CHARS: usize = 80;

/// `raw` cut to at most `max_chars` characters, with `…` where it was cut, so
/// a reply that quotes what the client sent never grows with the input.
pub fn excerpt(raw: &str, max_chars: usize) -> String {
    match raw.char_indices().nth(max_chars) {
        None => raw.to_owned(),
        Some((cut, _)) => format!("{}…", &raw[..cut]),
    }
}

/// A display name (a nickname, a group's name): trimmed, `min` to `max`
/// characters (not bytes), none of them a control character. On refusal, the
/// sentence to send back.
pub fn display_name(field: &str, raw: &str, min: usize, max: usize) -> Result<String, String> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars < min || chars > max || name.chars().any(char::is_control) {
        return Err(format!(
            "\"{field}\" must have {min} to {max} printable characters."
        ));
    }
    Ok(name.to_owned())
}

/// A frame sent to a client: a JSON object with `rocketStatus` and `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServerFrame(Map<String, Value>);

impl ServerFrame {
    /// A frame with the given status and human-readable message.
    pub fn new(status: impl Into<String>, message: impl Into<String>) -> Self {
        let mut map = Map::new();
        map.insert("message".into(), Value::String(message.into()));
        map.insert("rocketStatus".into(), Value::String(status.into()));
        ServerFrame(map)
    }

    /// An error frame.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code.as_str(), message)
    }

    /// Adds a data field. A value that cannot be serialised becomes `null`.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.0.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// Adds every field of what serializes as a JSON object (anything else
    /// adds nothing). `rocketStatus` and `message` keep their values.
    pub fn with_fields(mut self, fields: impl Serialize) -> Self {
        if let Ok(Value::Object(fields)) = serde_json::to_value(fields) {
            for (key, value) in fields {
                if key != "rocketStatus" && key != "message" {
                    self.0.insert(key, value);
                }
            }
        }
        self
    }

    /// Echoes the request's id, if it had one.
    pub fn with_request_id(mut self, request_id: Option<&str>) -> Self {
        if let Some(id) = request_id {
            self.0
                .insert("requestId".into(), Value::String(id.to_owned()));
        }
        self
    }

    /// The `rocketStatus` of this frame.
    pub fn status(&self) -> &str {
        self.0
            .get("rocketStatus")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// A field of this frame.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The frame as the JSON text sent over the socket.
    pub fn to_text(&self) -> String {
        // A map of JSON values always serialises.
        serde_json::to_string(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_bounded_whatever_the_input() {
        assert_eq!(excerpt("short", 80), "short");
        let long = "é".repeat(9_000);
        let cut = excerpt(&long, 80);
        assert_eq!(cut.chars().count(), 81, "80 characters and the ellipsis");
        assert!(cut.ends_with('…'));
    }
    use proptest::prelude::*;

    #[test]
    fn accepts_the_original_clients_register_frame() {
        let request = parse_client_frame(
            r#"{"action":"REGISTER","userRegData":{"email":"a@b.c","password":"x"}}"#,
        )
        .expect("valid frame");
        assert_eq!(request.action, "REGISTER");
        assert_eq!(request.request_id, None);
        assert!(request.payload.contains_key("userRegData"));
        assert!(!request.payload.contains_key("action"));
    }

    #[test]
    fn the_greeting_of_the_old_clients_is_not_json() {
        let err = parse_client_frame("Connection Established").expect_err("not JSON");
        assert_eq!(err.error, FrameError::NotJson);
        assert_eq!(err.to_frame().status(), "BAD_REQUEST");
    }

    #[test]
    fn a_rejection_echoes_the_request_id_when_it_can() {
        let err = parse_client_frame(r#"{"requestId":"r1","action":5}"#).expect_err("bad action");
        assert_eq!(err.error, FrameError::InvalidAction);
        assert_eq!(
            err.to_frame().get("requestId"),
            Some(&Value::String("r1".into()))
        );
    }

    #[test]
    fn each_malformed_envelope_has_its_own_reason() {
        let cases = [
            ("[1,2]", FrameError::NotObject),
            ("\"LOGIN\"", FrameError::NotObject),
            ("{}", FrameError::MissingAction),
            (r#"{"action":null}"#, FrameError::MissingAction),
            (r#"{"action":""}"#, FrameError::InvalidAction),
            (r#"{"action":["LOGIN"]}"#, FrameError::InvalidAction),
            (
                r#"{"action":"LOGIN","requestId":7}"#,
                FrameError::InvalidRequestId,
            ),
        ];
        for (text, expected) in cases {
            let err = parse_client_frame(text).expect_err(text);
            assert_eq!(err.error, expected, "{text}");
        }
    }

    #[test]
    fn decode_payload_names_the_missing_field() {
        #[derive(Deserialize, Debug)]
        struct Login {
            #[allow(dead_code)]
            email: String,
        }
        let err = decode_payload::<Login>("LOGIN", &Map::new()).expect_err("missing");
        assert_eq!(err.status(), "BAD_REQUEST");
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(message.contains("email"), "{message}");
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z]{0,10}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in ".{0,300}") {
            let _ = parse_client_frame(&text);
        }

        #[test]
        fn accepts_exactly_objects_with_a_string_action(value in arbitrary_json()) {
            let text = value.to_string();
            let result = parse_client_frame(&text);
            let action_ok = value.get("action").and_then(Value::as_str)
                .is_some_and(|a| !a.is_empty() && a.len() <= MAX_TOKEN_LEN);
            let id_ok = match value.get("requestId") {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.len() <= MAX_TOKEN_LEN,
                Some(_) => false,
            };
            prop_assert_eq!(result.is_ok(), value.is_object() && action_ok && id_ok);
        }

        #[test]
        fn the_payload_round_trips(
            action in "[A-Z_]{1,20}",
            id in proptest::option::of("[a-z0-9-]{1,36}"),
            fields in prop::collection::btree_map("[a-z]{1,8}", arbitrary_json(), 0..5),
        ) {
            let mut object: Map<String, Value> = fields.into_iter()
                .filter(|(k, _)| k != "action")
                .collect();
            let payload = object.clone();
            object.insert("action".into(), Value::String(action.clone()));
            if let Some(id) = &id {
                object.insert("requestId".into(), Value::String(id.clone()));
            }
            let parsed = parse_client_frame(&Value::Object(object).to_string()).expect("valid");
            prop_assert_eq!(parsed.action, action);
            prop_assert_eq!(parsed.request_id, id);
            prop_assert_eq!(parsed.payload, payload);
        }
    }
}
