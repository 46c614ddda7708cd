//! Takes chat actions off the chat stream and routes them: the payload is
//! parsed once, here, into a [`ChatAction`], and each variant has one
//! handler.

use shared_proto::action::ChatAction;
use shared_proto::bus::actions::{ActionError, ActionService, Outcome};
use shared_proto::bus::worker::Delivery;
use shared_proto::envelope::ActionRequest;
use shared_proto::status::ErrorCode;

use crate::moderation::{Move, moderate};
use crate::service::{Call, ChatService};
use crate::{friends, groups, messages, people, presence, reading, typing};

impl ActionService for ChatService {
    async fn handle(
        &self,
        request: &ActionRequest,
        delivery: &Delivery,
    ) -> Result<Outcome, ActionError> {
        // The gateway lets only logged-in connections send chat actions;
        // checked again here so no path around it exists.
        let Some(me) = request.identity.as_ref() else {
            return Err(ActionError::refused(
                ErrorCode::Unauthorized,
                "Log in first.",
            ));
        };
        let action =
            ChatAction::parse(&request.action, &request.payload).map_err(ActionError::Refused)?;
        let call = Call {
            request,
            me,
            delivery,
        };
        use ChatAction as A;
        match action {
            A::SessionStarted => groups::session_started(self, &call).await,
            A::ProfileChanged(change) => people::profile_changed(self, &call, change).await,
            A::PresenceChanged(change) => presence::presence_changed(self, &call, change).await,
            A::SearchUsers(input) => people::search_users(self, &call, input).await,
            A::FriendRequest(input) => friends::request(self, &call, input).await,
            A::FriendRespond(input) => friends::respond(self, &call, input).await,
            A::FriendRemove(input) => friends::remove(self, &call, input).await,
            A::ListFriends => friends::list(self, &call).await,
            A::SendMessage(input) => messages::send(self, &call, input).await,
            A::History(input) => reading::history(self, &call, input).await,
            A::ListConversations => reading::list_conversations(self, &call).await,
            A::MarkRead(input) => reading::mark_read(self, &call, input).await,
            A::Typing(input) => typing::typing(self, &call, input).await,
            A::CreateGroup(input) => groups::create(self, &call, input).await,
            A::SearchGroups(input) => groups::search(self, &call, input).await,
            A::GroupInfo(input) => groups::info(self, &call, input).await,
            A::ListGroups => groups::list(self, &call).await,
            A::JoinGroup(t) => moderate(self, &call, t.group_id, Move::Join).await,
            A::LeaveGroup(t) => moderate(self, &call, t.group_id, Move::Leave).await,
            A::RespondJoin(r) => {
                let step = Move::RespondJoin {
                    user: r.user_id,
                    accept: r.accept,
                };
                moderate(self, &call, r.group_id, step).await
            }
            A::AddMember(m) => moderate(self, &call, m.group_id, Move::Add(m.user_id)).await,
            A::RemoveMember(m) => moderate(self, &call, m.group_id, Move::Remove(m.user_id)).await,
            A::BanMember(m) => moderate(self, &call, m.group_id, Move::Ban(m.user_id)).await,
            A::UnbanMember(m) => moderate(self, &call, m.group_id, Move::Unban(m.user_id)).await,
            A::PromoteAdmin(m) => moderate(self, &call, m.group_id, Move::Promote(m.user_id)).await,
            A::DemoteAdmin(m) => moderate(self, &call, m.group_id, Move::Demote(m.user_id)).await,
        }
    }
}
