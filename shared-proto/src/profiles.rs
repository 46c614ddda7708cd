//! A user's public profile as its owner, auth-service, tells chat-service
//! about it (the `PROFILE_CHANGED` action). chat-service keeps a copy of
//! these fields to show user cards and to search, so it never reads
//! auth-service's `users` collection.

use serde::{Deserialize, Serialize};

use crate::action::UserId;
use crate::envelope::{ActionRequest, Identity};
use crate::routing::PROFILE_CHANGED;

/// The payload of `PROFILE_CHANGED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileChanged {
    pub user_id: UserId,
    /// Lower-case. chat-service finds a user by exact address and never
    /// shows it to anyone.
    pub email: String,
    pub nickname: String,
    pub profile_url: String,
    /// Grows with every change of the profile: a change that arrives after
    /// a later one is ignored.
    pub version: i64,
    /// True when the client that made the change waits for chat-service's
    /// answer (`UPDATE_PROFILE`); false when nobody does (a confirmation).
    pub answer_client: bool,
}

impl ProfileChanged {
    /// The action that carries this change to chat-service, in place of
    /// `cause`: it keeps the cause's id, so it is applied once however often
    /// either is delivered, and its origin, so chat-service can answer the
    /// client that made the change.
    pub fn into_request(self, cause: &ActionRequest) -> ActionRequest {
        let identity = Identity {
            user_id: self.user_id.clone(),
            session_id: cause
                .identity
                .as_ref()
                .map(|i| i.session_id.clone())
                .unwrap_or_default(),
            email: self.email.clone(),
        };
        let payload = match serde_json::to_value(&self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => unreachable!("a struct serializes to a JSON object"),
        };
        ActionRequest {
            action_id: cause.action_id.clone(),
            action: PROFILE_CHANGED.to_owned(),
            request_id: cause.request_id.clone(),
            payload,
            origin: cause.origin.clone(),
            identity: Some(identity),
            received_at_ms: cause.received_at_ms,
            deadline_ms: cause.deadline_ms,
            client_addr: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Origin;

    #[test]
    fn the_change_replaces_its_cause_on_the_way_to_chat_service() {
        let cause = ActionRequest {
            action_id: "a-1".into(),
            action: "UPDATE_PROFILE".into(),
            request_id: Some("r-1".into()),
            payload: serde_json::Map::new(),
            origin: Origin {
                gateway_id: "gw".into(),
                connection_id: 3,
            },
            identity: Some(Identity {
                user_id: UserId::new("u"),
                session_id: "s".into(),
                email: "ana@example.com".into(),
            }),
            received_at_ms: 10,
            deadline_ms: Some(20),
            client_addr: Some("127.0.0.1".into()),
        };
        let change = ProfileChanged {
            user_id: UserId::new("u"),
            email: "ana@example.com".into(),
            nickname: "Ana".into(),
            profile_url: "/imgs/default".into(),
            version: 7,
            answer_client: true,
        };
        let request = change.clone().into_request(&cause);
        assert_eq!(request.action, PROFILE_CHANGED);
        assert_eq!(request.action_id, cause.action_id);
        assert_eq!(request.origin, cause.origin);
        assert_eq!(request.request_id, cause.request_id);
        assert_eq!(request.identity, cause.identity);
        assert_eq!(
            serde_json::from_value::<ProfileChanged>(request.payload.into()).expect("payload"),
            change
        );
    }
}
