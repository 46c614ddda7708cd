//! The confirmation mail, and putting it on the mail stream exactly once per
//! action.

use std::time::Duration;

use shared_proto::bus::{Bus, BusError};
use shared_proto::mail::MailJob;

/// How long the "already enqueued" marker of a mail job is kept: far longer
/// than any redelivery of the action that enqueued it.
const REMEMBER_JOBS: Duration = Duration::from_secs(7 * 24 * 3600);

/// The mail job id for the code issued by one action.
pub fn confirmation_job_id(action_id: &str) -> String {
    format!("confirm-{action_id}")
}

/// The confirmation mail. The code is alphanumeric, so it needs no escaping.
pub fn confirmation_mail(job_id: String, to: &str, code: &str, valid_for: Duration) -> MailJob {
    let minutes = valid_for.as_secs().div_ceil(60);
    MailJob {
        job_id,
        to: to.to_owned(),
        subject: "Your Switchyard confirmation code".into(),
        text: format!(
            "Welcome to Switchyard.\n\nYour confirmation code: {code}\n\nIt is valid for {minutes} minutes. If you did not register, ignore this mail.\n"
        ),
        html: format!(
            "<p>Welcome to Switchyard.</p><p>Your confirmation code: <strong style=\"font-size:1.4em;letter-spacing:0.1em\">{code}</strong></p><p>It is valid for {minutes} minutes. If you did not register, ignore this mail.</p>"
        ),
        created_at_ms: shared_proto::now_ms(),
    }
}

/// True if the mail for this job was already put on the stream.
pub async fn already_enqueued(bus: &Bus, job_id: &str) -> Result<bool, BusError> {
    bus.was_appended(job_id).await
}

/// Puts the mail on the stream unless it is there already.
pub async fn enqueue_once(bus: &Bus, job: &MailJob) -> Result<bool, BusError> {
    bus.append_once(&bus.names().mail_stream(), &job.job_id, REMEMBER_JOBS, job)
        .await
}
