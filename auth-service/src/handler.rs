//! Takes account actions off the auth stream and routes them.

use shared_proto::bus::actions::{ActionError, ActionService, Outcome};
use shared_proto::bus::worker::Delivery;
use shared_proto::envelope::ActionRequest;
use shared_proto::status::ErrorCode;

use crate::service::AuthService;
use crate::{profiles, registration, sessions};

impl ActionService for AuthService {
    async fn handle(
        &self,
        request: &ActionRequest,
        _delivery: &Delivery,
    ) -> Result<Outcome, ActionError> {
        match request.action.as_str() {
            "REGISTER" => registration::register(self, request).await,
            "CONFIRMATION" => registration::confirm(self, request).await,
            "RESEND_CONFIRMATION" => registration::resend(self, request).await,
            "LOGIN" => sessions::login(self, request).await,
            "FASTLOGIN" => sessions::fast_login(self, request).await,
            "LOGOUT" => sessions::logout(self, request).await,
            "UPDATE_PROFILE" => profiles::update_profile(self, request).await,
            other => Err(ActionError::refused(
                ErrorCode::UnknownAction,
                format!("auth-service does not handle {other:?}."),
            )),
        }
    }
}
