//! How a conversation is named: one id per pair of users, one per group,
//! and the document a group's conversation starts as.

use shared_proto::action::{ConversationId, GroupId, UserId};
use shared_proto::now_ms;

use crate::store::Conversation;

/// The conversation of two users, the same whichever of them asks.
/// (Named in `shared-proto`, where the gateway finds a message's partition.)
pub fn direct_conversation_id(a: &UserId, b: &UserId) -> ConversationId {
    ConversationId::direct(a, b)
}

pub fn group_conversation_id(group_id: &GroupId) -> ConversationId {
    ConversationId::of_group(group_id)
}

/// A new group's conversation document.
pub fn group_conversation(group_id: &GroupId) -> Conversation {
    Conversation {
        id: group_conversation_id(group_id),
        kind: "group".into(),
        participants: Vec::new(),
        group_id: Some(group_id.clone()),
        temporary: false,
        last_seq: 0,
        last_message: None,
        updated_at_ms: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_conversation_id_does_not_depend_on_who_asks() {
        let (a, b) = (UserId::new("a"), UserId::new("b"));
        assert_eq!(
            direct_conversation_id(&a, &b),
            direct_conversation_id(&b, &a)
        );
    }
}
