//! What travels on the bus between gateways and services.
//!
//! A gateway turns each accepted client frame into an [`ActionRequest`] on the
//! owning service's stream. Services answer with [`ToGateway`] messages
//! published on a gateway's channel (replies), a user's channel or a group's
//! channel (pushed events).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::action::{GroupId, UserId};
use crate::client::ServerFrame;

/// Who is behind a logged-in connection, as established by auth-service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user_id: UserId,
    /// Identifies the session without revealing its token.
    pub session_id: String,
    pub email: String,
}

/// The connection a request came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    pub gateway_id: String,
    pub connection_id: u64,
}

/// A client action on its way to a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// Unique per accepted frame; a redelivered entry carries the same id, so
    /// services use it to make their effects idempotent.
    pub action_id: String,
    pub action: String,
    pub request_id: Option<String>,
    pub payload: Map<String, Value>,
    pub origin: Origin,
    /// `None` on a connection that has not logged in.
    pub identity: Option<Identity>,
    pub received_at_ms: i64,
    /// When the gateway tells the client `TIMEOUT` (ms since the epoch): a
    /// read not started by then is not done (see `ActionClass`). Absent on
    /// actions a gateway sends itself and from older gateways; services then
    /// use their own `stale_after_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// The client's network address as the gateway saw it (behind a trusted
    /// front door, the address the front door reports). Used to bound
    /// guessing per source; absent on actions a gateway sends itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
}

impl ActionRequest {
    /// An action a process sends of its own accord, with no client frame
    /// behind it: no request id, no deadline, no client address.
    pub fn internal(
        action_id: String,
        action: &str,
        origin: Origin,
        identity: Option<Identity>,
        payload: Map<String, Value>,
    ) -> Self {
        ActionRequest {
            action_id,
            action: action.to_owned(),
            request_id: None,
            payload,
            origin,
            identity,
            received_at_ms: crate::now_ms(),
            deadline_ms: None,
            client_addr: None,
        }
    }
}

/// A change to what a connection is logged in as, carried by a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum SessionChange {
    /// From now on the connection acts as this identity, until the expiry.
    Open {
        identity: Identity,
        expires_at_ms: i64,
    },
    /// The connection is anonymous again.
    Close,
}

/// A message from a service to gateways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToGateway {
    /// The answer to one request, for one connection of the receiving gateway.
    Reply {
        connection_id: u64,
        action_id: String,
        frame: ServerFrame,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<SessionChange>,
    },
    /// An event for every connection subscribed to the channel it arrives on,
    /// except the one that caused it (which got a reply instead).
    Event {
        frame: ServerFrame,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<Origin>,
        /// A user none of whose connections get it (told some other way).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skip_user: Option<UserId>,
    },
    /// A session ended (logout, expiry): every connection using it becomes
    /// anonymous at once, on every gateway. Sent on the user's channel.
    SessionRevoked { session_id: String },
    /// The user joined or left a group: gateways holding the user's
    /// connections start or stop delivering that group's events to them.
    /// Sent on the user's channel, before any event that depends on it.
    Membership {
        user_id: UserId,
        group_id: GroupId,
        member: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_round_trips_through_json() {
        let reply = ToGateway::Reply {
            connection_id: 7,
            action_id: "a1".into(),
            frame: ServerFrame::new("USER_LOGGED", "You logged."),
            session: Some(SessionChange::Open {
                identity: Identity {
                    user_id: UserId::new("u"),
                    session_id: "s".into(),
                    email: "e@x.io".into(),
                },
                expires_at_ms: 5,
            }),
        };
        let text = serde_json::to_string(&reply).expect("serialise");
        let back: ToGateway = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, reply);
    }
}
