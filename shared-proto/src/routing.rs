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

/// The kind of work an action is, which decides the per-user budget it is
/// charged to (docs/protocol.md, "Limits") and whether a service still does
/// it once nobody waits for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionClass {
    /// Changes state: messages, friends, groups, profile, read marks.
    Send,
    /// Reads state: history, lists, group info.
    Read,
    /// Searches users or groups (the most expensive reads).
    Search,
    /// Registration, confirmation and sessions.
    Account,
}

impl ActionClass {
    pub const ALL: [ActionClass; 4] = [
        ActionClass::Send,
        ActionClass::Read,
        ActionClass::Search,
        ActionClass::Account,
    ];

    /// The name used in settings, metrics and Redis keys.
    pub fn name(self) -> &'static str {
        match self {
            ActionClass::Send => "send",
            ActionClass::Read => "read",
            ActionClass::Search => "search",
            ActionClass::Account => "account",
        }
    }

    /// True when an action of this class may be dropped unhandled once its
    /// client has been told `TIMEOUT`. A read nobody waits for is wasted
    /// work. A change is finished: its client was told the outcome is
    /// unknown and may look for its effect (a resent message is recognised by
    /// its `clientMsgId`), and a change may already be half done by a replica
    /// that died. Account actions are all of the first kind: a late login
    /// opens a session nobody holds, a late code check spends a try.
    pub fn shed_when_stale(self) -> bool {
        !matches!(self, ActionClass::Send)
    }
}

/// Where an action goes and what it requires of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub service: Service,
    /// Only a logged-in connection may send it; otherwise `UNAUTHORIZED`.
    pub requires_login: bool,
    pub class: ActionClass,
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
            class: ActionClass::Account,
        })
    } else if CHAT_ACTIONS.contains(&action) {
        Some(Route {
            service: Service::Chat,
            requires_login: true,
            class: chat_class(action),
        })
    } else {
        None
    }
}

/// The class of any action a service may find on its stream, including the
/// gateway's own `SESSION_STARTED` (a read: its answer only matters to a
/// connection still waiting for it).
pub fn class_of(action: &str) -> ActionClass {
    route(action).map_or(ActionClass::Read, |r| r.class)
}

fn chat_class(action: &str) -> ActionClass {
    match action {
        "SEARCH_USERS" | "SEARCH_GROUPS" => ActionClass::Search,
        "LIST_FRIENDS" | "HISTORY" | "LIST_CONVERSATIONS" | "GROUP_INFO" | "LIST_GROUPS" => {
            ActionClass::Read
        }
        _ => ActionClass::Send,
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
        assert_eq!(send.class, ActionClass::Send);
        assert_eq!(route("HISTORY").map(|r| r.class), Some(ActionClass::Read));
        assert_eq!(
            route("SEARCH_GROUPS").map(|r| r.class),
            Some(ActionClass::Search)
        );
        assert_eq!(login.class, ActionClass::Account);
        assert_eq!(route("login"), None, "names are case-sensitive");
        assert_eq!(route("DROP_DATABASE"), None);
    }
}
