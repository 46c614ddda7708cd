//! Which service owns which client action, and whether it needs a login.
//!
//! The gateway consults this table to pick a stream; it knows nothing else
//! about the actions.

/// A service that takes actions from its own stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Auth,
    Chat,
}

impl Service {
    /// The short name used in stream and consumer-group names.
    pub fn name(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Chat => "chat",
        }
    }
}

/// Where an action goes and what it requires of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub service: Service,
    /// Only a logged-in connection may send it; otherwise `UNAUTHORIZED`.
    pub requires_login: bool,
}

/// Account actions, as the existing clients send them.
pub const AUTH_ACTIONS: &[&str] = &[
    "REGISTER",
    "CONFIRMATION",
    "RESEND_CONFIRMATION",
    "LOGIN",
    "FASTLOGIN",
    "LOGOUT",
];

/// Chat actions. All of them need a logged-in connection.
pub const CHAT_ACTIONS: &[&str] = &[
    "UPDATE_PROFILE",
    "SEARCH_USERS",
    "FRIEND_REQUEST",
    "FRIEND_RESPOND",
    "FRIEND_REMOVE",
    "LIST_FRIENDS",
    "SEND_MESSAGE",
    "HISTORY",
    "LIST_CONVERSATIONS",
    "MARK_READ",
    "CREATE_GROUP",
    "SEARCH_GROUPS",
    "GROUP_INFO",
    "LIST_GROUPS",
    "JOIN_GROUP",
    "RESPOND_JOIN",
    "ADD_MEMBER",
    "REMOVE_MEMBER",
    "BAN_MEMBER",
    "UNBAN_MEMBER",
    "PROMOTE_ADMIN",
    "DEMOTE_ADMIN",
    "LEAVE_GROUP",
];

/// Sent by a gateway itself (never accepted from a client) when a connection
/// logs in, so chat-service can tell that gateway the user's groups.
pub const SESSION_STARTED: &str = "SESSION_STARTED";

/// The route of a client action, or `None` for an action nobody handles.
pub fn route(action: &str) -> Option<Route> {
    if AUTH_ACTIONS.contains(&action) {
        Some(Route {
            service: Service::Auth,
            requires_login: false,
        })
    } else if CHAT_ACTIONS.contains(&action) {
        Some(Route {
            service: Service::Chat,
            requires_login: true,
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_actions_need_no_login_and_chat_actions_do() {
        let login = route("LOGIN").expect("known");
        assert_eq!(login.service, Service::Auth);
        assert!(!login.requires_login);
        let send = route("SEND_MESSAGE").expect("known");
        assert_eq!(send.service, Service::Chat);
        assert!(send.requires_login);
        assert_eq!(route("login"), None, "names are case-sensitive");
        assert_eq!(route("DROP_DATABASE"), None);
    }
}
