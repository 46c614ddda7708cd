//! chat-service's messages are split by conversation into a fixed number of
//! partitions, each a stream of its own read by one replica at a time (see
//! chat-service's `partitions` module), so that replicas never race on one
//! conversation and adding replicas adds capacity. The gateway puts each
//! `SEND_MESSAGE` on its conversation's partition; every other action, and a
//! `SEND_MESSAGE` whose recipient cannot be read, goes on the service's
//! stream as before (the handler answers it the same from either).
//!
//! Every process must split the same way: the number of partitions is
//! agreed through Redis by the first process to start (see
//! [`crate::bus::Bus::shared_value`]), whatever the others are configured
//! with.

use serde_json::{Map, Value};

use crate::action::{ConversationId, GroupId, UserId};

/// The action whose work is partitioned.
pub const PARTITIONED_ACTION: &str = "SEND_MESSAGE";

/// The conversation an action from `sender` goes to, if it is partitioned
/// and names its recipient plainly.
pub fn conversation_of(
    action: &str,
    payload: &Map<String, Value>,
    sender: &UserId,
) -> Option<ConversationId> {
    if action != PARTITIONED_ACTION {
        return None;
    }
    let to = payload.get("to")?.as_object()?;
    match (to.get("userId"), to.get("groupId")) {
        (Some(Value::String(user)), None) => {
            Some(ConversationId::direct(sender, &UserId::new(user.as_str())))
        }
        (None, Some(Value::String(group))) => {
            Some(ConversationId::of_group(&GroupId::new(group.as_str())))
        }
        _ => None,
    }
}

/// The partition of a conversation, among `count`: FNV-1a, which every
/// process, of any version, computes alike.
pub fn partition_of(conversation: &ConversationId, count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in conversation.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    u32::try_from(hash % u64::from(count.max(1))).unwrap_or(0)
}

/// The number of partitions every process uses: `configured`, unless
/// another process fixed one first.
#[cfg(feature = "runtime")]
pub async fn agree_on_count(
    bus: &crate::bus::Bus,
    service: crate::routing::Service,
    configured: u32,
) -> Result<u32, crate::bus::BusError> {
    let key = bus.names().partition_count(service);
    let agreed = bus
        .shared_value(&key, &configured.max(1).to_string())
        .await?;
    let count = agreed.parse::<u32>().unwrap_or(configured).max(1);
    if count != configured {
        tracing::warn!(
            configured,
            agreed = count,
            key,
            "using the number of partitions the first process fixed; delete the key to change it"
        );
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn both_users_of_a_conversation_write_to_the_same_partition() {
        let (ana, ben) = (UserId::new("ana"), UserId::new("ben"));
        let from_ana = conversation_of(
            "SEND_MESSAGE",
            &payload(json!({"to": {"userId": "ben"}})),
            &ana,
        );
        let from_ben = conversation_of(
            "SEND_MESSAGE",
            &payload(json!({"to": {"userId": "ana"}})),
            &ben,
        );
        assert_eq!(from_ana, Some(ConversationId::new("d:ana|ben")));
        assert_eq!(from_ana, from_ben);
    }

    #[test]
    fn every_member_writes_to_the_groups_partition() {
        let to_group = payload(json!({"to": {"groupId": "g1"}}));
        assert_eq!(
            conversation_of("SEND_MESSAGE", &to_group, &UserId::new("ana")),
            conversation_of("SEND_MESSAGE", &to_group, &UserId::new("ben")),
        );
    }

    #[test]
    fn what_names_no_single_recipient_is_not_partitioned() {
        let ana = UserId::new("ana");
        for bad in [
            json!({}),
            json!({"to": "ben"}),
            json!({"to": {}}),
            json!({"to": {"userId": "ben", "groupId": "g1"}}),
            json!({"to": {"userId": 7}}),
        ] {
            assert_eq!(conversation_of("SEND_MESSAGE", &payload(bad), &ana), None);
        }
        let to_ben = payload(json!({"to": {"userId": "ben"}}));
        assert_eq!(conversation_of("MARK_READ", &to_ben, &ana), None);
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: a gateway and a service of different versions must
        // agree on them.
        assert_eq!(partition_of(&ConversationId::new("g:x"), 16), 4);
        assert_eq!(partition_of(&ConversationId::new("d:a|b"), 16), 12);
        let mut used = std::collections::HashSet::new();
        for n in 0..200 {
            let partition = partition_of(&ConversationId::new(format!("g:{n}")), 16);
            assert!(partition < 16);
            used.insert(partition);
        }
        assert_eq!(used.len(), 16, "200 conversations reach every partition");
    }
}
