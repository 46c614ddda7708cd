//! Takes account actions off the auth stream and routes them: the payload is
//! parsed once, here, into an [`AuthAction`], and each variant has one
//! handler.

use shared_proto::action::AuthAction;
use shared_proto::bus::actions::{ActionError, ActionService, Outcome};
use shared_proto::bus::worker::Delivery;
use shared_proto::envelope::ActionRequest;

use crate::service::AuthService;
use crate::{profiles, registration, sessions};

impl ActionService for AuthService {
    async fn handle(
        &self,
        request: &ActionRequest,
        _delivery: &Delivery,
    ) -> Result<Outcome, ActionError> {
        let action =
            AuthAction::parse(&request.action, &request.payload).map_err(ActionError::Refused)?;
        match action {
            AuthAction::Register(input) => registration::register(self, request, input).await,
            AuthAction::Confirmation(input) => registration::confirm(self, request, input).await,
            AuthAction::ResendConfirmation(input) => {
                registration::resend(self, request, input).await
            }
            AuthAction::Login(input) => sessions::login(self, request, input).await,
            AuthAction::FastLogin(input) => sessions::fast_login(self, input).await,
            AuthAction::Logout(input) => sessions::logout(self, request, input).await,
            AuthAction::UpdateProfile(input) => {
                profiles::update_profile(self, request, input).await
            }
        }
    }
}
