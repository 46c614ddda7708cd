//! The SMTP side: one pooled lettre transport built from settings, and how a
//! [`MailJob`] becomes a multipart/alternative message.
//!
//! Whether a failure is worth retrying is decided here, in
//! [`SendError::is_permanent`], so the handler only asks.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use shared_proto::mail::MailJob;

use crate::settings::{SmtpSettings, TlsMode};

/// How long one send (connect, greet, authenticate, transfer) may take in all.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the SMTP transport could not be built from settings.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("smtp.from is not a mailbox")]
    From(#[source] lettre::address::AddressError),
    #[error("setting up TLS for {host}")]
    Tls {
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

/// Why one job could not be sent. The text of these errors may end up in the
/// dead-letter stream and logs, so none of them carries the mail body.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("recipient is not a mailbox: {0}")]
    Recipient(lettre::address::AddressError),
    #[error("building the message: {0}")]
    Message(lettre::error::Error),
    // lettre's Display already appends the underlying cause.
    #[error("smtp: {0}")]
    Smtp(lettre::transport::smtp::Error),
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
}

impl SendError {
    /// True when trying again cannot help: the job itself is malformed, or
    /// the server refused it with a 5xx reply. Network trouble, timeouts and
    /// 4xx replies are worth another try.
    pub fn is_permanent(&self) -> bool {
        match self {
            SendError::Recipient(_) | SendError::Message(_) => true,
            SendError::Smtp(err) => err.is_permanent(),
            SendError::Timeout(_) => false,
        }
    }
}

/// A handle on the SMTP server. Cheap to clone: clones share the
/// connection pool.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Smtp {
    /// Builds the transport; connects lazily, on the first send.
    pub fn new(settings: &SmtpSettings) -> Result<Smtp, SetupError> {
        let from: Mailbox = settings.from.parse().map_err(SetupError::From)?;
        let tls_error = |source| SetupError::Tls {
            host: settings.host.clone(),
            source,
        };
        let builder = match settings.tls {
            TlsMode::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            }
            TlsMode::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                    .map_err(tls_error)?
            }
            TlsMode::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host).map_err(tls_error)?
            }
        };
        let mut builder = builder.port(settings.port).timeout(Some(SEND_TIMEOUT));
        let username = settings.username.as_deref().filter(|u| !u.is_empty());
        let password = settings
            .password
            .as_ref()
            .filter(|p| !p.expose().is_empty());
        if let (Some(username), Some(password)) = (username, password) {
            builder = builder.credentials(Credentials::new(
                username.to_owned(),
                password.expose().to_owned(),
            ));
        }
        Ok(Smtp {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one job, giving up after [`SEND_TIMEOUT`].
    pub async fn send(&self, job: &MailJob) -> Result<(), SendError> {
        let message = build_message(&self.from, job)?;
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(err)) => Err(SendError::Smtp(err)),
            Err(_elapsed) => Err(SendError::Timeout(SEND_TIMEOUT)),
        }
    }
}

/// The message for one job: plain text and HTML as alternatives, so every
/// client shows something readable.
pub fn build_message(from: &Mailbox, job: &MailJob) -> Result<Message, SendError> {
    let to: Mailbox = job.to.trim().parse().map_err(SendError::Recipient)?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(job.subject.as_str())
        // Derived from the job, so that if a crash makes us send a job twice
        // the copies share one Message-ID and mail clients can fold them.
        .message_id(message_id(job, from))
        .multipart(MultiPart::alternative_plain_html(
            job.text.clone(),
            job.html.clone(),
        ))
        .map_err(SendError::Message)
}

/// `None` (a random id from lettre) when nothing of the job id is usable, so
/// that unrelated jobs never share an id.
fn message_id(job: &MailJob, from: &Mailbox) -> Option<String> {
    // Job ids come from other services; keep only what is safe in the
    // local part of a Message-ID.
    let local: String = job
        .job_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (!local.is_empty()).then(|| format!("<{local}@{}>", from.email.domain()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> MailJob {
        MailJob {
            job_id: "0190d5a8-7e1c-7a4b-9f00-5d1f0c2b9a11".into(),
            to: "Ada <ada@example.test>".into(),
            subject: "Your confirmation code".into(),
            text: "Your code is 123456.".into(),
            html: "<p>Your code is <b>123456</b>.</p>".into(),
            created_at_ms: 1_700_000_000_000,
        }
    }

    fn from() -> Mailbox {
        "Switchyard <no-reply@switchyard.local>"
            .parse()
            .expect("a valid mailbox")
    }

    fn formatted(message: &Message) -> String {
        String::from_utf8(message.formatted()).expect("the message is ASCII")
    }

    #[test]
    fn a_message_carries_both_parts() {
        let message = build_message(&from(), &job()).expect("builds");
        let raw = formatted(&message);
        assert!(
            raw.contains("Content-Type: multipart/alternative;"),
            "{raw}"
        );
        let plain = raw
            .find("Content-Type: text/plain; charset=utf-8")
            .expect("a text part");
        let html = raw
            .find("Content-Type: text/html; charset=utf-8")
            .expect("an HTML part");
        assert!(
            plain < html,
            "the plain part comes first, so clients prefer HTML"
        );
        assert!(raw.contains("Your code is 123456."));
        assert!(raw.contains("<p>Your code is <b>123456</b>.</p>"));
    }

    #[test]
    fn a_message_has_the_right_headers() {
        let message = build_message(&from(), &job()).expect("builds");
        let raw = formatted(&message);
        assert!(
            raw.contains("From: Switchyard <no-reply@switchyard.local>\r\n"),
            "{raw}"
        );
        assert!(raw.contains("To: Ada <ada@example.test>\r\n"), "{raw}");
        assert!(raw.contains("Subject: Your confirmation code\r\n"), "{raw}");
        assert!(raw.contains("MIME-Version: 1.0\r\n"), "{raw}");
        assert!(raw.contains("Date: "), "{raw}");
        assert!(
            raw.contains("Message-ID: <0190d5a8-7e1c-7a4b-9f00-5d1f0c2b9a11@switchyard.local>\r\n"),
            "{raw}"
        );
        let envelope = message.envelope();
        assert_eq!(envelope.to().len(), 1);
        assert_eq!(envelope.to()[0].to_string(), "ada@example.test");
        assert_eq!(
            envelope.from().map(ToString::to_string).as_deref(),
            Some("no-reply@switchyard.local")
        );
    }

    #[test]
    fn a_non_ascii_subject_is_encoded() {
        let mut job = job();
        job.subject = "Bestätigung\r\nBcc: someone@example.test".into();
        let raw = formatted(&build_message(&from(), &job).expect("builds"));
        assert!(
            !raw.contains("\r\nBcc:"),
            "a subject must not inject headers: {raw}"
        );
        assert!(raw.contains("Subject: =?utf-8?"), "{raw}");
    }

    #[test]
    fn a_bad_recipient_is_a_permanent_failure() {
        let mut job = job();
        job.to = "not an address".into();
        let err = build_message(&from(), &job).expect_err("must not build");
        assert!(matches!(err, SendError::Recipient(_)));
        assert!(err.is_permanent());
        assert!(!SendError::Timeout(SEND_TIMEOUT).is_permanent());
    }

    #[test]
    fn message_ids_keep_only_safe_characters() {
        let mut job = job();
        job.job_id = "a<b>@c d".into();
        assert_eq!(
            message_id(&job, &from()).as_deref(),
            Some("<abcd@switchyard.local>")
        );
        job.job_id = "<>".into();
        assert_eq!(message_id(&job, &from()), None);
    }
}
