//! LOGIN, FASTLOGIN and LOGOUT.
//!
//! A session token has 256 random bits and is stored only as its SHA-256,
//! which doubles as the session's id on the bus. A login delivered twice
//! (after a crash) opens a second session; the client only ever sees one
//! reply, and the spare session simply expires.
//!
//! Password logins are bounded per account and per source address (see
//! [`crate::limits`]); a token has too many bits to guess, so FASTLOGIN is
//! not.

use std::time::Duration;

use shared_proto::action::UserId;
use shared_proto::action::auth::{Login, SessionToken};
use shared_proto::bus::Publication;
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::envelope::{ActionRequest, Identity, SessionChange, ToGateway};
use shared_proto::now_ms;
use shared_proto::status::ErrorCode;
use shared_proto::status::ReplyStatus;
use tracing::warn;

use crate::credentials::{Email, Password, hash_token, new_session_token};
use crate::limits::{
    LoginSubjects, LoginTry, describe_wait, mark_session_revoked, release_login, reserve_login,
};
use crate::outcome::{answer, bad_request, bus_unavailable, unavailable};
use crate::replies::{ProfileFlag, RetryAfter, UserLogged};
use crate::resume_cache::{self, CachedSession, Lookup, UserCard};
use crate::service::AuthService;
use crate::store::{Session, User};

pub async fn login(
    service: &AuthService,
    request: &ActionRequest,
    payload: Login,
) -> Result<Outcome, ActionError> {
    let email = Email::parse(&payload.user_login_data.email).map_err(bad_request)?;
    let password =
        Password::parse_attempt(&payload.user_login_data.password).map_err(bad_request)?;
    // The try is counted as a failure before the password is looked at, so
    // concurrent guesses cannot slip past the count.
    let subjects = LoginSubjects::new(
        service.bus.names(),
        email.as_str(),
        request.client_addr.as_deref(),
    );
    let settings = &service.settings;
    if let LoginTry::Wait(wait) = reserve_login(&service.bus, &subjects, settings)
        .await
        .map_err(bus_unavailable)?
    {
        return Err(too_many_failures(wait));
    }
    let checked = check_password(service, &email, password).await;
    let release = match &checked {
        Ok((_, matches)) if !matches => None,
        Ok(_) => Some(true),
        // Never checked: the try goes back.
        Err(_) => Some(false),
    };
    if let Some(password_was_right) = release
        && let Err(err) = release_login(&service.bus, &subjects, settings, password_was_right).await
    {
        // The count stays a little high until it is forgotten.
        warn!(error = %err, "could not give back a login try");
    }
    let (user, matches) = checked?;
    let Some(user) = user.filter(|_| matches) else {
        return Err(answer(ReplyStatus::NotLogged, "Wrong e-mail or password."));
    };
    if !user.confirmed {
        return Err(answer(
            ReplyStatus::UserNotConfirmed,
            "Confirm your e-mail address first: send CONFIRMATION with the code we mailed you, or RESEND_CONFIRMATION for a new one.",
        ));
    }
    if user.profile.ban {
        return Err(answer(ReplyStatus::NotLogged, "This account is banned."));
    }
    let (token, token_hash) = new_session_token();
    let now = now_ms();
    let session = Session {
        token_hash,
        user_id: user.id.clone(),
        email: user.email.clone(),
        created_at_ms: now,
        expires_at_ms: now
            + i64::try_from(service.settings.session_ttl().as_millis()).unwrap_or(i64::MAX / 2),
        created_by_action: request.action_id.clone(),
        revoked: false,
        revoked_by_action: None,
    };
    service
        .store
        .insert_session(&session)
        .await
        .map_err(unavailable)?;
    let session = CachedSession::from(&session);
    publish(service, &session).await?;
    // Copies for resuming it: made now, they spare the database the resume
    // storm after a gateway drains.
    if let Err(err) = resume_cache::keep_session(&service.bus, &session).await {
        warn!(error = %err, "could not cache a session");
    }
    let card = UserCard::from(&user);
    cache_card(service, &card).await;
    Ok(logged_in(&card, &token, &session))
}

/// Tells the HTTP side (attachments) whose session this is, for what is left
/// of it (see `shared_proto::bus::sessions`). Before the login is answered,
/// so a client that has its token can use it at once; if Redis cannot be
/// written the login is refused as unavailable, and nothing half-done stays
/// but a spare session that expires.
async fn publish(service: &AuthService, session: &CachedSession) -> Result<(), ActionError> {
    let remaining = u64::try_from(session.expires_at_ms.saturating_sub(now_ms())).unwrap_or(0);
    shared_proto::bus::sessions::publish_session(
        &service.bus,
        &session.token_hash,
        &session.user_id,
        Duration::from_millis(remaining),
    )
    .await
    .map_err(bus_unavailable)
}

/// The account (if any) and whether `password` is its password.
async fn check_password(
    service: &AuthService,
    email: &Email,
    password: Password,
) -> Result<(Option<User>, bool), ActionError> {
    let user = service
        .store
        .user_by_email(email.as_str())
        .await
        .map_err(unavailable)?;
    let matches = service
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await
        .map_err(ActionError::Unavailable)?;
    Ok((user, matches))
}

/// A login refused before its password was looked at.
fn too_many_failures(wait: Duration) -> ActionError {
    let retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    ActionError::Refused(
        ServerFrame::error(
            ErrorCode::RateLimited,
            format!(
                "Too many failed logins for this account or from this address. Wait {} before trying again.",
                describe_wait(wait)
            ),
        )
        .with_fields(RetryAfter { retry_after_ms }),
    )
}

pub async fn fast_login(
    service: &AuthService,
    payload: SessionToken,
) -> Result<Outcome, ActionError> {
    let email = Email::parse(&payload.user_login_data.email).map_err(bad_request)?;
    let token = payload.user_login_data.token;
    let not_logged = || {
        answer(
            ReplyStatus::NotLogged,
            "This session is not valid any more. Log in with your password.",
        )
    };
    let token_hash = hash_token(&token);
    let Some((session, from_copy)) = resumed_session(service, &token_hash).await? else {
        return Err(not_logged());
    };
    if session.expires_at_ms <= now_ms() || session.email != email.as_str() {
        return Err(not_logged());
    }
    let Some(card) = user_card(service, &session.user_id).await? else {
        return Err(not_logged());
    };
    if card.profile.ban {
        return Err(answer(ReplyStatus::NotLogged, "This account is banned."));
    }
    // A copy is made with the session's publication (at LOGIN, or below
    // when it was missing) and lives shorter: found, the session is
    // published already.
    if !from_copy {
        publish(service, &session).await?;
    }
    Ok(logged_in(&card, &token, &session))
}

/// The open session with this token hash, and whether it came from the
/// copy: from the copy, or else from the database, then copied. A copy that
/// cannot be read is passed over.
async fn resumed_session(
    service: &AuthService,
    token_hash: &str,
) -> Result<Option<(CachedSession, bool)>, ActionError> {
    match resume_cache::session(&service.bus, token_hash).await {
        Ok(Lookup::Found(session)) => return Ok(Some((session, true))),
        Ok(Lookup::Revoked) => return Ok(None),
        Ok(Lookup::Missing) => {}
        Err(err) => warn!(error = %err, "could not read the session cache"),
    }
    let stored = service
        .store
        .session(token_hash)
        .await
        .map_err(unavailable)?;
    let Some(session) = stored.filter(is_open).as_ref().map(CachedSession::from) else {
        return Ok(None);
    };
    if let Err(err) = resume_cache::keep_session(&service.bus, &session).await {
        warn!(error = %err, "could not cache a session");
    }
    Ok(Some((session, false)))
}

/// What a login shows of the user: from the cache, or else from the
/// database, then cached.
async fn user_card(
    service: &AuthService,
    user_id: &UserId,
) -> Result<Option<UserCard>, ActionError> {
    match resume_cache::card(&service.bus, user_id).await {
        Ok(Some(card)) => return Ok(Some(card)),
        Ok(None) => {}
        Err(err) => warn!(error = %err, "could not read the user cache"),
    }
    let Some(user) = service
        .store
        .user_by_id(user_id)
        .await
        .map_err(unavailable)?
    else {
        return Ok(None);
    };
    let card = UserCard::from(&user);
    cache_card(service, &card).await;
    Ok(Some(card))
}

async fn cache_card(service: &AuthService, card: &UserCard) {
    if let Err(err) = resume_cache::keep_card(&service.bus, card).await {
        warn!(error = %err, "could not cache a user");
    }
}

pub async fn logout(
    service: &AuthService,
    request: &ActionRequest,
    payload: SessionToken,
) -> Result<Outcome, ActionError> {
    let email = Email::parse(&payload.user_login_data.email).map_err(bad_request)?;
    let token_hash = hash_token(&payload.user_login_data.token);
    let no_session = || {
        answer(
            ReplyStatus::UserLogoutError,
            "No open session matches this e-mail and token.",
        )
    };
    let session = service
        .store
        .session(&token_hash)
        .await
        .map_err(unavailable)?;
    let Some(session) = session.filter(|s| s.email == email.as_str()) else {
        return Err(no_session());
    };
    let redelivered = session.revoked_by_action.as_deref() == Some(&request.action_id);
    if !redelivered && !is_open(&session) {
        return Err(no_session());
    }
    // Gateways refuse the session's actions from the moment the marker is
    // written, so it is written before the client can hear the session is
    // closed, and before the database is changed: if Redis cannot be written
    // nothing was done, and the client is told so. (Retrying the action
    // instead would not do: an account action nobody waits for any more is
    // dropped, which would leave the session closed in the database but
    // open on the gateways, and a new LOGOUT would find it closed already.)
    // If the database then fails, the session is refused everywhere a little
    // early, and the client's next LOGOUT finishes the job.
    let remaining = u64::try_from(session.expires_at_ms.saturating_sub(now_ms())).unwrap_or(0);
    mark_session_revoked(&service.bus, &token_hash, Duration::from_millis(remaining))
        .await
        .map_err(bus_unavailable)?;
    if !service
        .store
        .revoke_session(&token_hash, &request.action_id)
        .await
        .map_err(unavailable)?
    {
        return Err(no_session());
    }
    let mut outcome = Outcome::reply(ServerFrame::new(
        ReplyStatus::UserLogout,
        "Your account session is closed.",
    ))
    // Every other connection using this session, on any gateway.
    .with_event(Publication::live(
        service.bus.names().user_channel(session.user_id.as_str()),
        ToGateway::SessionRevoked {
            session_id: token_hash.clone(),
        },
    ));
    let sender_used_it = request
        .identity
        .as_ref()
        .is_some_and(|i| i.session_id == token_hash);
    if sender_used_it {
        outcome = outcome.with_session(SessionChange::Close);
    }
    Ok(outcome)
}

fn is_open(session: &Session) -> bool {
    !session.revoked && session.expires_at_ms > now_ms()
}

/// The `USER_LOGGED` reply, which also makes the connection act as the user.
fn logged_in(user: &UserCard, token: &str, session: &CachedSession) -> Outcome {
    Outcome::reply(
        ServerFrame::new(ReplyStatus::UserLogged, "You logged.").with_fields(UserLogged {
            flag: profile_flag(user, token),
        }),
    )
    .with_session(SessionChange::Open {
        identity: Identity {
            user_id: user.id.clone(),
            session_id: session.token_hash.clone(),
            email: user.email.clone(),
        },
        expires_at_ms: session.expires_at_ms,
    })
}

fn profile_flag<'a>(user: &'a UserCard, token: &'a str) -> ProfileFlag<'a> {
    let p = &user.profile;
    ProfileFlag {
        email: &user.email,
        nickname: &p.nickname,
        confirmed: user.confirmed,
        token,
        online: true,
        points: p.points,
        rank: &p.rank,
        permission: &p.permission,
        age: &p.age,
        country: &p.country,
        ban: p.ban,
        profile_url: &p.profile_url,
        user_id: &user.id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::AuthSettings;
    use crate::store::Profile;
    use serde_json::{Value, json};

    fn session(expires_at_ms: i64, revoked: bool) -> Session {
        Session {
            token_hash: hash_token("token"),
            user_id: shared_proto::action::UserId::new("u1"),
            email: "ana@example.com".into(),
            created_at_ms: 0,
            expires_at_ms,
            created_by_action: "a1".into(),
            revoked,
            revoked_by_action: None,
        }
    }

    #[test]
    fn a_session_is_open_until_it_expires_or_is_revoked() {
        let later = now_ms() + 60_000;
        assert!(is_open(&session(later, false)));
        assert!(!is_open(&session(later, true)), "revoked");
        assert!(!is_open(&session(now_ms() - 1, false)), "expired");
        assert!(!is_open(&session(now_ms() - 1, true)));
    }

    #[test]
    fn a_session_token_is_valid_30_days_from_login() {
        assert_eq!(
            AuthSettings::default().session_ttl(),
            Duration::from_secs(30 * 24 * 3600)
        );
    }

    fn user() -> User {
        User {
            id: shared_proto::action::UserId::new("0192f4c1-7a2e-7c3d-8e4f-5a6b7c8d9e01"),
            email: "ana@example.com".into(),
            password_hash: "$argon2id$secret".into(),
            confirmed: true,
            created_at_ms: 0,
            registered_by_action: "r".into(),
            confirmed_by_action: None,
            code: None,
            profile: Profile::new_account("no-nick-name48213".into()),
        }
    }

    #[test]
    fn user_logged_flag_is_the_original_profile_plus_user_id_and_token() {
        let user = user();
        let flag =
            serde_json::to_value(profile_flag(&UserCard::from(&user), "the-token")).expect("json");
        assert_eq!(
            flag,
            json!({
                "email": "ana@example.com",
                "nickname": "no-nick-name48213",
                "confirmed": true,
                "token": "the-token",
                "online": true,
                "points": 1000,
                "rank": "junior",
                "permission": "basic",
                "age": "any",
                "country": "any",
                "ban": false,
                "profileUrl": "/imgs/default",
                "userId": "0192f4c1-7a2e-7c3d-8e4f-5a6b7c8d9e01",
            })
        );
    }

    #[test]
    fn fastlogin_keeps_the_sessions_original_expiry() {
        let session = session(1_234, false);
        let outcome = logged_in(
            &UserCard::from(&user()),
            "the-token",
            &CachedSession::from(&session),
        );
        assert_eq!(outcome.frame.status(), "USER_LOGGED");
        match outcome.session {
            Some(SessionChange::Open {
                identity,
                expires_at_ms,
            }) => {
                assert_eq!(expires_at_ms, 1_234);
                assert_eq!(identity.session_id, session.token_hash);
                assert_eq!(identity.user_id, user().id);
            }
            other => panic!("no session opened: {other:?}"),
        }
    }

    #[test]
    fn a_refused_login_says_when_to_try_again_in_milliseconds() {
        let ActionError::Refused(frame) = too_many_failures(Duration::from_millis(1873)) else {
            panic!("not a refusal");
        };
        assert_eq!(frame.status(), "RATE_LIMITED");
        assert_eq!(frame.get("retryAfterMs"), Some(&json!(1873)));
        let message = frame
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(message.contains("Wait 2 s"), "{message}");
    }
}
