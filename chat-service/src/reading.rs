//! HISTORY, LIST_CONVERSATIONS and MARK_READ: what was said in a
//! conversation and how far each user has read it.

use std::collections::HashMap;

use shared_proto::action::chat::{History, MarkRead};
use shared_proto::action::{ConversationId, GroupId, UserId};
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::status::ErrorCode;
use shared_proto::status::ReplyStatus;

use crate::attachments::Reader;
use crate::conversations::group_conversation_id;
use crate::input::id;
use crate::replies;
use crate::service::{Call, ChatService, unavailable};
use crate::store::Conversation;
use crate::views::{ConversationView, MessageView, UserView};

const DEFAULT_PAGE: i64 = 50;

/// Who may read a conversation: its two users, or the group's current members.
pub(crate) async fn authorize_read(
    service: &ChatService,
    me: &UserId,
    conversation_id: &ConversationId,
) -> Result<Conversation, ActionError> {
    let conversation_id = id("conversationId", conversation_id)?;
    let conversation = service
        .store
        .conversation(conversation_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            ActionError::refused(ErrorCode::NotFound, "No conversation with this id.")
        })?;
    let allowed = match &conversation.group_id {
        Some(group_id) => service
            .store
            .group(group_id)
            .await
            .map_err(unavailable)?
            .is_some_and(|g| g.members.contains(me)),
        None => conversation.participants.contains(me),
    };
    if !allowed {
        // Same answer as a missing one: the id reveals nothing to outsiders.
        return Err(ActionError::refused(
            ErrorCode::NotFound,
            "No conversation with this id.",
        ));
    }
    Ok(conversation)
}

pub async fn history(
    service: &ChatService,
    call: &Call<'_>,
    input: History,
) -> Result<Outcome, ActionError> {
    let conversation = authorize_read(service, &call.me.user_id, &input.conversation_id).await?;
    let limit = page_limit(input.limit, service.settings.max_page);
    let before = input.before_seq.unwrap_or(i64::MAX);
    let mut page = service
        .store
        .history(&conversation.id, before, limit)
        .await
        .map_err(unavailable)?;
    page.reverse();
    let has_more = page.first().is_some_and(|m| m.seq > 1);
    let reader = Reader::User(&call.me.user_id);
    let messages: Vec<MessageView> = page
        .iter()
        .map(|m| MessageView::of(m, &service.signer, reader))
        .collect();
    Ok(Outcome::reply(
        ServerFrame::new(
            ReplyStatus::History,
            format!("{} messages.", messages.len()),
        )
        .with_fields(replies::History {
            conversation_id: &conversation.id,
            messages,
            has_more,
        }),
    ))
}

pub async fn mark_read(
    service: &ChatService,
    call: &Call<'_>,
    input: MarkRead,
) -> Result<Outcome, ActionError> {
    let conversation = authorize_read(service, &call.me.user_id, &input.conversation_id).await?;
    let seq = input.seq.clamp(0, conversation.last_seq);
    service
        .store
        .mark_read(&conversation.id, &call.me.user_id, seq)
        .await
        .map_err(unavailable)?;
    let receipt = ServerFrame::new(ReplyStatus::ReadReceipt, "Read up to here.").with_fields(
        replies::ReadReceipt {
            conversation_id: &conversation.id,
            user_id: &call.me.user_id,
            seq,
        },
    );
    let mut outcome = Outcome::reply(
        ServerFrame::new(ReplyStatus::ReadMarked, "Marked as read.").with_fields(
            replies::ReadMarked {
                conversation_id: &conversation.id,
                seq,
            },
        ),
    );
    // The other participants, and the reader's other connections.
    let origin = Some(&call.request.origin);
    for publication in service
        .events
        .to_conversation(&conversation, receipt, None, origin)
    {
        outcome = outcome.with_event(publication);
    }
    Ok(outcome)
}

pub async fn list_conversations(
    service: &ChatService,
    call: &Call<'_>,
) -> Result<Outcome, ActionError> {
    let me = &call.me.user_id;
    let mut conversations = service
        .store
        .direct_conversations_of(me)
        .await
        .map_err(unavailable)?;
    let groups = service.store.groups_of(me).await.map_err(unavailable)?;
    let group_names: HashMap<GroupId, String> = groups
        .iter()
        .map(|g| (g.id.clone(), g.name.clone()))
        .collect();
    let group_conversations: Vec<ConversationId> = groups
        .iter()
        .map(|g| group_conversation_id(&g.id))
        .collect();
    conversations.extend(
        service
            .store
            .conversations_by_ids(&group_conversations)
            .await
            .map_err(unavailable)?,
    );
    let reads: HashMap<ConversationId, i64> = service
        .store
        .reads_of(me)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|r| (r.conversation_id, r.last_read_seq))
        .collect();
    let others: Vec<UserId> = conversations
        .iter()
        .flat_map(|c| c.participants.iter().filter(|p| *p != me).cloned())
        .collect();
    let cards = service
        .store
        .users_by_ids(&others)
        .await
        .map_err(unavailable)?;
    conversations.sort_by_key(|c| std::cmp::Reverse(c.updated_at_ms));
    let list: Vec<ConversationView> = conversations
        .iter()
        .map(|c| {
            let read = reads.get(&c.id).copied().unwrap_or(0);
            let with = c
                .participants
                .iter()
                .find(|p| *p != me)
                .map(|other| UserView::find(&cards, other));
            let group_name = c
                .group_id
                .as_ref()
                .and_then(|g| group_names.get(g))
                .map(String::as_str);
            ConversationView::of(c, group_name, with, read)
        })
        .collect();
    Ok(Outcome::reply(
        ServerFrame::new(
            ReplyStatus::Conversations,
            format!("{} conversations.", list.len()),
        )
        .with_fields(replies::Conversations {
            conversations: list,
        }),
    ))
}

/// The size of a HISTORY page: `limit` if given, else the default, clamped
/// to 1..`max_page`.
fn page_limit(requested: Option<i64>, max_page: i64) -> i64 {
    requested.unwrap_or(DEFAULT_PAGE).clamp(1, max_page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ChatSettings;

    #[test]
    fn history_limit_defaults_to_50_and_is_clamped_to_1_through_100() {
        let max = ChatSettings::default().max_page;
        assert_eq!(max, 100);
        assert_eq!(page_limit(None, max), 50);
        assert_eq!(page_limit(Some(0), max), 1);
        assert_eq!(page_limit(Some(-7), max), 1);
        assert_eq!(page_limit(Some(1), max), 1);
        assert_eq!(page_limit(Some(100), max), 100);
        assert_eq!(page_limit(Some(101), max), 100);
        assert_eq!(page_limit(Some(i64::MAX), max), 100);
    }
}
