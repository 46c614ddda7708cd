//! UPDATE_PROFILE, and telling chat-service about profiles.
//!
//! The profile belongs to the account, so auth-service changes it. chat-service
//! keeps a copy of the public fields to show and search: every change goes to
//! it as `PROFILE_CHANGED`. For `UPDATE_PROFILE` that action also takes over
//! answering the client, so once the client reads `PROFILE_UPDATED` the new
//! nickname is what everyone finds.

use std::time::Duration;

use shared_proto::action::auth::UpdateProfile;
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::envelope::ActionRequest;
use shared_proto::now_ms;
use shared_proto::profiles::ProfileChanged;
use shared_proto::routing::Service;
use shared_proto::status::ErrorCode;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::outcome::{bad_request, retry, unavailable};
use crate::service::AuthService;
use crate::store::User;

/// A nickname: 2 to 32 printable characters after trimming.
pub fn parse_nickname(raw: &str) -> Result<String, ActionError> {
    shared_proto::client::display_name("nickname", raw, 2, 32).map_err(bad_request)
}

pub async fn update_profile(
    service: &AuthService,
    request: &ActionRequest,
    input: UpdateProfile,
) -> Result<Outcome, ActionError> {
    let Some(me) = request.identity.as_ref() else {
        return Err(ActionError::refused(
            ErrorCode::Unauthorized,
            "Log in first.",
        ));
    };
    let nickname = parse_nickname(&input.nickname)?;
    let Some(user) = service
        .store
        .set_nickname(&me.user_id, &nickname, now_ms())
        .await
        .map_err(unavailable)?
    else {
        return Err(ActionError::refused(
            ErrorCode::NotFound,
            "Your account no longer exists.",
        ));
    };
    // The change is stored: from here on, a failure leaves the action to be
    // handled again, which sets the same nickname and hands it on again.
    crate::resume_cache::keep_card(&service.bus, &crate::resume_cache::UserCard::from(&user))
        .await
        .map_err(|err| ActionError::Retry(err.into()))?;
    tell_chat(service, &user, true, request).await?;
    Ok(Outcome::unanswered("HANDED_ON"))
}

/// Tells chat-service a user's profile as it is now. With `answer_client`,
/// chat-service answers `cause`'s client once its copy is up to date.
pub async fn tell_chat(
    service: &AuthService,
    user: &User,
    answer_client: bool,
    cause: &ActionRequest,
) -> Result<(), ActionError> {
    let change = profile_changed(user, answer_client).into_request(cause);
    service
        .bus
        .submit(Service::Chat, &change)
        .await
        .map_err(retry)
}

fn profile_changed(user: &User, answer_client: bool) -> ProfileChanged {
    ProfileChanged {
        user_id: user.id.clone(),
        email: user.email.clone(),
        nickname: user.profile.nickname.clone(),
        profile_url: user.profile.profile_url.clone(),
        version: user.profile.version,
        answer_client,
    }
}

/// How many accounts one page of [`publish_all_once`] reads.
const PAGE: i64 = 200;
/// chat-service's backlog above which publishing waits, so that a large
/// deployment's first start does not crowd out its users' actions.
const MAX_BACKLOG: u64 = 1000;

/// Tells chat-service every confirmed account's profile, once per
/// deployment: accounts confirmed before chat-service kept its own copy are
/// otherwise unknown to it. Running twice (two replicas starting together)
/// is harmless: a copy ignores what it already has.
pub async fn publish_all_once(service: &AuthService, shutdown: &CancellationToken) {
    let marker = service.bus.names().profiles_published_marker();
    let mut redis = service.bus.connection();
    let done: Result<bool, _> = redis::AsyncCommands::exists(&mut redis, &marker).await;
    if matches!(done, Ok(true)) {
        return;
    }
    let mut after = String::new();
    let mut published = 0_u64;
    let stream = service.bus.names().action_stream(Service::Chat);
    while !shutdown.is_cancelled() {
        if service.bus.backlog(&stream).await.unwrap_or(0) > MAX_BACKLOG {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let page = match service.store.confirmed_users_after(&after, PAGE).await {
            Ok(page) => page,
            Err(err) => {
                warn!(error = %err, "reading accounts to publish their profiles failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for user in &page {
            let cause = seed_cause(user);
            if let Err(err) = tell_chat(service, user, false, &cause).await {
                warn!(error = %err, "publishing a profile failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            }
            after = user.id.to_string();
            published += 1;
        }
        if (page.len() as i64) < PAGE {
            let _: Result<(), _> = redis::AsyncCommands::set(&mut redis, &marker, 1).await;
            if published > 0 {
                info!(published, "told chat-service every existing profile");
            }
            return;
        }
    }
}

/// The action a published profile stands in for: it has no client.
fn seed_cause(user: &User) -> ActionRequest {
    ActionRequest::internal(
        format!("profile-seed:{}:{}", user.id, user.profile.version),
        "",
        shared_proto::envelope::Origin {
            gateway_id: String::new(),
            connection_id: 0,
        },
        None,
        serde_json::Map::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<String, ActionError>) -> bool {
        matches!(result, Err(ActionError::Refused(frame)) if frame.status() == "BAD_REQUEST")
    }

    #[test]
    fn a_nickname_is_2_to_32_printable_characters_after_trimming() {
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
}
