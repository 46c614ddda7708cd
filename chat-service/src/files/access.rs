//! Who is asking, and whether they may read a file.
//!
//! A Bearer token is checked against what auth-service publishes of its
//! sessions (`shared_proto::bus::sessions`: one Redis round trip), so this
//! service never reads auth-service's `sessions`. A file may be read by its
//! uploader, and once it is in a message, by whoever may read that
//! message's conversation now: its two users, or the group's members.

use axum::http::{HeaderMap, header};
use shared_proto::action::{ConversationId, UserId};
use shared_proto::bus::sessions::session_user;

use super::FileService;
use super::errors::HttpError;
use crate::store::files::StoredFile;

/// The user whose session token the request carries.
///
/// # Errors
/// `401` without a token or with one that is unknown, expired or logged out.
pub async fn bearer_user(service: &FileService, headers: &HeaderMap) -> Result<UserId, HttpError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty() && token.len() <= 256)
        .ok_or_else(HttpError::unauthorized)?;
    session_user(&service.bus, token)
        .await
        .map_err(HttpError::unavailable)?
        .ok_or_else(HttpError::unauthorized)
}

/// Whether `me` may read `file`.
pub async fn may_read(
    service: &FileService,
    me: &UserId,
    file: &StoredFile,
) -> Result<bool, HttpError> {
    if file.metadata.uploader == *me {
        return Ok(true);
    }
    match &file.metadata.conversation_id {
        Some(conversation_id) => may_read_conversation(service, me, conversation_id).await,
        None => Ok(false),
    }
}

async fn may_read_conversation(
    service: &FileService,
    me: &UserId,
    conversation_id: &ConversationId,
) -> Result<bool, HttpError> {
    let store = &service.store;
    let Some(conversation) = store
        .conversation(conversation_id)
        .await
        .map_err(HttpError::unavailable)?
    else {
        return Ok(false);
    };
    Ok(match &conversation.group_id {
        Some(group_id) => store
            .group(group_id)
            .await
            .map_err(HttpError::unavailable)?
            .is_some_and(|g| g.members.contains(me)),
        None => conversation.participants.contains(me),
    })
}

/// A file id as clients send it: what the service generates (a UUID), or a
/// thumbnail's id, and nothing that could mean anything else in a query.
pub fn valid_file_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}
