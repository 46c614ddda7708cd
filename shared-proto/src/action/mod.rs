//! Each service's actions as one enum with typed payloads, parsed once where
//! the service takes the entry off its stream, so that a handler is an
//! exhaustive `match` and a payload's fields are checked by their types.
//!
//! The payload structs accept exactly what the clients send today (the field
//! names and nesting of `docs/protocol.md` and the seed protocol); a payload
//! that does not fit is refused with `BAD_REQUEST` and a sentence saying
//! why, as before.

pub mod auth;
pub mod chat;
pub mod ids;

pub use auth::AuthAction;
pub use chat::ChatAction;
pub use ids::{ConversationId, GroupId, MessageId, UserId};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::client::{ServerFrame, decode_payload};
use crate::status::ErrorCode;

/// Decodes the payload of `action` as `T`.
fn payload<T: DeserializeOwned>(
    action: &str,
    payload: &Map<String, Value>,
) -> Result<T, ServerFrame> {
    decode_payload(action, payload)
}

/// The refusal of an action the service does not handle.
fn unknown(service: &str, action: &str) -> ServerFrame {
    ServerFrame::error(
        ErrorCode::UnknownAction,
        format!(
            "{service} does not handle {:?}.",
            crate::client::excerpt(action, crate::client::MAX_ECHOED_CHARS)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{INTERNAL_ACTIONS, ROUTES, Service};

    /// One payload with every field any action needs, so that each action
    /// name parses.
    fn every_field() -> Map<String, Value> {
        let value = serde_json::json!({
            "userRegData": {"email": "a@example.com", "password": "p", "token": "t"},
            "userLoginData": {"email": "a@example.com", "password": "p", "token": "t"},
            "nickname": "ana", "email": "a@example.com", "profileUrl": "/imgs/default",
            "version": 1, "answerClient": false,
            "userId": "u", "groupId": "g", "conversationId": "c", "accept": true,
            "to": {"userId": "u"}, "text": "hi", "clientMsgId": "m-1", "seq": 1,
            "name": "G", "query": "g",
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    /// The service each action name is routed to, client or internal.
    fn routed_to(name: &str) -> Vec<Service> {
        ROUTES
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, r)| r.service)
            .chain(
                INTERNAL_ACTIONS
                    .iter()
                    .filter(|(n, _, _)| *n == name)
                    .map(|(_, s, _)| *s),
            )
            .collect()
    }

    #[test]
    fn each_auth_action_is_routed_to_auth_service_alone_and_parses_as_itself() {
        for name in AuthAction::NAMES {
            assert_eq!(routed_to(name), vec![Service::Auth], "{name}");
            let action = AuthAction::parse(name, &every_field()).expect("parses");
            assert_eq!(action.name(), *name);
        }
    }

    #[test]
    fn each_chat_action_is_routed_to_chat_service_alone_and_parses_as_itself() {
        for name in ChatAction::NAMES {
            assert_eq!(routed_to(name), vec![Service::Chat], "{name}");
            let action = ChatAction::parse(name, &every_field()).expect("parses");
            assert_eq!(action.name(), *name);
        }
    }

    #[test]
    fn every_routed_action_is_an_action_of_the_service_it_goes_to() {
        let names = ROUTES
            .iter()
            .map(|(n, r)| (*n, r.service))
            .chain(INTERNAL_ACTIONS.iter().map(|(n, s, _)| (*n, *s)));
        for (name, service) in names {
            let handles = match service {
                Service::Auth => AuthAction::NAMES,
                Service::Chat => ChatAction::NAMES,
            };
            assert!(
                handles.contains(&name),
                "{name} goes to {service:?}, which has no such action"
            );
        }
    }

    #[test]
    fn a_payload_that_does_not_fit_is_refused_with_a_sentence() {
        let frame = ChatAction::parse("MARK_READ", &Map::new()).expect_err("no fields");
        assert_eq!(frame.status(), "BAD_REQUEST");
        assert_eq!(
            frame.get("message"),
            Some(&Value::String(
                "Invalid MARK_READ payload: missing field `conversationId`.".into()
            ))
        );
        let frame = AuthAction::parse("DROP", &Map::new()).expect_err("unknown");
        assert_eq!(frame.status(), "UNKNOWN_ACTION");
    }
}
