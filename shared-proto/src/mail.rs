//! A mail job: what auth-service (or any service) asks the mailer to send.

use serde::{Deserialize, Serialize};

/// One e-mail to send. Put on the mail stream with
/// [`crate::bus::Bus::append_once`] keyed by `job_id`, so a redelivered action
/// does not enqueue it twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailJob {
    /// Stable for the job's whole life; the mailer records it once sent, so a
    /// job delivered again after a mailer crash is not sent twice.
    pub job_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at_ms: i64,
}
