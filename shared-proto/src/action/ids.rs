//! Ids as distinct types, so that a group id cannot be passed where a user id
//! is meant. On the wire each is a plain JSON string.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Comparing with text is for checks and tests; only the same type
        // of id can be passed where one is expected.
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// A user: the account's id, given by auth-service at registration.
    UserId
);
id_type!(
    /// A group, given by chat-service when it is created.
    GroupId
);
id_type!(
    /// A conversation: a pair of users or a group (see chat-service's
    /// `conversations` module for how it is formed).
    ConversationId
);
id_type!(
    /// A stored message.
    MessageId
);

impl ConversationId {
    /// The conversation of two users, the same whichever of them asks.
    pub fn direct(a: &UserId, b: &UserId) -> ConversationId {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        ConversationId::new(format!("d:{first}|{second}"))
    }

    /// A group's conversation.
    pub fn of_group(group_id: &GroupId) -> ConversationId {
        ConversationId::new(format!("g:{group_id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_a_plain_string_on_the_wire() {
        let id: UserId = serde_json::from_str("\"u-1\"").expect("a string");
        assert_eq!(id.as_str(), "u-1");
        assert_eq!(
            serde_json::to_string(&GroupId::new("g-1")).expect("json"),
            "\"g-1\""
        );
    }
}
