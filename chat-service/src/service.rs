//! What every chat action is handed: the service's state, and the call
//! (who sent which action, and how it arrived).

use shared_proto::bus::Bus;
use shared_proto::bus::actions::ActionError;
use shared_proto::bus::worker::Delivery;
use shared_proto::envelope::{ActionRequest, Identity};

use crate::events::Events;
use crate::files::signing::UrlSigner;
use crate::known::Known;
use crate::message_log::MessageLog;
use crate::settings::{ChatSettings, FilesSettings};
use crate::store::{Store, StoreError};

/// Everything a chat action needs.
pub struct ChatService {
    pub store: Store,
    /// For what is shared by every replica but not stored: throttles.
    pub bus: Bus,
    pub events: Events,
    pub settings: ChatSettings,
    /// What attachments may be, and where they may go.
    pub files: FilesSettings,
    /// Signs the URLs of attachments in messages.
    pub signer: UrlSigner,
    /// The writer of messages.
    pub messages: MessageLog,
    /// Friends, members and conversations, remembered for SEND_MESSAGE.
    pub known: Known,
}

/// One action, with who sent it and how it arrived.
pub struct Call<'a> {
    pub request: &'a ActionRequest,
    /// The logged-in sender.
    pub me: &'a Identity,
    pub delivery: &'a Delivery,
}

/// The database failed before anything was changed.
pub fn unavailable(err: StoreError) -> ActionError {
    ActionError::Unavailable(err.into())
}
