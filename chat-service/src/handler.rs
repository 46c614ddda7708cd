//! Takes chat actions off the chat stream and routes them.

use shared_proto::bus::actions::{ActionError, ActionService, Outcome};
use shared_proto::bus::worker::Delivery;
use shared_proto::envelope::ActionRequest;
use shared_proto::routing::{PROFILE_CHANGED, SESSION_STARTED};
use shared_proto::status::ErrorCode;

use crate::service::{Call, ChatService};
use crate::{friends, groups, messages, people};

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
        let call = Call {
            request,
            me,
            delivery,
        };
        match request.action.as_str() {
            SESSION_STARTED => groups::session_started(self, &call).await,
            PROFILE_CHANGED => people::profile_changed(self, &call).await,
            "SEARCH_USERS" => people::search_users(self, &call).await,
            "FRIEND_REQUEST" => friends::request(self, &call).await,
            "FRIEND_RESPOND" => friends::respond(self, &call).await,
            "FRIEND_REMOVE" => friends::remove(self, &call).await,
            "LIST_FRIENDS" => friends::list(self, &call).await,
            "SEND_MESSAGE" => messages::send(self, &call).await,
            "HISTORY" => messages::history(self, &call).await,
            "LIST_CONVERSATIONS" => messages::list_conversations(self, &call).await,
            "MARK_READ" => messages::mark_read(self, &call).await,
            "CREATE_GROUP" => groups::create(self, &call).await,
            "SEARCH_GROUPS" => groups::search(self, &call).await,
            "GROUP_INFO" => groups::info(self, &call).await,
            "LIST_GROUPS" => groups::list(self, &call).await,
            "JOIN_GROUP" | "RESPOND_JOIN" | "ADD_MEMBER" | "REMOVE_MEMBER" | "BAN_MEMBER"
            | "UNBAN_MEMBER" | "PROMOTE_ADMIN" | "DEMOTE_ADMIN" | "LEAVE_GROUP" => {
                groups::moderate(self, &call).await
            }
            other => Err(ActionError::refused(
                ErrorCode::UnknownAction,
                format!("chat-service does not handle {other:?}."),
            )),
        }
    }
}
