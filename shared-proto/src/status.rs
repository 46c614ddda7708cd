//! What clients find in `rocketStatus`: the error codes, the statuses of
//! other replies and events, and the close codes of the contract.
//!
//! The mapping from anything that went wrong to a code and a sentence for a
//! person happens through [`ErrorCode`], so every service answers alike.

use serde::{Deserialize, Serialize};

/// A machine-readable error code. Serialised in SCREAMING_SNAKE_CASE, which is
/// what clients compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame or its payload is malformed; the message says which field.
    BadRequest,
    /// The `action` names nothing this server knows.
    UnknownAction,
    /// The action needs a logged-in connection.
    Unauthorized,
    /// Logged in, but not allowed to do this.
    Forbidden,
    /// The thing asked for does not exist (or is not visible to the caller).
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// The connection sends faster than its rate limit allows.
    RateLimited,
    /// The account already has as many connections open as it may.
    TooManyConnections,
    /// The service that owns the action has more work waiting than it can
    /// finish in time; nothing was done. Retry after `retryAfterMs`.
    Busy,
    /// A backing system (bus, database) is unreachable; try again later.
    ServiceUnavailable,
    /// No service answered in time; the action may or may not have happened.
    Timeout,
    /// A bug on our side; the details are in the server log, not here.
    Internal,
    /// An uploaded file is larger than its kind may be (HTTP `413`).
    TooLarge,
    /// An uploaded file's bytes are not what it claims to be, or a picture
    /// that would decode into too many pixels (HTTP `415`).
    UnsupportedMediaType,
}

impl ErrorCode {
    /// The wire spelling, e.g. `"BAD_REQUEST"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::UnknownAction => "UNKNOWN_ACTION",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Busy => "BUSY",
            ErrorCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
        }
    }
}

impl ErrorCode {
    /// Every code, for tables and checks.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownAction,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::Busy,
        ErrorCode::TooManyConnections,
        ErrorCode::ServiceUnavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedMediaType,
    ];

    /// The code a `rocketStatus` names, if it names one.
    pub fn parse(status: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|code| code.as_str() == status)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the gateway uses, part of the client contract
/// The `rocketStatus` of every reply and pushed event that is not an error
/// (errors are [`ErrorCode`]s), as `docs/protocol.md` lists them.
macro_rules! reply_statuses {
    ($($name:ident = $text:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ReplyStatus {
            $($name,)*
        }

        impl ReplyStatus {
            pub const ALL: &[ReplyStatus] = &[$(ReplyStatus::$name,)*];

            /// The status as clients compare it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ReplyStatus::$name => $text,)*
                }
            }
        }
    };
}

reply_statuses! {
    AdminDemoted = "ADMIN_DEMOTED",
    AdminPromoted = "ADMIN_PROMOTED",
    ConfirmationFailed = "CONFIRMATION_FAILED",
    ConfirmationSent = "CONFIRMATION_SENT",
    Conversations = "CONVERSATIONS",
    Friends = "FRIENDS",
    FriendAdded = "FRIEND_ADDED",
    FriendRemoved = "FRIEND_REMOVED",
    FriendRequestDeclined = "FRIEND_REQUEST_DECLINED",
    FriendRequestReceived = "FRIEND_REQUEST_RECEIVED",
    FriendRequestSent = "FRIEND_REQUEST_SENT",
    FriendResponded = "FRIEND_RESPONDED",
    Groups = "GROUPS",
    GroupsFound = "GROUPS_FOUND",
    GroupCreated = "GROUP_CREATED",
    GroupInfo = "GROUP_INFO",
    GroupJoined = "GROUP_JOINED",
    GroupLeft = "GROUP_LEFT",
    History = "HISTORY",
    JoinRejected = "JOIN_REJECTED",
    JoinRequested = "JOIN_REQUESTED",
    JoinRequestReceived = "JOIN_REQUEST_RECEIVED",
    JoinResponded = "JOIN_RESPONDED",
    MemberAdded = "MEMBER_ADDED",
    MemberBanned = "MEMBER_BANNED",
    MemberRemoved = "MEMBER_REMOVED",
    MemberUnbanned = "MEMBER_UNBANNED",
    MessageSent = "MESSAGE_SENT",
    NewMessage = "NEW_MESSAGE",
    NotLogged = "NOT_LOGGED",
    Presence = "PRESENCE",
    ProfileUpdated = "PROFILE_UPDATED",
    ReadMarked = "READ_MARKED",
    ReadReceipt = "READ_RECEIPT",
    Typing = "TYPING",
    TypingSent = "TYPING_SENT",
    SessionClosed = "SESSION_CLOSED",
    Synced = "SYNCED",
    SyncGap = "SYNC_GAP",
    UsersFound = "USERS_FOUND",
    UserAlreadyConfirmed = "USER_ALREADY_CONFIRMED",
    UserAlreadyRegistered = "USER_ALREADY_REGISTERED",
    UserConfirmed = "USER_CONFIRMED",
    UserLogged = "USER_LOGGED",
    UserLogout = "USER_LOGOUT",
    UserLogoutError = "USER_LOGOUT_ERROR",
    UserNotConfirmed = "USER_NOT_CONFIRMED",
    UserRegistered = "USER_REGISTERED",
}

impl From<ReplyStatus> for String {
    fn from(status: ReplyStatus) -> String {
        status.as_str().to_owned()
    }
}

/// (docs/protocol.md, "Close codes"): which mean "reconnect" and which "stop".
pub mod close_code {
    /// A frame was larger than the frame limit: do not resend it.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The client kept sending past its limits: stop, do not reconnect
    /// automatically.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// This gateway is going away: reconnect, to any gateway.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Events for the client were dropped: it read too slowly (the frames
    /// waiting for it reached the limit), or the gateway missed some and
    /// cannot replay them. Reconnect, then `SYNC` what was missed. The first of the
    /// private range 4000–4499, which means "reconnect"; 4500–4999 is kept
    /// for "do not reconnect".
    pub const RECONNECT_AND_SYNC: u16 = 4000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_spelling_matches_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).expect("serialise");
            assert_eq!(json, serde_json::Value::String(code.as_str().into()));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("USER_LOGGED"), None);
    }

    /// The contract names every status a client can receive.
    #[test]
    fn every_status_is_documented_in_the_protocol() {
        let protocol = include_str!("../../docs/protocol.md");
        let documented = |status: &str| {
            protocol.contains(&format!("`{status}`"))
                || protocol.contains(&format!("\"rocketStatus\": \"{status}\""))
        };
        for status in ReplyStatus::ALL {
            assert!(
                documented(status.as_str()),
                "{} is not in docs/protocol.md",
                status.as_str()
            );
        }
        for code in ErrorCode::ALL {
            assert!(
                documented(code.as_str()),
                "{} is not in docs/protocol.md",
                code.as_str()
            );
        }
        for code in [
            close_code::MESSAGE_TOO_BIG,
            close_code::POLICY_VIOLATION,
            close_code::SERVICE_RESTART,
            close_code::RECONNECT_AND_SYNC,
        ] {
            assert!(
                documented(&code.to_string()),
                "close code {code} is not in docs/protocol.md"
            );
        }
    }

    #[test]
    fn no_reply_status_is_also_an_error_code() {
        for status in ReplyStatus::ALL {
            assert_eq!(ErrorCode::parse(status.as_str()), None, "{status:?}");
        }
    }
}
