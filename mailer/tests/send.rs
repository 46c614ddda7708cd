//! The mailer against real Redis, FerretDB and MailDev, started by the
//! shared test harness (`switchyard-tests`) on free loopback ports and killed
//! on drop. The mailer itself runs in this process.

use std::future::Future;
use std::time::{Duration, Instant};

use mailer::handler::DeadLetter;
use mailer::settings::Settings;
use mailer::startup::Application;
use mailer::store::{MailLog, Status};
use shared_proto::bus::{Bus, ENTRY_FIELD};
use shared_proto::mail::MailJob;
use shared_proto::names::Names;
use shared_proto::settings::Secret;
use switchyard_tests::{FERRETDB, Stack};
use tokio_util::sync::CancellationToken;

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(30);

/// Redis, FerretDB and MailDev, and no Switchyard service.
async fn infrastructure() -> Stack {
    Stack::builder().infrastructure_only().start().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_sent_once_even_when_enqueued_twice() {
    let stack = infrastructure().await;
    let maildev = stack.maildev();
    let mut settings = settings("sent-once", &stack);
    settings.smtp.port = maildev.smtp_port();
    let mailer = RunningMailer::start(&settings).await;
    let bus = bus(&settings).await;
    let mail_stream = settings.bus.names().mail_stream();

    let job = job("job-sent-once", "ada@example.test");
    bus.append(&mail_stream, &job).await.expect("enqueue");

    let emails = eventually("the mail to arrive in MailDev", || async {
        let emails = maildev.mails().await;
        (!emails.is_empty()).then_some(emails)
    })
    .await;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    let email = &emails[0];
    assert_eq!(email.subject, job.subject, "{email:#?}");
    assert_eq!(addresses(&email.to), ["ada@example.test"], "{email:#?}");
    assert_eq!(
        addresses(&email.from),
        ["no-reply@switchyard.local"],
        "{email:#?}"
    );
    assert_eq!(
        email.headers.get("message-id").and_then(|id| id.as_str()),
        Some("<job-sent-once@switchyard.local>"),
        "{email:#?}"
    );
    assert!(
        email.text().contains("123456"),
        "the plain part: {email:#?}"
    );
    assert!(
        email
            .html
            .as_deref()
            .unwrap_or_default()
            .contains("<b>123456</b>"),
        "the HTML part: {email:#?}"
    );

    // Acknowledged only after mail_log says `sent`, so once the stream is
    // empty the record is there.
    wait_for_empty_stream(&bus, &mail_stream).await;
    let log = MailLog::connect(&settings.mongodb).await.expect("mail_log");
    assert_eq!(
        log.status(&job.job_id).await.expect("status"),
        Some(Status::Sent)
    );

    // The same job again, as after a crash between sending and acknowledging.
    bus.append(&mail_stream, &job).await.expect("enqueue again");
    wait_for_empty_stream(&bus, &mail_stream).await;
    let emails = maildev.mails().await;
    assert_eq!(
        emails.len(),
        1,
        "the second copy must be skipped: {emails:#?}"
    );

    mailer.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_cannot_be_sent_goes_to_the_dead_letter_stream() {
    let stack = infrastructure().await;
    let mut settings = settings("dead-letter", &stack);
    // A port nothing listens on.
    settings.smtp.port = switchyard_tests::ports::free_port();
    settings.mailer.max_attempts = 2;
    settings.mailer.backoff_ms = 50;
    let mailer = RunningMailer::start(&settings).await;
    let bus = bus(&settings).await;
    let names = settings.bus.names();

    // Unreachable server: retried, then given up on.
    let unreachable = job("job-unreachable", "ada@example.test");
    // A recipient that is no address: given up on at once.
    let malformed = job("job-malformed", "not an address");
    bus.append(&names.mail_stream(), &unreachable)
        .await
        .expect("enqueue");
    bus.append(&names.mail_stream(), &malformed)
        .await
        .expect("enqueue");

    let dead = eventually("both jobs on the dead-letter stream", || async {
        let dead = dead_letters(stack.redis_url(), &names).await;
        (dead.len() >= 2).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 2, "{dead:#?}");
    let find = |job_id: &str| {
        dead.iter()
            .find(|letter| letter.job.job_id == job_id)
            .unwrap_or_else(|| panic!("{job_id} is not on the dead-letter stream: {dead:#?}"))
    };
    let letter = find("job-unreachable");
    assert_eq!(letter.job, unreachable);
    assert_eq!(letter.attempts, 2, "tried MAX_ATTEMPTS times");
    assert!(!letter.error.is_empty());
    assert!(
        !letter.error.contains("123456"),
        "the error must not carry the body"
    );
    let letter = find("job-malformed");
    assert_eq!(letter.attempts, 1, "a permanent failure is not retried");
    assert!(letter.error.contains("recipient"), "{}", letter.error);

    wait_for_empty_stream(&bus, &names.mail_stream()).await;
    let log = MailLog::connect(&settings.mongodb).await.expect("mail_log");
    assert_eq!(
        log.status("job-unreachable").await.expect("status"),
        Some(Status::Dead)
    );
    assert_eq!(
        log.status("job-malformed").await.expect("status"),
        Some(Status::Dead)
    );

    mailer.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_waits_for_mail_log_instead_of_sending_blind() {
    let mut stack = infrastructure().await;
    // MongoDB is down when the job arrives.
    stack.stop_service(FERRETDB, 0).await;
    let mut settings = settings("waits", &stack);
    settings.bus.claim_idle_ms = 1000;
    settings.smtp.port = stack.maildev().smtp_port();
    let mailer = RunningMailer::start(&settings).await;
    let bus = bus(&settings).await;
    let mail_stream = settings.bus.names().mail_stream();

    let job = job("job-waits", "ada@example.test");
    bus.append(&mail_stream, &job).await.expect("enqueue");
    // Long enough for the check against mail_log to time out at least once.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        stack.maildev().mails().await.is_empty(),
        "nothing is sent while mail_log is unreachable"
    );
    assert_eq!(
        bus.backlog(&mail_stream).await.expect("backlog"),
        1,
        "the job stays pending"
    );

    stack.start_service(FERRETDB, 0).await;
    let maildev = stack.maildev();
    let emails = eventually("the mail to arrive once MongoDB is up", || async {
        let emails = maildev.mails().await;
        (!emails.is_empty()).then_some(emails)
    })
    .await;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    wait_for_empty_stream(&bus, &mail_stream).await;
    assert_eq!(maildev.mails().await.len(), 1);

    mailer.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sent_record_is_never_overwritten_by_a_dead_one() {
    let stack = infrastructure().await;
    let settings = settings("store", &stack);
    let log = MailLog::connect(&settings.mongodb).await.expect("mail_log");
    let job = job("job-store", "ada@example.test");

    assert_eq!(log.status(&job.job_id).await.expect("status"), None);
    log.record_dead(&job, 2, "smtp: Connection error")
        .await
        .expect("record dead");
    assert_eq!(
        log.status(&job.job_id).await.expect("status"),
        Some(Status::Dead)
    );
    log.record_sent(&job, 1).await.expect("record sent");
    assert_eq!(
        log.status(&job.job_id).await.expect("status"),
        Some(Status::Sent)
    );
    log.record_dead(&job, 5, "late failure of a duplicate")
        .await
        .expect("leaves sent alone");
    assert_eq!(
        log.status(&job.job_id).await.expect("status"),
        Some(Status::Sent)
    );
}

// ---------------------------------------------------------------------------
// Scenario helpers
// ---------------------------------------------------------------------------

fn job(job_id: &str, to: &str) -> MailJob {
    MailJob {
        job_id: job_id.into(),
        to: to.into(),
        subject: "Your Switchyard confirmation code".into(),
        text: "Your code is 123456.".into(),
        html: "<p>Your code is <b>123456</b>.</p>".into(),
        created_at_ms: shared_proto::now_ms(),
    }
}

/// Settings pointing at this test's servers, under a prefix of its own.
fn settings(test: &str, stack: &Stack) -> Settings {
    let mut settings = Settings::default();
    settings.redis.url = stack.redis_url().to_owned();
    settings.mongodb.uri = Secret::new(stack.mongo_uri().to_owned());
    settings.mongodb.database = format!("mailer_{}", test.replace('-', "_"));
    settings.bus.prefix = format!("test-{test}");
    settings.smtp.host = "127.0.0.1".into();
    settings
}

async fn bus(settings: &Settings) -> Bus {
    let give_up = CancellationToken::new();
    let connecting = Bus::connect(&settings.redis.url, settings.bus.names(), &give_up);
    match tokio::time::timeout(WAIT, connecting).await {
        Ok(Ok(bus)) => bus,
        Ok(Err(err)) => panic!("connecting to redis: {err:#}"),
        Err(_) => panic!("redis did not answer within {WAIT:?}"),
    }
}

async fn wait_for_empty_stream(bus: &Bus, stream: &str) {
    eventually("the mail stream to be fully acknowledged", || async {
        (bus.backlog(stream).await.ok() == Some(0)).then_some(())
    })
    .await;
}

async fn dead_letters(redis_url: &str, names: &Names) -> Vec<DeadLetter> {
    let client = redis::Client::open(redis_url).expect("redis url");
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return Vec::new();
    };
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(names.mail_dead_letters())
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .expect("XRANGE");
    reply
        .ids
        .iter()
        .map(|entry| {
            let body: String = entry.get(ENTRY_FIELD).expect("a dead letter has a body");
            serde_json::from_str(&body)
                .unwrap_or_else(|err| panic!("a dead letter that does not decode ({err}): {body}"))
        })
        .collect()
}

/// Polls `check` until it returns a value, for at most [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The mailer, running in this process until stopped.
struct RunningMailer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningMailer {
    async fn start(settings: &Settings) -> RunningMailer {
        shared_proto::telemetry::init(&settings.log);
        let stop = CancellationToken::new();
        let application = tokio::time::timeout(WAIT, Application::build(settings, stop.clone()))
            .await
            .expect("the mailer did not start in time")
            .expect("the mailer starts");
        let task = tokio::spawn(application.run_until_stopped());
        RunningMailer { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the mailer did not stop in time")
            .expect("the mailer task did not panic");
    }
}

fn addresses(list: &[switchyard_tests::mail::Address]) -> Vec<&str> {
    list.iter().map(|a| a.address.as_str()).collect()
}
