//! Confirmation codes from MailDev's REST API.
//!
//! One poller reads `GET /api/email`, keeps the code of every new mail by
//! recipient and deletes the mails it has read (`DELETE /api/email/<id>`), so
//! each poll stays small however many accounts a run signs up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Failure;

/// The mailer writes the code on its own line, after this text.
const CODE_PREFIX: &str = "Your confirmation code:";
const POLL_EVERY: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
struct Mail {
    #[serde(default)]
    id: String,
    #[serde(default)]
    to: Vec<Address>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Address {
    #[serde(default)]
    address: String,
}

/// The code on the line `Your confirmation code: <CODE>`.
pub fn extract_code(text: &str) -> Option<&str> {
    text.lines().find_map(|line| {
        let code = line.trim().strip_prefix(CODE_PREFIX)?.trim();
        (!code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric())).then_some(code)
    })
}

/// Codes caught so far, filled by a background poller until dropped.
pub struct Codes {
    codes: Arc<Mutex<HashMap<String, String>>>,
    arrived: Arc<Notify>,
    stop: CancellationToken,
}

impl Codes {
    /// Starts polling MailDev's web API at `base` (e.g. `http://127.0.0.1:1080`).
    pub fn start(base: &str) -> Self {
        let codes = Arc::new(Mutex::new(HashMap::new()));
        let arrived = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(poll(
            base.trim_end_matches('/').to_owned(),
            codes.clone(),
            arrived.clone(),
            stop.clone(),
        ));
        Codes {
            codes,
            arrived,
            stop,
        }
    }

    /// The code mailed to `email`, waiting up to `limit` for it.
    pub async fn code_for(&self, email: &str, limit: Duration) -> Result<String, Failure> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Registered before looking, so a mail arriving in between still wakes us.
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(code) = self
                .codes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&email.to_ascii_lowercase())
            {
                return Ok(code);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Failure::new(
                    "no_mail",
                    format!(
                        "no confirmation mail to {email} within {limit:?}; is the mailer running and MailDev's API reachable?"
                    ),
                ));
            }
        }
    }
}

impl Drop for Codes {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn poll(
    base: String,
    codes: Arc<Mutex<HashMap<String, String>>>,
    arrived: Arc<Notify>,
    stop: CancellationToken,
) {
    let http = match reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            eprintln!("loadgen: cannot build an HTTP client for MailDev: {e}");
            return;
        }
    };
    let list = format!("{base}/api/email");
    while !stop.is_cancelled() {
        let mails: Vec<Mail> = match http.get(&list).send().await {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut read = Vec::new();
        for mail in &mails {
            let Some(code) = mail.text.as_deref().and_then(extract_code) else {
                continue;
            };
            let mut guard = codes.lock().unwrap_or_else(PoisonError::into_inner);
            for to in &mail.to {
                guard.insert(to.address.to_ascii_lowercase(), code.to_owned());
            }
            read.push(mail.id.clone());
        }
        if !read.is_empty() {
            arrived.notify_waiters();
        }
        for id in read {
            let _ = http.delete(format!("{base}/api/email/{id}")).send().await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::extract_code;

    #[test]
    fn the_code_line_is_found() {
        assert_eq!(
            extract_code("Hi\nYour confirmation code: AB12cd\nBye"),
            Some("AB12cd")
        );
        assert_eq!(extract_code("Your confirmation code: A-1"), None);
        assert_eq!(extract_code("nothing"), None);
    }
}
