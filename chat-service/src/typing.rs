//! TYPING: "this user is typing in this conversation", pushed to the other
//! participants on every gateway. Never stored. At most one per user and
//! conversation is forwarded every [`FORWARD_EVERY`], counted in Redis so
//! that it holds across replicas; clients show it for 5 s.

use std::time::Duration;

use shared_proto::action::chat::ConversationTarget;
use shared_proto::action::{ConversationId, UserId};
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::status::ReplyStatus;

use crate::reading::authorize_read;
use crate::replies;
use crate::service::{Call, ChatService};

/// The least time between two forwarded TYPING of one user in one
/// conversation.
pub const FORWARD_EVERY: Duration = Duration::from_secs(3);

pub async fn typing(
    service: &ChatService,
    call: &Call<'_>,
    input: ConversationTarget,
) -> Result<Outcome, ActionError> {
    let me = &call.me.user_id;
    let conversation = authorize_read(service, me, &input.conversation_id).await?;
    let forwarded = first_in_window(service, me, &conversation.id).await?;
    let reply = ServerFrame::new(ReplyStatus::TypingSent, "Typing noted.").with_fields(
        replies::TypingSent {
            conversation_id: &conversation.id,
            forwarded,
        },
    );
    let mut outcome = Outcome::reply(reply);
    if forwarded {
        let event = ServerFrame::new(ReplyStatus::Typing, "Someone is typing.").with_fields(
            replies::Typing {
                conversation_id: &conversation.id,
                user_id: me,
            },
        );
        let origin = Some(&call.request.origin);
        for publication in
            service
                .events
                .signal_to_conversation(&conversation, event, Some(me), origin)
        {
            outcome = outcome.with_event(publication);
        }
    }
    Ok(outcome)
}

/// True if no TYPING of this user in this conversation was forwarded in the
/// last [`FORWARD_EVERY`]; marks this one as forwarded.
async fn first_in_window(
    service: &ChatService,
    user_id: &UserId,
    conversation_id: &ConversationId,
) -> Result<bool, ActionError> {
    let key = service
        .bus
        .names()
        .typing(user_id.as_str(), conversation_id.as_str());
    service
        .bus
        .first_within(&key, FORWARD_EVERY)
        .await
        .map_err(|err| ActionError::Unavailable(err.into()))
}
