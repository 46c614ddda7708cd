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
    /// that died. Most account actions are of the first kind (a late login
    /// opens a session nobody holds, a late code check spends a try); the
    /// exceptions are marked in [`ROUTES`] (`Route::done_when_late`).
    pub const fn shed_when_stale(self) -> bool {
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
    /// Handled even once its client was told `TIMEOUT`: every change (see
    /// [`ActionClass::shed_when_stale`]), and the account actions whose
    /// effect a person expects whether or not they saw the answer.
    pub done_when_late: bool,
}

const fn account() -> Route {
    Route {
        service: Service::Auth,
        requires_login: false,
        class: ActionClass::Account,
        done_when_late: false,
    }
}

/// An account action that is done even when late: a registration (the
/// account and its code mail; the person waits for the mail) and a logout
/// (a session someone asked to end must end).
const fn account_done_when_late() -> Route {
    Route {
        done_when_late: true,
        ..account()
    }
}

const fn chat(class: ActionClass) -> Route {
    Route {
        service: Service::Chat,
        requires_login: true,
        class,
        done_when_late: !class.shed_when_stale(),
    }
}

/// Every action a client may send, and where it goes: each action goes to
/// the service that owns what it changes (docs/architecture.md).
pub const ROUTES: &[(&str, Route)] = &[
    ("REGISTER", account_done_when_late()),
    ("CONFIRMATION", account()),
    ("RESEND_CONFIRMATION", account()),
    ("LOGIN", account()),
    ("FASTLOGIN", account()),
    ("LOGOUT", account_done_when_late()),
    // The profile is part of the account. auth-service changes it, then
    // hands the action to chat-service, which updates the copy it searches
    // and answers (see `PROFILE_CHANGED`).
    (
        "UPDATE_PROFILE",
        Route {
            service: Service::Auth,
            requires_login: true,
            class: ActionClass::Send,
            done_when_late: true,
        },
    ),
    ("SEARCH_USERS", chat(ActionClass::Search)),
    ("FRIEND_REQUEST", chat(ActionClass::Send)),
    ("FRIEND_RESPOND", chat(ActionClass::Send)),
    ("FRIEND_REMOVE", chat(ActionClass::Send)),
    ("LIST_FRIENDS", chat(ActionClass::Read)),
    ("SEND_MESSAGE", chat(ActionClass::Send)),
    ("HISTORY", chat(ActionClass::Read)),
    ("LIST_CONVERSATIONS", chat(ActionClass::Read)),
    ("MARK_READ", chat(ActionClass::Send)),
    // Worth nothing late; at most one in 3 s per conversation is forwarded.
    ("TYPING", chat(ActionClass::Read)),
    ("CREATE_GROUP", chat(ActionClass::Send)),
    ("SEARCH_GROUPS", chat(ActionClass::Search)),
    ("GROUP_INFO", chat(ActionClass::Read)),
    ("LIST_GROUPS", chat(ActionClass::Read)),
    ("JOIN_GROUP", chat(ActionClass::Send)),
    ("RESPOND_JOIN", chat(ActionClass::Send)),
    ("ADD_MEMBER", chat(ActionClass::Send)),
    ("REMOVE_MEMBER", chat(ActionClass::Send)),
    ("BAN_MEMBER", chat(ActionClass::Send)),
    ("UNBAN_MEMBER", chat(ActionClass::Send)),
    ("PROMOTE_ADMIN", chat(ActionClass::Send)),
    ("DEMOTE_ADMIN", chat(ActionClass::Send)),
    ("LEAVE_GROUP", chat(ActionClass::Send)),
];

/// Sent by a gateway itself (never accepted from a client) when a connection
/// logs in, so chat-service can tell that gateway the user's groups. A read:
/// its answer only matters to a connection still waiting for it.
pub const SESSION_STARTED: &str = "SESSION_STARTED";

/// chat-service's answer to `SESSION_STARTED`, to the gateway only: the
/// user's group ids.
pub const SESSION_READY: &str = "SESSION_READY";

/// Sent by auth-service itself (never accepted from a client) to
/// chat-service when a user's public profile changes: at confirmation and on
/// `UPDATE_PROFILE`. A change: never shed, whether or not a client waits.
pub const PROFILE_CHANGED: &str = "PROFILE_CHANGED";

/// Sent by a gateway itself (never accepted from a client) to chat-service
/// when a user's first connection anywhere opens or their last one closes
/// or lapses, so the user's friends hear of it. Never shed: a late one still
/// tells friends the truth, which the handler reads anew.
pub const PRESENCE_CHANGED: &str = "PRESENCE_CHANGED";

/// Answered by the gateway itself from the event histories (see
/// `bus::history`): the events a client missed since a position.
pub const SYNC: &str = "SYNC";

/// Client actions a gateway answers itself, with the class of the user's
/// budget they are charged to. They need a logged-in connection.
pub const GATEWAY_ACTIONS: &[(&str, ActionClass)] = &[(SYNC, ActionClass::Read)];

/// Actions services send each other, with the service that takes them.
pub const INTERNAL_ACTIONS: &[(&str, Service, ActionClass)] = &[
    (SESSION_STARTED, Service::Chat, ActionClass::Read),
    (PROFILE_CHANGED, Service::Chat, ActionClass::Send),
    (PRESENCE_CHANGED, Service::Chat, ActionClass::Send),
];

/// The route of a client action, or `None` for an action nobody handles.
pub fn route(action: &str) -> Option<Route> {
    ROUTES
        .iter()
        .find(|(name, _)| *name == action)
        .map(|(_, route)| *route)
}

/// The client actions a service handles.
pub fn actions_of(service: Service) -> impl Iterator<Item = &'static str> {
    ROUTES
        .iter()
        .filter(move |(_, route)| route.service == service)
        .map(|(name, _)| *name)
}

/// The class of any action a service may find on its stream.
pub fn class_of(action: &str) -> ActionClass {
    route(action).map(|r| r.class).unwrap_or_else(|| {
        INTERNAL_ACTIONS
            .iter()
            .find(|(name, _, _)| *name == action)
            .map_or(ActionClass::Read, |(_, _, class)| *class)
    })
}

/// True when a service handles `action` even after its client was told
/// `TIMEOUT`; false when it drops it unhandled then.
pub fn done_when_late(action: &str) -> bool {
    route(action).map_or_else(
        || !class_of(action).shed_when_stale(),
        |route| route.done_when_late,
    )
}

/// An action name known to the system, as a `'static` string (for metric
/// labels: a client cannot grow the number of series).
pub fn known_action(action: &str) -> Option<&'static str> {
    ROUTES
        .iter()
        .map(|(name, _)| *name)
        .chain(GATEWAY_ACTIONS.iter().map(|(name, _)| *name))
        .chain(INTERNAL_ACTIONS.iter().map(|(name, _, _)| *name))
        .find(|known| *known == action)
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

    #[test]
    fn the_profile_is_changed_by_its_owner_and_only_by_a_logged_in_user() {
        let update = route("UPDATE_PROFILE").expect("known");
        assert_eq!(update.service, Service::Auth);
        assert!(update.requires_login);
        assert_eq!(update.class, ActionClass::Send);
    }

    #[test]
    fn each_action_has_one_route_and_no_internal_action_is_a_client_action() {
        for (i, (name, _)) in ROUTES.iter().enumerate() {
            assert!(
                ROUTES[i + 1..].iter().all(|(other, _)| other != name),
                "{name} routed twice"
            );
        }
        for (name, _, _) in INTERNAL_ACTIONS {
            assert_eq!(
                route(name),
                None,
                "{name} must not be accepted from a client"
            );
        }
        assert_eq!(class_of(PROFILE_CHANGED), ActionClass::Send);
        assert!(!class_of(PROFILE_CHANGED).shed_when_stale());
        assert_eq!(class_of(SESSION_STARTED), ActionClass::Read);
    }

    #[test]
    fn changes_registrations_and_logouts_are_done_when_late_and_the_rest_is_not() {
        for action in [
            "SEND_MESSAGE",
            "MARK_READ",
            "UPDATE_PROFILE",
            "REGISTER",
            "LOGOUT",
        ] {
            assert!(done_when_late(action), "{action}");
        }
        for action in [
            "HISTORY",
            "SEARCH_USERS",
            "LOGIN",
            "FASTLOGIN",
            "CONFIRMATION",
        ] {
            assert!(!done_when_late(action), "{action}");
        }
        assert!(done_when_late(PROFILE_CHANGED));
        assert!(!done_when_late(SESSION_STARTED));
    }
}
