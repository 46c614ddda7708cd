//! UPDATE_PROFILE and SEARCH_USERS. A search never reveals anyone's e-mail:
//! an exact address finds its user, but the answer shows only public fields.

use serde::Deserialize;
use serde_json::{Value, json};
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::status::ErrorCode;

use crate::input::{bad_request, display_name, payload, search_prefix};
use crate::service::{Call, ChatService, unavailable};
use crate::store::UserCard;

const SEARCH_LIMIT: i64 = 20;

#[derive(Deserialize)]
struct UpdateProfile {
    nickname: String,
}

#[derive(Deserialize)]
struct SearchUsers {
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

/// A user as others see them.
pub fn card(user: &UserCard) -> Value {
    json!({"userId": user.id, "nickname": user.profile.nickname, "profileUrl": user.profile.profile_url})
}

pub async fn update_profile(
    service: &ChatService,
    call: &Call<'_>,
) -> Result<Outcome, ActionError> {
    let input: UpdateProfile = payload(call.request)?;
    let nickname = parse_nickname(&input.nickname)?;
    if !service
        .store
        .set_nickname(&call.me.user_id, &nickname)
        .await
        .map_err(unavailable)?
    {
        return Err(ActionError::refused(
            ErrorCode::NotFound,
            "Your account no longer exists.",
        ));
    }
    let profile = json!({"userId": call.me.user_id, "nickname": nickname});
    Ok(Outcome::reply(
        ServerFrame::new("PROFILE_UPDATED", "Profile updated.").with("profile", &profile),
    )
    .with_event(
        service.events.to_user_except(
            &call.me.user_id,
            ServerFrame::new(
                "PROFILE_UPDATED",
                "Your profile was updated on another device.",
            )
            .with("profile", &profile),
            Some(&call.request.origin),
        ),
    ))
}

pub async fn search_users(service: &ChatService, call: &Call<'_>) -> Result<Outcome, ActionError> {
    let input: SearchUsers = payload(call.request)?;
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
    let found: Vec<Value> = users
        .iter()
        .filter(|u| u.id != call.me.user_id)
        .take(SEARCH_LIMIT as usize)
        .map(card)
        .collect();
    Ok(Outcome::reply(
        ServerFrame::new("USERS_FOUND", format!("{} found.", found.len())).with("users", found),
    ))
}

/// A nickname: 2 to 32 printable characters after trimming.
fn parse_nickname(raw: &str) -> Result<String, ActionError> {
    display_name("nickname", raw, 2, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<String, ActionError>) -> bool {
        matches!(result, Err(ActionError::Refused(frame)) if frame.status() == "BAD_REQUEST")
    }

    #[test]
    fn update_profile_nickname_is_2_to_32_printable_characters_after_trimming() {
        assert_eq!(parse_nickname("  ab \n").ok(), Some("ab".into()));
        assert!(refused(parse_nickname(" a ")));
        assert!(parse_nickname(&"n".repeat(32)).is_ok());
        assert!(refused(parse_nickname(&"n".repeat(33))));
        assert!(
            parse_nickname(&"é".repeat(32)).is_ok(),
            "characters, not bytes"
        );
        assert!(refused(parse_nickname("ab\u{7}c")));
    }

    #[test]
    fn a_user_card_has_only_public_fields() {
        let user: UserCard = serde_json::from_value(json!({
            "_id": "u1",
            "email": "ana@example.com",
            "profile": {"nickname": "ana", "profile_url": "/imgs/default"},
        }))
        .expect("a user document");
        assert_eq!(
            card(&user),
            json!({"userId": "u1", "nickname": "ana", "profileUrl": "/imgs/default"})
        );
    }
}
