//! Reading what the mailer sent, through MailDev's REST API.
//!
//! [`MailDev`] is a cheap handle on one MailDev instance: the mails it caught,
//! waiting for mails to arrive, and the confirmation code inside the latest
//! one. [`extract_confirmation_code`] knows the one line of the mail body the
//! tests rely on.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::{Instant, sleep};

use switchyard_launcher::infra::loopback;
use switchyard_launcher::probe::http_client;

/// The mailer writes the code on its own line, after this text.
pub const CODE_LINE_PREFIX: &str = "Your confirmation code:";

/// How long [`MailDev::confirmation_code`] waits for a first mail.
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(20);

/// The code on the line `Your confirmation code: <CODE>` of a mail's text,
/// where `<CODE>` is one or more ASCII letters and digits. `None` if no line
/// has that form.
pub fn extract_confirmation_code(text: &str) -> Option<&str> {
    text.lines().find_map(|line| {
        let code = line.trim().strip_prefix(CODE_LINE_PREFIX)?.trim();
        let well_formed = !code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric());
        well_formed.then_some(code)
    })
}

/// One mail as MailDev reports it (the fields tests look at).
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    #[serde(default)]
    pub id: String,
    /// When MailDev received it (ISO 8601).
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub from: Vec<Address>,
    #[serde(default)]
    pub to: Vec<Address>,
    /// Plain-text body, decoded.
    #[serde(default)]
    pub text: Option<String>,
    /// HTML body, as MailDev sanitised it.
    #[serde(default)]
    pub html: Option<String>,
    /// What the SMTP client said in `MAIL FROM` / `RCPT TO`.
    #[serde(default)]
    pub envelope: Envelope,
    /// Raw headers, names in lower case.
    #[serde(default)]
    pub headers: serde_json::Map<String, serde_json::Value>,
}

/// A mailbox in a header or the envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct Address {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// The SMTP envelope of a mail.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub to: Vec<Address>,
}

impl Mail {
    /// Whether `address` is a recipient, in the `To` header or the envelope
    /// (compared without regard to case).
    pub fn is_to(&self, address: &str) -> bool {
        self.to
            .iter()
            .chain(&self.envelope.to)
            .any(|a| a.address.eq_ignore_ascii_case(address))
    }

    /// The text body, or an empty string if the mail has none.
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or_default()
    }

    /// The confirmation code in the text body, if there is one.
    pub fn confirmation_code(&self) -> Option<&str> {
        extract_confirmation_code(self.text())
    }
}

/// A handle on one MailDev instance; cheap to clone.
#[derive(Debug, Clone)]
pub struct MailDev {
    smtp_port: u16,
    web_port: u16,
    http: reqwest::Client,
}

impl MailDev {
    pub(crate) fn new(smtp_port: u16, web_port: u16) -> Self {
        Self {
            smtp_port,
            web_port,
            http: http_client(),
        }
    }

    /// Where MailDev accepts SMTP (no TLS, no authentication).
    pub fn smtp_addr(&self) -> SocketAddr {
        loopback(self.smtp_port)
    }

    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// The port of the web interface and REST API.
    pub fn web_port(&self) -> u16 {
        self.web_port
    }

    /// Base URL of the web interface and REST API, e.g. `http://127.0.0.1:41234`.
    pub fn web_url(&self) -> String {
        format!("http://{}", loopback(self.web_port))
    }

    /// Every mail caught so far, oldest first.
    ///
    /// # Panics
    /// If MailDev does not answer or answers something other than a list of mails.
    pub async fn mails(&self) -> Vec<Mail> {
        let url = format!("{}/api/email", self.web_url());
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}; is MailDev still running?"));
        assert!(
            response.status().is_success(),
            "GET {url} answered {}",
            response.status()
        );
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url} did not return a list of mails: {e}"))
    }

    /// The mails to `address`, oldest first.
    pub async fn mails_to(&self, address: &str) -> Vec<Mail> {
        self.mails()
            .await
            .into_iter()
            .filter(|mail| mail.is_to(address))
            .collect()
    }

    /// Waits until at least `count` mails to `address` have arrived and
    /// returns all mails to it, oldest first.
    ///
    /// # Panics
    /// If they have not arrived within `limit`.
    pub async fn wait_for_mail(&self, address: &str, count: usize, limit: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + limit;
        loop {
            let mails = self.mails_to(address).await;
            if mails.len() >= count {
                return mails;
            }
            if Instant::now() >= deadline {
                let all: Vec<String> = self
                    .mails()
                    .await
                    .iter()
                    .map(|m| {
                        let to: Vec<&str> = m.to.iter().map(|a| a.address.as_str()).collect();
                        format!("{:?} to {}", m.subject, to.join(","))
                    })
                    .collect();
                panic!(
                    "expected {count} mail(s) to {address} within {limit:?}, got {}. \
                     All mails caught: [{}]. Check the mailer's log.",
                    mails.len(),
                    all.join("; ")
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// The confirmation code in the latest mail to `address`, waiting up to
    /// [`MAIL_TIMEOUT`] for a first mail. After a resend, wait for the second
    /// mail with [`wait_for_mail`](Self::wait_for_mail) first.
    ///
    /// # Panics
    /// If no mail arrives, or the latest has no code line.
    pub async fn confirmation_code(&self, address: &str) -> String {
        let mails = self.wait_for_mail(address, 1, MAIL_TIMEOUT).await;
        let latest = mails
            .last()
            .expect("wait_for_mail returned at least one mail");
        latest
            .confirmation_code()
            .unwrap_or_else(|| {
                panic!(
                    "the latest mail to {address} ({:?}) has no line `{CODE_LINE_PREFIX} <CODE>`; its text is:\n{}",
                    latest.subject,
                    latest.text()
                )
            })
            .to_owned()
    }

    /// The confirmation code in the `nth` mail to `address` (1 for the
    /// first), waiting up to [`MAIL_TIMEOUT`] for that mail to arrive; e.g.
    /// `nth_confirmation_code(address, 2)` after one resend.
    ///
    /// # Panics
    /// If `nth` is 0, the mail does not arrive, or it has no code line.
    pub async fn nth_confirmation_code(&self, address: &str, nth: usize) -> String {
        assert!(nth > 0, "mails are counted from 1");
        let mails = self.wait_for_mail(address, nth, MAIL_TIMEOUT).await;
        let mail = &mails[nth - 1];
        mail.confirmation_code()
            .unwrap_or_else(|| {
                panic!(
                    "mail {nth} to {address} ({:?}) has no line `{CODE_LINE_PREFIX} <CODE>`; its text is:\n{}",
                    mail.subject,
                    mail.text()
                )
            })
            .to_owned()
    }

    /// Every mail caught, once at least `at_least` have arrived and then no
    /// new one for `quiet`: how a test tells "all mails were sent, and no
    /// duplicate is on its way" apart from "some are still coming".
    ///
    /// # Panics
    /// If fewer than `at_least` arrived within `limit`, or mails were still
    /// arriving at `limit`.
    pub async fn settled_mails(
        &self,
        at_least: usize,
        quiet: Duration,
        limit: Duration,
    ) -> Vec<Mail> {
        let deadline = Instant::now() + limit;
        let mut last_count = usize::MAX;
        let mut unchanged_since = Instant::now();
        loop {
            let mails = self.mails().await;
            let now = Instant::now();
            if mails.len() != last_count {
                last_count = mails.len();
                unchanged_since = now;
            } else if mails.len() >= at_least && now - unchanged_since >= quiet {
                return mails;
            }
            assert!(
                now < deadline,
                "mails had not settled after {limit:?}: {} caught, at least {at_least} expected, \
                 the last change {:?} ago. Check the mailer's log.",
                mails.len(),
                now - unchanged_since
            );
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes every mail caught so far.
    pub async fn clear(&self) {
        let url = format!("{}/api/email/all", self.web_url());
        let response = self
            .http
            .delete(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {url}: {e}; is MailDev still running?"));
        assert!(
            response.status().is_success(),
            "DELETE {url} answered {}",
            response.status()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{Mail, extract_confirmation_code};

    #[test]
    fn finds_the_code_on_its_own_line() {
        let text = "Hello,\n\nYour confirmation code: X7KQ2P\n\nIt expires in 15 minutes.\n";
        assert_eq!(extract_confirmation_code(text), Some("X7KQ2P"));
    }

    #[test]
    fn tolerates_crlf_and_surrounding_spaces() {
        let text = "Welcome!\r\n   Your confirmation code:   ab12Cd9  \r\nBye\r\n";
        assert_eq!(extract_confirmation_code(text), Some("ab12Cd9"));
    }

    #[test]
    fn rejects_lines_without_a_well_formed_code() {
        assert_eq!(extract_confirmation_code(""), None);
        assert_eq!(extract_confirmation_code("No code here."), None);
        assert_eq!(extract_confirmation_code("Your confirmation code:"), None);
        assert_eq!(
            extract_confirmation_code("Your confirmation code: AB-12"),
            None
        );
        assert_eq!(
            extract_confirmation_code("Your confirmation code: AB 12"),
            None
        );
        assert_eq!(
            extract_confirmation_code("See: Your confirmation code: AB12"),
            None
        );
    }

    #[test]
    fn reads_maildev_json_and_matches_recipients_without_case() {
        let json = r#"{
            "id": "aB3dE6gH", "time": "2026-01-01T00:00:00.000Z", "subject": "Confirm",
            "from": [{"address": "no-reply@switchyard.local", "name": "Switchyard"}],
            "to": [{"address": "Ana@Example.com", "name": ""}],
            "text": "Your confirmation code: Q9W8E7\n", "html": "<p>x</p>",
            "headers": {"subject": "Confirm"}, "attachments": [],
            "envelope": {"from": {"address": "no-reply@switchyard.local", "args": false},
                         "to": [{"address": "ana@example.com", "args": false}]}
        }"#;
        let mail: Mail = serde_json::from_str(json).expect("MailDev's mail JSON parses");
        assert!(mail.is_to("ana@example.com"));
        assert!(!mail.is_to("bob@example.com"));
        assert_eq!(mail.confirmation_code(), Some("Q9W8E7"));
    }
}
