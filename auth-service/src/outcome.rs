//! How auth-service failures become client frames: one place.

use shared_proto::bus::BusError;
use shared_proto::bus::actions::ActionError;
use shared_proto::client::ServerFrame;
use shared_proto::status::ErrorCode;
use shared_proto::status::ReplyStatus;

use crate::store::StoreError;

/// The database failed before anything was changed.
pub fn unavailable(err: StoreError) -> ActionError {
    ActionError::Unavailable(err.into())
}

/// Redis failed before anything was changed.
pub fn bus_unavailable(err: BusError) -> ActionError {
    ActionError::Unavailable(err.into())
}

/// The bus failed after part of the effect: handle the action again later.
pub fn retry(err: BusError) -> ActionError {
    ActionError::Retry(err.into())
}

/// The payload is malformed or a value in it is invalid.
pub fn bad_request(message: impl Into<String>) -> ActionError {
    ActionError::refused(ErrorCode::BadRequest, message)
}

/// A refusal in the account vocabulary of the original clients, e.g.
/// `NOT_LOGGED`, with a sentence for a person.
pub fn answer(status: ReplyStatus, message: impl Into<String>) -> ActionError {
    ActionError::Refused(ServerFrame::new(status, message))
}
