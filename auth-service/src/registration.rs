//! REGISTER, CONFIRMATION and RESEND_CONFIRMATION.
//!
//! Each is idempotent by action id: a delivery of the same action after a
//! crash gives the same reply and sends no second mail (the mail job is keyed
//! by the action that issued the code, and enqueued at most once).

use mongodb::bson::doc;
use shared_proto::action::UserId;
use shared_proto::action::auth::{Confirmation, Register, ResendConfirmation};
use shared_proto::bus::actions::{ActionError, Outcome};
use shared_proto::client::ServerFrame;
use shared_proto::envelope::ActionRequest;
use shared_proto::now_ms;
use shared_proto::status::ErrorCode;
use shared_proto::status::ReplyStatus;

use crate::credentials::{
    Email, Password, digests_equal, hash_code, new_confirmation_code, new_salt,
};
use crate::limits::take_code_try;
use crate::mail::{already_enqueued, confirmation_job_id, confirmation_mail, enqueue_once};
use crate::outcome::{answer, bad_request, bus_unavailable, retry, unavailable};
use crate::profiles::tell_chat;
use crate::replies::ConfirmationFailed;
use crate::service::AuthService;
use crate::store::{Inserted, PendingCode, Profile, User};

/// How long a code's count of tries outlives the code: an expired code is
/// refused anyway, and the database keeps the count for longer.
const REMEMBER_TRIES_AFTER_EXPIRY: std::time::Duration = std::time::Duration::from_secs(3600);

pub async fn register(
    service: &AuthService,
    request: &ActionRequest,
    payload: Register,
) -> Result<Outcome, ActionError> {
    let email = Email::parse(&payload.user_reg_data.email).map_err(bad_request)?;
    let password = Password::parse_new(&payload.user_reg_data.password).map_err(bad_request)?;
    let registered = || {
        Ok(Outcome::reply(ServerFrame::new(
            ReplyStatus::UserRegistered,
            format!(
                "Registered. We sent a confirmation code to {}.",
                email.as_str()
            ),
        )))
    };

    if let Some(existing) = service
        .store
        .user_by_email(email.as_str())
        .await
        .map_err(unavailable)?
    {
        if existing.registered_by_action == request.action_id {
            ensure_code_mailed(service, &existing, &request.action_id).await?;
            return registered();
        }
        return already_registered();
    }

    let password_hash = service
        .hasher
        .hash(password)
        .await
        .map_err(ActionError::Unavailable)?;
    let code = new_confirmation_code();
    let user = User {
        id: UserId::new(uuid::Uuid::now_v7().to_string()),
        email: email.as_str().to_owned(),
        password_hash,
        confirmed: false,
        created_at_ms: now_ms(),
        registered_by_action: request.action_id.clone(),
        confirmed_by_action: None,
        code: Some(pending_code(service, &code, &request.action_id)),
        profile: Profile::new_account(default_nickname()),
    };
    match service
        .store
        .insert_user(&user)
        .await
        .map_err(unavailable)?
    {
        Inserted::Created => {
            mail_code(service, &request.action_id, &user.email, &code).await?;
            registered()
        }
        Inserted::EmailTaken => {
            // Lost a race for the address, possibly to an earlier delivery of
            // this very action.
            let winner = service
                .store
                .user_by_email(email.as_str())
                .await
                .map_err(unavailable)?;
            match winner {
                Some(winner) if winner.registered_by_action == request.action_id => {
                    ensure_code_mailed(service, &winner, &request.action_id).await?;
                    registered()
                }
                _ => already_registered(),
            }
        }
    }
}

fn already_registered() -> Result<Outcome, ActionError> {
    Ok(Outcome::reply(ServerFrame::new(
        ReplyStatus::UserAlreadyRegistered,
        "An account with this e-mail already exists. Log in, or confirm it with the code we sent (RESEND_CONFIRMATION sends a new one).",
    )))
}

pub async fn confirm(
    service: &AuthService,
    request: &ActionRequest,
    payload: Confirmation,
) -> Result<Outcome, ActionError> {
    let email = Email::parse(&payload.user_reg_data.email).map_err(bad_request)?;
    let typed = payload.user_reg_data.token;
    if typed.trim().is_empty() || typed.len() > 64 {
        return Err(bad_request(
            "The confirmation code (\"token\") must be the code from the e-mail.",
        ));
    }
    let Some(user) = service
        .store
        .user_by_email(email.as_str())
        .await
        .map_err(unavailable)?
    else {
        return Err(failed(
            "UNKNOWN_ACCOUNT",
            "No account with this e-mail waits for confirmation. Register first.",
            None,
        ));
    };
    if user.confirmed {
        return if user.confirmed_by_action.as_deref() == Some(&request.action_id) {
            confirmed(service, &user, request).await
        } else {
            Err(already_confirmed())
        };
    }
    let Some(code) = user.code.clone() else {
        return Err(failed(
            "NO_CODE",
            "No code is waiting. Ask for one with RESEND_CONFIRMATION.",
            None,
        ));
    };
    // Every try, right or wrong, takes one of the code's numbered tries
    // before the code is compared, in one atomic step shared by all
    // replicas: however many tries arrive at once, at most `max` are
    // compared. A redelivered action finds the try it took and is answered
    // the same way again.
    let max = service.settings.code_max_attempts;
    let keep_for = std::time::Duration::from_millis(
        u64::try_from(code.expires_at_ms.saturating_sub(now_ms())).unwrap_or(0),
    ) + REMEMBER_TRIES_AFTER_EXPIRY;
    let Some(try_number) = take_code_try(
        &service.bus,
        &code.issued_by_action,
        &request.action_id,
        max,
        code.attempts,
        keep_for,
    )
    .await
    .map_err(bus_unavailable)?
    else {
        return Err(failed(
            "LOCKED",
            "Too many wrong codes: this code is locked. Ask for a new one with RESEND_CONFIRMATION.",
            Some(0),
        ));
    };
    // The database's record, so that tries are not handed out again if
    // Redis loses its count.
    service
        .store
        .record_code_tries(&user.id, &code.issued_by_action, i64::from(try_number))
        .await
        .map_err(unavailable)?;
    if now_ms() > code.expires_at_ms {
        return Err(failed(
            "EXPIRED",
            "This code has expired. Ask for a new one with RESEND_CONFIRMATION.",
            None,
        ));
    }
    if digests_equal(&code.hash, &hash_code(&code.salt, &typed)) {
        if service
            .store
            .confirm(&user.id, &request.action_id)
            .await
            .map_err(unavailable)?
        {
            return confirmed(service, &user, request).await;
        }
        // Someone confirmed in between: this action, delivered twice, or another.
        let now = service
            .store
            .user_by_id(&user.id)
            .await
            .map_err(unavailable)?;
        return match now {
            Some(u) if u.confirmed_by_action.as_deref() == Some(&request.action_id) => {
                confirmed(service, &u, request).await
            }
            _ => Err(already_confirmed()),
        };
    }
    Err(wrong_code(i64::from(max) - i64::from(try_number)))
}

/// The account is confirmed by this action: chat-service learns of the new
/// user (handled again until it has), then the client hears it.
async fn confirmed(
    service: &AuthService,
    user: &User,
    request: &ActionRequest,
) -> Result<Outcome, ActionError> {
    tell_chat(service, user, false, request).await?;
    Ok(Outcome::reply(ServerFrame::new(
        ReplyStatus::UserConfirmed,
        "Confirmation done.",
    )))
}

pub async fn resend(
    service: &AuthService,
    request: &ActionRequest,
    payload: ResendConfirmation,
) -> Result<Outcome, ActionError> {
    let email = Email::parse(&payload.user_reg_data.email).map_err(bad_request)?;
    let sent = || {
        Ok(Outcome::reply(ServerFrame::new(
            ReplyStatus::ConfirmationSent,
            format!("We sent a new confirmation code to {}.", email.as_str()),
        )))
    };
    let Some(user) = service
        .store
        .user_by_email(email.as_str())
        .await
        .map_err(unavailable)?
    else {
        return Err(ActionError::refused(
            ErrorCode::NotFound,
            "No account with this e-mail. Register first.",
        ));
    };
    if user.confirmed {
        return Err(already_confirmed());
    }
    let previous = user.code.clone();
    if previous
        .as_ref()
        .is_some_and(|c| c.issued_by_action == request.action_id)
    {
        ensure_code_mailed(service, &user, &request.action_id).await?;
        return sent();
    }
    let interval_ms = i64::try_from(service.settings.resend_interval_secs.saturating_mul(1000))
        .unwrap_or(i64::MAX);
    if let Some(previous) = &previous {
        let wait_ms = previous.issued_at_ms.saturating_add(interval_ms) - now_ms();
        if wait_ms > 0 {
            return Err(ActionError::refused(
                ErrorCode::RateLimited,
                format!(
                    "A code was sent moments ago. Wait {} s before asking for another.",
                    (wait_ms + 999) / 1000
                ),
            ));
        }
    }
    let code = new_confirmation_code();
    // Only replace the code we looked at, so two resends racing send one code.
    let only_if = match &previous {
        Some(previous) => doc! {"code.issued_by_action": &previous.issued_by_action},
        None => doc! {"code": null},
    };
    let pending = pending_code(service, &code, &request.action_id);
    if !service
        .store
        .replace_code(&user.id, &pending, only_if)
        .await
        .map_err(unavailable)?
    {
        return Err(ActionError::refused(
            ErrorCode::Conflict,
            "Another code was just issued; use the newest mail.",
        ));
    }
    mail_code(service, &request.action_id, &user.email, &code).await?;
    sent()
}

/// After a crash between storing a code and enqueueing its mail, the code's
/// plain text is gone (only its hash is stored): issue a fresh one under the
/// same action and mail that. If the mail was enqueued, change nothing.
async fn ensure_code_mailed(
    service: &AuthService,
    user: &User,
    action_id: &str,
) -> Result<(), ActionError> {
    let job_id = confirmation_job_id(action_id);
    if already_enqueued(&service.bus, &job_id)
        .await
        .map_err(retry)?
    {
        return Ok(());
    }
    let code = new_confirmation_code();
    let pending = pending_code(service, &code, action_id);
    let replaced = service
        .store
        .replace_code(
            &user.id,
            &pending,
            doc! {"code.issued_by_action": action_id},
        )
        .await
        .map_err(unavailable)?;
    if replaced {
        mail_code(service, action_id, &user.email, &code).await?;
    }
    Ok(())
}

/// Puts the mail carrying `code` on the mail stream, once per issuing action.
/// A bus failure leaves the action half done, so it is handled again.
async fn mail_code(
    service: &AuthService,
    action_id: &str,
    to: &str,
    code: &str,
) -> Result<(), ActionError> {
    let job = confirmation_mail(
        confirmation_job_id(action_id),
        to,
        code,
        service.settings.code_ttl(),
    );
    enqueue_once(&service.bus, &job).await.map_err(retry)?;
    Ok(())
}

fn pending_code(service: &AuthService, code: &str, action_id: &str) -> PendingCode {
    let salt = new_salt();
    let now = now_ms();
    PendingCode {
        hash: hash_code(&salt, code),
        salt,
        issued_at_ms: now,
        expires_at_ms: now
            + i64::try_from(service.settings.code_ttl().as_millis()).unwrap_or(i64::MAX / 2),
        attempts: 0,
        issued_by_action: action_id.to_owned(),
    }
}

/// The placeholder nickname of a new account, as in the original server.
fn default_nickname() -> String {
    let suffix = uuid::Uuid::new_v4().as_u128() % 100_000;
    format!("no-nick-name{suffix}")
}

fn already_confirmed() -> ActionError {
    answer(
        ReplyStatus::UserAlreadyConfirmed,
        "This account is already confirmed. Log in.",
    )
}

fn wrong_code(attempts_left: i64) -> ActionError {
    let attempts_left = attempts_left.max(0);
    if attempts_left == 0 {
        failed(
            "LOCKED",
            "Wrong code, and no tries are left: this code is locked. Ask for a new one with RESEND_CONFIRMATION.",
            Some(0),
        )
    } else {
        failed(
            "WRONG_CODE",
            format!("Wrong code. {attempts_left} tries left."),
            Some(attempts_left),
        )
    }
}

/// A refused confirmation, with a machine-readable reason.
fn failed(reason: &str, message: impl Into<String>, attempts_left: Option<i64>) -> ActionError {
    ActionError::Refused(
        ServerFrame::new(ReplyStatus::ConfirmationFailed, message).with_fields(
            ConfirmationFailed {
                reason,
                attempts_left,
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::AuthSettings;
    use serde_json::json;

    fn refusal(err: ActionError) -> ServerFrame {
        match err {
            ActionError::Refused(frame) => frame,
            other => panic!("not a refusal: {other}"),
        }
    }

    #[test]
    fn a_wrong_code_says_how_many_tries_are_left() {
        let frame = refusal(wrong_code(4));
        assert_eq!(frame.status(), "CONFIRMATION_FAILED");
        assert_eq!(frame.get("reason"), Some(&json!("WRONG_CODE")));
        assert_eq!(frame.get("attemptsLeft"), Some(&json!(4)));
        assert_eq!(
            frame.get("message"),
            Some(&json!("Wrong code. 4 tries left."))
        );
    }

    #[test]
    fn the_fifth_wrong_code_locks_it_with_no_tries_left() {
        for left in [0, -3] {
            let frame = refusal(wrong_code(left));
            assert_eq!(frame.status(), "CONFIRMATION_FAILED");
            assert_eq!(frame.get("reason"), Some(&json!("LOCKED")), "{left}");
            assert_eq!(frame.get("attemptsLeft"), Some(&json!(0)), "{left}");
        }
    }

    #[test]
    fn a_failed_confirmation_carries_attempts_left_only_where_it_applies() {
        let frame = refusal(failed("EXPIRED", "This code has expired.", None));
        assert_eq!(frame.get("reason"), Some(&json!("EXPIRED")));
        assert_eq!(frame.get("attemptsLeft"), None);
    }

    #[test]
    fn a_code_is_valid_15_minutes_has_5_tries_and_is_resent_at_most_every_60_s() {
        let settings = AuthSettings::default();
        assert_eq!(settings.code_ttl(), std::time::Duration::from_secs(15 * 60));
        assert_eq!(settings.code_max_attempts, 5);
        assert_eq!(settings.resend_interval_secs, 60);
    }

    #[test]
    fn a_new_account_has_the_original_defaults() {
        let nickname = default_nickname();
        let number = nickname
            .strip_prefix("no-nick-name")
            .expect("the original prefix");
        assert!(
            !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()),
            "{nickname}"
        );
        let profile = Profile::new_account(nickname.clone());
        assert_eq!(profile.nickname, nickname);
        assert_eq!(profile.points, 1000);
        assert_eq!(profile.rank, "junior");
        assert_eq!(profile.permission, "basic");
        assert_eq!(profile.age, "any");
        assert_eq!(profile.country, "any");
        assert!(!profile.ban);
        assert_eq!(profile.profile_url, "/imgs/default");
    }

    #[test]
    fn an_existing_address_is_answered_user_already_registered() {
        let Ok(outcome) = already_registered() else {
            panic!("already_registered is a reply");
        };
        assert_eq!(outcome.frame.status(), "USER_ALREADY_REGISTERED");
        assert_eq!(
            refusal(already_confirmed()).status(),
            "USER_ALREADY_CONFIRMED"
        );
    }
}
