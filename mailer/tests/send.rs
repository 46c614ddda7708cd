//! The mailer against real Redis, FerretDB and MailDev, each started here on
//! free loopback ports in a temporary directory and killed on drop. The
//! mailer itself runs in this process.
//!
//! Binaries: `redis-server` on PATH, FerretDB and MailDev where `./stack
//! install` puts them; `SWITCHYARD_REDIS_BIN`, `SWITCHYARD_FERRETDB_BIN` and
//! `SWITCHYARD_MAILDEV_BIN` override. A missing one fails the test: a skipped
//! test would pass without proving anything.

use std::fs::File;
use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailer::handler::DeadLetter;
use mailer::settings::Settings;
use mailer::startup::Application;
use mailer::store::{MailLog, Status};
use serde_json::Value;
use shared_proto::bus::{Bus, ENTRY_FIELD};
use shared_proto::mail::MailJob;
use shared_proto::names::Names;
use shared_proto::settings::Secret;
use tokio_util::sync::CancellationToken;

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_sent_once_even_when_enqueued_twice() {
    let redis = Redis::start();
    let mongo = FerretDb::start();
    let maildev = MailDev::start();
    let mut settings = settings("sent-once", &redis, &mongo);
    settings.smtp.port = maildev.smtp_port;
    let mailer = RunningMailer::start(&settings).await;
    let bus = bus(&settings).await;
    let mail_stream = settings.bus.names().mail_stream();

    let job = job("job-sent-once", "ada@example.test");
    bus.append(&mail_stream, &job).await.expect("enqueue");

    let emails = eventually("the mail to arrive in MailDev", || async {
        let emails = maildev.emails().await;
        (!emails.is_empty()).then_some(emails)
    })
    .await;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    let email = &emails[0];
    assert_eq!(email["subject"], job.subject, "{email:#}");
    assert_eq!(email["to"][0]["address"], "ada@example.test", "{email:#}");
    assert_eq!(
        email["from"][0]["address"], "no-reply@switchyard.local",
        "{email:#}"
    );
    assert_eq!(
        email["headers"]["message-id"], "<job-sent-once@switchyard.local>",
        "{email:#}"
    );
    assert!(
        email["text"]
            .as_str()
            .unwrap_or_default()
            .contains("123456"),
        "the plain part: {email:#}"
    );
    assert!(
        email["html"]
            .as_str()
            .unwrap_or_default()
            .contains("<b>123456</b>"),
        "the HTML part: {email:#}"
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
    let emails = maildev.emails().await;
    assert_eq!(
        emails.len(),
        1,
        "the second copy must be skipped: {emails:#?}"
    );

    mailer.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_cannot_be_sent_goes_to_the_dead_letter_stream() {
    let redis = Redis::start();
    let mongo = FerretDb::start();
    let mut settings = settings("dead-letter", &redis, &mongo);
    settings.smtp.port = closed_port();
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
        let dead = dead_letters(&redis.url, &names).await;
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
    let redis = Redis::start();
    let maildev = MailDev::start();
    // MongoDB is down when the job arrives: its port is chosen, not served.
    let mongo_port = free_port();
    let mut settings = Settings::default();
    settings.redis.url = redis.url.clone();
    settings.mongodb.uri = Secret::new(format!("mongodb://127.0.0.1:{mongo_port}/"));
    settings.mongodb.database = "mailer_waits".into();
    settings.bus.prefix = "test-waits".into();
    settings.bus.claim_idle_ms = 1000;
    settings.smtp.port = maildev.smtp_port;
    let mailer = RunningMailer::start(&settings).await;
    let bus = bus(&settings).await;
    let mail_stream = settings.bus.names().mail_stream();

    let job = job("job-waits", "ada@example.test");
    bus.append(&mail_stream, &job).await.expect("enqueue");
    // Long enough for the check against mail_log to time out at least once.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        maildev.emails().await.is_empty(),
        "nothing is sent while mail_log is unreachable"
    );
    assert_eq!(
        bus.backlog(&mail_stream).await.expect("backlog"),
        1,
        "the job stays pending"
    );

    let _mongo = FerretDb::start_on(mongo_port);
    let emails = eventually("the mail to arrive once MongoDB is up", || async {
        let emails = maildev.emails().await;
        (!emails.is_empty()).then_some(emails)
    })
    .await;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    wait_for_empty_stream(&bus, &mail_stream).await;
    assert_eq!(maildev.emails().await.len(), 1);

    mailer.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sent_record_is_never_overwritten_by_a_dead_one() {
    let mongo = FerretDb::start();
    let mut settings = Settings::default();
    settings.mongodb.uri = Secret::new(mongo.uri.clone());
    settings.mongodb.database = "mailer_store_test".into();
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
fn settings(test: &str, redis: &Redis, mongo: &FerretDb) -> Settings {
    let mut settings = Settings::default();
    settings.redis.url = redis.url.clone();
    settings.mongodb.uri = Secret::new(mongo.uri.clone());
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

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

struct Redis {
    url: String,
    _server: Server,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let mut server = Server::spawn(
            "redis",
            &binary("SWITCHYARD_REDIS_BIN", PathBuf::from("redis-server")),
            |dir| {
                vec![
                    "--port".into(),
                    port.to_string(),
                    "--bind".into(),
                    "127.0.0.1".into(),
                    "--save".into(),
                    String::new(),
                    "--appendonly".into(),
                    "no".into(),
                    "--dir".into(),
                    dir.display().to_string(),
                ]
            },
        );
        server.wait_for_port(port);
        Redis {
            url: format!("redis://127.0.0.1:{port}"),
            _server: server,
        }
    }
}

struct FerretDb {
    uri: String,
    _server: Server,
}

impl FerretDb {
    fn start() -> FerretDb {
        FerretDb::start_on(free_port())
    }

    fn start_on(port: u16) -> FerretDb {
        let mut server = Server::spawn(
            "ferretdb",
            &binary("SWITCHYARD_FERRETDB_BIN", cache_dir().join("bin/ferretdb")),
            |dir| {
                vec![
                    "--handler=sqlite".into(),
                    format!("--sqlite-url=file:{}/", dir.display()),
                    format!("--state-dir={}", dir.display()),
                    format!("--listen-addr=127.0.0.1:{port}"),
                    // Its debug HTTP listener would take 127.0.0.1:8088 in
                    // every test at once.
                    "--debug-addr=-".into(),
                    "--telemetry=disable".into(),
                    "--log-level=warn".into(),
                ]
            },
        );
        server.wait_for_port(port);
        FerretDb {
            uri: format!("mongodb://127.0.0.1:{port}/"),
            _server: server,
        }
    }
}

struct MailDev {
    smtp_port: u16,
    web_port: u16,
    http: reqwest::Client,
    _server: Server,
}

impl MailDev {
    fn start() -> MailDev {
        let smtp_port = free_port();
        let web_port = free_port();
        let mut server = Server::spawn(
            "maildev",
            &binary(
                "SWITCHYARD_MAILDEV_BIN",
                cache_dir().join("maildev/node_modules/.bin/maildev"),
            ),
            |dir| {
                vec![
                    // Otherwise it keeps messages under the shared /tmp/maildev.
                    "--mail-directory".into(),
                    dir.display().to_string(),
                    "--smtp".into(),
                    smtp_port.to_string(),
                    "--ip".into(),
                    "127.0.0.1".into(),
                    "--web".into(),
                    web_port.to_string(),
                    "--web-ip".into(),
                    "127.0.0.1".into(),
                ]
            },
        );
        server.wait_for_port(smtp_port);
        server.wait_for_port(web_port);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .expect("an HTTP client");
        MailDev {
            smtp_port,
            web_port,
            http,
            _server: server,
        }
    }

    /// Every mail MailDev has received.
    async fn emails(&self) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/api/email", self.web_port);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err}"));
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err}"));
        match body {
            Value::Array(emails) => emails,
            other => panic!("GET {url} did not answer with a list: {other}"),
        }
    }
}

/// A child process in a temporary directory of its own, killed on drop.
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn spawn(
        name: &'static str,
        program: &Path,
        args: impl FnOnce(&Path) -> Vec<String>,
    ) -> Server {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mailer-test-{name}-"))
            .tempdir()
            .expect("a temporary directory");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("a data directory");
        let log = dir.path().join("output.log");
        let output = File::create(&log).expect("a log file");
        let child = Command::new(program)
            .args(args(&data))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("a log file"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {name} ({}): {err}. Install it (`./stack install`, or apt-get install redis-server) or point {} at it.",
                    program.display(),
                    env_var_for(name),
                )
            });
        Server {
            name,
            child,
            log,
            _dir: dir,
        }
    }

    /// Waits until something accepts connections on `port`, failing early
    /// (with the server's output) if the server exits.
    fn wait_for_port(&mut self, port: u16) {
        let deadline = Instant::now() + WAIT;
        loop {
            if TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening on {port}:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on 127.0.0.1:{port} within {WAIT:?}:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_var_for(name: &str) -> String {
    format!("SWITCHYARD_{}_BIN", name.to_uppercase())
}

fn binary(env: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or(default)
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWITCHYARD_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set, to find ~/.cache/switchyard");
    PathBuf::from(home).join(".cache/switchyard")
}

/// A port nothing listens on right now. Another process could take it before
/// the server binds it; on a test machine that is rare enough.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A port where connections are refused.
fn closed_port() -> u16 {
    free_port()
}
