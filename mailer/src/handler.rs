//! What happens to one mail job, decided in this order:
//!
//! 1. The same job id already in hand in this process: leave the entry
//!    pending; once the first copy is recorded, the redelivery is skipped.
//! 2. `mail_log` says `sent`: skip it and acknowledge.
//!    `mail_log` unreachable: leave the entry pending. Sending blind could
//!    repeat a mail that went out before a crash.
//! 3. Otherwise send, retrying with exponential backoff while the failure is
//!    transient and attempts remain. The worker keeps the entry ours while we
//!    wait, so no other replica sends it meanwhile.
//! 4. Sent: record `sent`, then acknowledge.
//!    Permanent failure or out of attempts: put the job on the dead-letter
//!    stream, record `dead`, then acknowledge.
//!    Stopping during a pause: leave the entry pending for a living replica.
//!
//! Mail bodies carry confirmation codes; nothing here logs one. That is why
//! jobs are logged field by field and never with `Debug`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use shared_proto::bus::Bus;
use shared_proto::bus::worker::{Delivery, Disposition, EntryHandler};
use shared_proto::mail::MailJob;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::settings::MailerSettings;
use crate::smtp::{SendError, Smtp};
use crate::store::{MailLog, Status};

/// The longest pause between two tries, before jitter.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Tries to record a sent job before giving up on the record.
const RECORD_ATTEMPTS: u32 = 3;

/// How many times a job is tried, and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// At least 1.
    pub max_attempts: u32,
    pub first_backoff: Duration,
}

impl RetryPolicy {
    pub fn new(max_attempts: u32, first_backoff: Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            first_backoff,
        }
    }

    pub fn from_settings(settings: &MailerSettings) -> RetryPolicy {
        RetryPolicy::new(settings.max_attempts, settings.first_backoff())
    }

    /// The pause after the `failures`-th failed try (1-based), before jitter:
    /// the first backoff, doubled per further failure, capped at
    /// [`MAX_BACKOFF`].
    pub fn delay_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first_backoff
            .saturating_mul(1u32 << doublings)
            .min(MAX_BACKOFF)
    }
}

/// Adds up to a tenth at random, so that jobs that failed together (the SMTP
/// server was down) do not all come back at the same instant.
pub fn with_jitter(delay: Duration) -> Duration {
    let spread = u64::try_from(delay.as_millis() / 10).unwrap_or(u64::MAX);
    delay + Duration::from_millis(rand::rng().random_range(0..=spread))
}

/// How the tries for one job ended.
#[derive(Debug)]
pub enum Outcome {
    Sent {
        attempts: u32,
    },
    /// The last error; it says itself whether it was permanent.
    Failed {
        attempts: u32,
        error: SendError,
    },
    /// Stopping was requested while waiting for the next try.
    Stopped {
        attempts: u32,
    },
}

/// Calls `send` (with the 1-based attempt number) until it succeeds, fails
/// permanently, runs out of attempts, or `stop` is cancelled during a pause.
pub async fn send_with_retries<F, Fut>(
    policy: &RetryPolicy,
    stop: &CancellationToken,
    mut send: F,
) -> Outcome
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<(), SendError>>,
{
    let mut attempt = 1;
    loop {
        let error = match send(attempt).await {
            Ok(()) => return Outcome::Sent { attempts: attempt },
            Err(error) => error,
        };
        if error.is_permanent() || attempt >= policy.max_attempts {
            return Outcome::Failed {
                attempts: attempt,
                error,
            };
        }
        let delay = with_jitter(policy.delay_after(attempt));
        warn!(attempt, max_attempts = policy.max_attempts, error = %error, retry_in_ms = delay.as_millis(), "sending failed; will retry");
        tokio::select! {
            _ = stop.cancelled() => return Outcome::Stopped { attempts: attempt },
            _ = tokio::time::sleep(delay) => {}
        }
        attempt += 1;
    }
}

/// A job given up on, as put on the dead-letter stream. The job's fields are
/// at the top level, so an operator can put an entry back on the mail stream
/// as it is (the extra fields are ignored there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    #[serde(flatten)]
    pub job: MailJob,
    /// The last error; never contains the body.
    pub error: String,
    pub attempts: u32,
    pub failed_at_ms: i64,
}

/// The handler of the mail stream.
pub struct MailHandler {
    smtp: Smtp,
    log: MailLog,
    bus: Bus,
    policy: RetryPolicy,
    /// Cancelled when the service is stopping: cuts retry pauses short.
    stop: CancellationToken,
    /// Job ids being handled by this process.
    in_hand: Mutex<HashSet<String>>,
}

impl EntryHandler<MailJob> for MailHandler {
    async fn handle(&self, job: MailJob, delivery: Delivery) -> Disposition {
        let span = info_span!("mail", job_id = %job.job_id, reclaimed = delivery.reclaimed);
        self.handle_job(job).instrument(span).await
    }
}

impl MailHandler {
    pub fn new(
        smtp: Smtp,
        log: MailLog,
        bus: Bus,
        policy: RetryPolicy,
        stop: CancellationToken,
    ) -> MailHandler {
        MailHandler {
            smtp,
            log,
            bus,
            policy,
            stop,
            in_hand: Mutex::new(HashSet::new()),
        }
    }

    async fn handle_job(&self, job: MailJob) -> Disposition {
        let Some(_in_hand) = InHand::take(&self.in_hand, &job.job_id) else {
            info!(
                "the same job is being sent by this process already; leaving this copy for later"
            );
            return Disposition::Retry;
        };

        match self.log.status(&job.job_id).await {
            Ok(Some(Status::Sent)) => {
                info!("already sent; skipping");
                return Disposition::Done(Vec::new());
            }
            Ok(Some(Status::Dead) | None) => {}
            Err(err) => {
                // No hot loop: a pending entry is offered again only after
                // claim_idle.
                warn!(error = %err, "cannot tell whether the job was sent already; leaving it for later");
                return Disposition::Retry;
            }
        }

        match send_with_retries(&self.policy, &self.stop, |_| self.smtp.send(&job)).await {
            Outcome::Sent { attempts } => {
                metrics::counter!("switchyard_mails_sent_total").increment(1);
                self.record_sent(&job, attempts).await;
                info!(attempts, "sent");
                Disposition::Done(Vec::new())
            }
            Outcome::Failed { attempts, error } => self.give_up(job, attempts, &error).await,
            Outcome::Stopped { attempts } => {
                info!(attempts, "stopping; leaving the job for another replica");
                Disposition::Retry
            }
        }
    }

    /// Records the send, trying a few times. If the record cannot be written
    /// the job is still acknowledged: it did go out, and leaving it pending
    /// would only send it again.
    async fn record_sent(&self, job: &MailJob, attempts: u32) {
        let mut pause = Duration::from_millis(500);
        for record_attempt in 1..=RECORD_ATTEMPTS {
            match self.log.record_sent(job, attempts).await {
                Ok(()) => return,
                Err(err) if record_attempt < RECORD_ATTEMPTS => {
                    warn!(error = %err, "recording the sent mail failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(err) => {
                    error!(error = %err, job_id = %job.job_id, "the mail was sent but could not be recorded; a redelivery of this job would send it again");
                }
            }
        }
    }

    async fn give_up(&self, job: MailJob, attempts: u32, last_error: &SendError) -> Disposition {
        let error_text = last_error.to_string();
        let dead = DeadLetter {
            job,
            error: error_text.clone(),
            attempts,
            failed_at_ms: shared_proto::now_ms(),
        };
        metrics::counter!("switchyard_mails_failed_total").increment(1);
        let stream = self.bus.names().mail_dead_letters();
        if let Err(err) = self.bus.append(&stream, &dead).await {
            warn!(error = %err, "could not put the job on the dead-letter stream; leaving it for later");
            return Disposition::Retry;
        }
        let job = &dead.job;
        if let Err(err) = self.log.record_dead(job, attempts, &error_text).await {
            // The dead-letter stream is the record that matters to operators.
            warn!(error = %err, "could not record the dead mail in mail_log");
        }
        error!(
            job_id = %job.job_id,
            to = %job.to,
            subject = %job.subject,
            attempts,
            permanent = last_error.is_permanent(),
            error = %error_text,
            dead_letters = %stream,
            "giving up on a mail; it is on the dead-letter stream",
        );
        Disposition::Done(Vec::new())
    }
}

/// A job id marked as in hand until dropped (also when the handler panics).
struct InHand<'a> {
    set: &'a Mutex<HashSet<String>>,
    job_id: String,
}

impl<'a> InHand<'a> {
    fn take(set: &'a Mutex<HashSet<String>>, job_id: &str) -> Option<InHand<'a>> {
        lock(set).insert(job_id.to_owned()).then(|| InHand {
            set,
            job_id: job_id.to_owned(),
        })
    }
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.job_id);
    }
}

fn lock(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    // The set holds plain strings; a panic elsewhere cannot leave it torn.
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn backoff_doubles_from_the_first_delay() {
        let policy = RetryPolicy::new(5, ms(500));
        let schedule: Vec<_> = (1..=6)
            .map(|failures| policy.delay_after(failures))
            .collect();
        assert_eq!(
            schedule,
            [ms(500), ms(1000), ms(2000), ms(4000), ms(8000), ms(16_000)]
        );
    }

    #[test]
    fn backoff_is_capped() {
        let policy = RetryPolicy::new(100, ms(500));
        assert_eq!(policy.delay_after(7), MAX_BACKOFF);
        assert_eq!(policy.delay_after(40), MAX_BACKOFF);
        assert_eq!(policy.delay_after(u32::MAX), MAX_BACKOFF, "no overflow");
        let huge = RetryPolicy::new(3, Duration::from_secs(3600));
        assert_eq!(huge.delay_after(1), MAX_BACKOFF);
    }

    #[test]
    fn at_least_one_attempt() {
        assert_eq!(RetryPolicy::new(0, ms(1)).max_attempts, 1);
        let settings = MailerSettings::default();
        assert_eq!(
            RetryPolicy::from_settings(&settings),
            RetryPolicy::new(5, ms(500))
        );
    }

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        for _ in 0..1000 {
            let delay = with_jitter(ms(1000));
            assert!(delay >= ms(1000) && delay <= ms(1100), "{delay:?}");
        }
        assert_eq!(with_jitter(Duration::ZERO), Duration::ZERO);
    }

    fn transient() -> SendError {
        SendError::Timeout(Duration::from_secs(30))
    }

    fn permanent() -> SendError {
        let bad = "not an address"
            .parse::<lettre::message::Mailbox>()
            .expect_err("invalid");
        SendError::Recipient(bad)
    }

    async fn run(
        policy: RetryPolicy,
        stop: &CancellationToken,
        fail_first: u32,
        failure: fn() -> SendError,
    ) -> (Outcome, u32) {
        let calls = AtomicU32::new(0);
        let outcome = send_with_retries(&policy, stop, |attempt| {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            assert_eq!(attempt, call, "attempts are numbered from 1");
            async move {
                if call <= fail_first {
                    Err(failure())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        (outcome, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried() {
        let stop = CancellationToken::new();
        let (outcome, calls) = run(RetryPolicy::new(3, ms(1)), &stop, 2, transient).await;
        assert!(
            matches!(outcome, Outcome::Sent { attempts: 3 }),
            "{outcome:?}"
        );
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn retries_stop_at_max_attempts() {
        let stop = CancellationToken::new();
        let (outcome, calls) = run(RetryPolicy::new(3, ms(1)), &stop, u32::MAX, transient).await;
        assert!(
            matches!(outcome, Outcome::Failed { attempts: 3, ref error } if !error.is_permanent()),
            "{outcome:?}"
        );
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried() {
        let stop = CancellationToken::new();
        let (outcome, calls) = run(RetryPolicy::new(5, ms(1)), &stop, u32::MAX, permanent).await;
        assert!(
            matches!(outcome, Outcome::Failed { attempts: 1, ref error } if error.is_permanent()),
            "{outcome:?}"
        );
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn stopping_cuts_a_pause_short() {
        let stop = CancellationToken::new();
        stop.cancel();
        let started = std::time::Instant::now();
        let (outcome, calls) = run(
            RetryPolicy::new(5, Duration::from_secs(20)),
            &stop,
            u32::MAX,
            transient,
        )
        .await;
        assert!(
            matches!(outcome, Outcome::Stopped { attempts: 1 }),
            "{outcome:?}"
        );
        assert_eq!(calls, 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_dead_letter_can_be_read_back_as_a_job() {
        let job = MailJob {
            job_id: "j1".into(),
            to: "ada@example.test".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "h".into(),
            created_at_ms: 1,
        };
        let dead = DeadLetter {
            job: job.clone(),
            error: "smtp: Connection error".into(),
            attempts: 2,
            failed_at_ms: 2,
        };
        let encoded = serde_json::to_string(&dead).expect("encodes");
        let as_job: MailJob = serde_json::from_str(&encoded).expect("a dead letter is a job too");
        assert_eq!(as_job, job);
        let back: DeadLetter = serde_json::from_str(&encoded).expect("decodes");
        assert_eq!(back, dead);
    }

    #[test]
    fn a_job_id_is_in_hand_once() {
        let set = Mutex::new(HashSet::new());
        let first = InHand::take(&set, "j1").expect("free");
        assert!(InHand::take(&set, "j1").is_none());
        assert!(InHand::take(&set, "j2").is_some());
        drop(first);
        assert!(InHand::take(&set, "j1").is_some(), "released on drop");
    }
}
