//! PROFILE_CHANGED and SEARCH_USERS. A search never reveals anyone's e-mail:
//! an exact address finds its user, but the answer shows only public fields.
//!
//! Profiles belong to auth-service. It tells this service of each change
//! with `PROFILE_CHANGED`, which updates the copy in `people` and, for an
//! `UPDATE_PROFILE`, answers the client that made it.

use shared_proto::action::chat::SearchUsers;
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::profiles::ProfileChanged;
use shared_proto::status::ReplyStatus;

use crate::input::{bad_request, search_prefix};
use crate::replies::{ProfileUpdated, UsersFound};
use crate::service::{Call, ChatService, unavailable};
use crate::store::{Person, PublicProfile};
use crate::views::{ProfileView, UserView};

const SEARCH_LIMIT: i64 = 20;

pub async fn profile_changed(
    service: &ChatService,
    call: &Call<'_>,
    change: ProfileChanged,
) -> Result<Outcome, ActionError> {
    if change.user_id != call.me.user_id {
        return Err(bad_request("A profile change names another user."));
    }
    service
        .store
        .copy_profile(&person(&change))
        .await
        .map_err(unavailable)?;
    if !change.answer_client {
        return Ok(Outcome::unanswered("PROFILE_COPIED"));
    }
    let profile = ProfileView {
        user_id: change.user_id.clone(),
        nickname: change.nickname.clone(),
    };
    let body = ProfileUpdated { profile: &profile };
    Ok(Outcome::reply(
        ServerFrame::new(ReplyStatus::ProfileUpdated, "Profile updated.").with_fields(&body),
    )
    .with_event(
        service.events.to_user_except(
            &change.user_id,
            ServerFrame::new(
                ReplyStatus::ProfileUpdated,
                "Your profile was updated on another device.",
            )
            .with_fields(&body),
            Some(&call.request.origin),
        ),
    ))
}

/// The copy of a profile this service keeps.
fn person(change: &ProfileChanged) -> Person {
    Person {
        id: change.user_id.clone(),
        email: change.email.to_lowercase(),
        nickname_lower: change.nickname.to_lowercase(),
        profile: PublicProfile {
            nickname: change.nickname.clone(),
            profile_url: change.profile_url.clone(),
        },
        version: change.version,
    }
}

pub async fn search_users(
    service: &ChatService,
    call: &Call<'_>,
    input: SearchUsers,
) -> Result<Outcome, ActionError> {
    let users = match (input.nickname, input.email) {
        (Some(prefix), None) => {
            let prefix = search_prefix(&prefix)?;
            service
                .store
                .users_by_nickname_prefix(&prefix, SEARCH_LIMIT + 1)
                .await
                .map_err(unavailable)?
        }
        (None, Some(email)) => {
            let email = email.trim().to_lowercase();
            service
                .store
                .user_by_email(&email)
                .await
                .map_err(unavailable)?
                .into_iter()
                .collect()
        }
        _ => {
            return Err(bad_request(
                "Search by \"nickname\" (a prefix) or by \"email\" (exact), not both.",
            ));
        }
    };
    let found: Vec<UserView> = users
        .iter()
        .filter(|u| u.id != call.me.user_id)
        .take(SEARCH_LIMIT as usize)
        .map(UserView::of)
        .collect();
    Ok(Outcome::reply(
        ServerFrame::new(ReplyStatus::UsersFound, format!("{} found.", found.len()))
            .with_fields(UsersFound { users: found }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_card_has_only_public_fields() {
        let change = ProfileChanged {
            user_id: shared_proto::action::UserId::new("u1"),
            email: "Ana@Example.com".into(),
            nickname: "ana".into(),
            profile_url: "/imgs/default".into(),
            version: 3,
            answer_client: false,
        };
        let stored = mongodb::bson::to_document(&person(&change)).expect("a document");
        let user: crate::store::UserCard =
            mongodb::bson::from_document(stored).expect("read back as a card");
        assert_eq!(
            serde_json::to_value(UserView::of(&user)).expect("json"),
            serde_json::json!({"userId": "u1", "nickname": "ana", "profileUrl": "/imgs/default"})
        );
    }
}
