//! The test infrastructure itself: Redis, FerretDB and MailDev start on free
//! ports and do their jobs, so that a failing end-to-end test points at the
//! product rather than at the harness.

use std::net::SocketAddr;
use std::time::Duration;

use mongodb::bson::{Document, doc};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::timeout;

use switchyard_tests::{FERRETDB, REDIS, Stack};

const SMTP_STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn infrastructure_starts_and_answers() {
    let stack = Stack::builder().infrastructure_only().start().await;

    // Redis answers.
    let mut redis = stack.redis().await;
    let pong: String = redis::cmd("PING")
        .query_async(&mut redis)
        .await
        .expect("Redis answers PING");
    assert_eq!(pong, "PONG");

    // FerretDB stores and finds a document.
    let probes = stack.mongo().collection::<Document>("infrastructure_probe");
    probes
        .insert_one(doc! { "_id": "probe-1", "answer": 42, "tags": ["a", "b"] })
        .await
        .expect("FerretDB accepts an insert");
    let found = probes
        .find_one(doc! { "_id": "probe-1" })
        .await
        .expect("FerretDB answers a find")
        .expect("the inserted document is found");
    assert_eq!(found.get_i32("answer").expect("answer is an int32"), 42);

    // MailDev catches a mail sent over plain SMTP and serves it back.
    let maildev = stack.maildev();
    assert!(
        maildev.mails().await.is_empty(),
        "a new MailDev has no mail"
    );
    send_mail(
        maildev.smtp_addr(),
        "no-reply@switchyard.local",
        "ana@example.com",
        "Confirm your Switchyard account",
        "Hello Ana,\r\n\r\nYour confirmation code: K7Q2ZP\r\n\r\nIt expires soon.\r\n",
    )
    .await;
    let mails = maildev
        .wait_for_mail("ana@example.com", 1, Duration::from_secs(10))
        .await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject, "Confirm your Switchyard account");
    assert!(maildev.mails_to("bob@example.com").await.is_empty());
    assert_eq!(maildev.confirmation_code("ana@example.com").await, "K7Q2ZP");
}

#[tokio::test]
async fn infrastructure_survives_being_stopped_and_started() {
    let mut stack = Stack::builder().infrastructure_only().start().await;
    let probes = stack.mongo().collection::<Document>("restart_probe");
    probes
        .insert_one(doc! { "_id": "kept" })
        .await
        .expect("FerretDB accepts an insert");

    // A crashed FerretDB comes back on the same port with its data.
    stack.kill_service(FERRETDB, 0).await;
    assert!(!stack.is_running(FERRETDB, 0));
    stack.start_service(FERRETDB, 0).await;
    let found = probes
        .find_one(doc! { "_id": "kept" })
        .await
        .expect("FerretDB answers after a restart");
    assert!(found.is_some(), "FerretDB kept its data across a restart");

    // A stopped Redis refuses connections, and answers again once started.
    stack.stop_service(REDIS, 0).await;
    let url = stack.redis_url().to_owned();
    let refused = redis::Client::open(url.as_str())
        .expect("a valid Redis URL")
        .get_multiplexed_async_connection()
        .await;
    assert!(refused.is_err(), "a stopped Redis accepts no connection");
    stack.start_service(REDIS, 0).await;
    let mut redis = stack.redis().await;
    let pong: String = redis::cmd("PING")
        .query_async(&mut redis)
        .await
        .expect("Redis answers PING after a restart");
    assert_eq!(pong, "PONG");
}

/// Sends one plain-text mail with a minimal SMTP dialogue.
async fn send_mail(server: SocketAddr, from: &str, to: &str, subject: &str, body: &str) {
    let stream = timeout(SMTP_STEP_TIMEOUT, TcpStream::connect(server))
        .await
        .expect("SMTP connect in time")
        .expect("SMTP server accepts the connection");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);

    expect_reply(&mut read, 220).await;
    command(&mut write, "EHLO switchyard-tests").await;
    expect_reply(&mut read, 250).await;
    command(&mut write, &format!("MAIL FROM:<{from}>")).await;
    expect_reply(&mut read, 250).await;
    command(&mut write, &format!("RCPT TO:<{to}>")).await;
    expect_reply(&mut read, 250).await;
    command(&mut write, "DATA").await;
    expect_reply(&mut read, 354).await;
    let message = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n."
    );
    command(&mut write, &message).await;
    expect_reply(&mut read, 250).await;
    command(&mut write, "QUIT").await;
    expect_reply(&mut read, 221).await;
}

async fn command(write: &mut OwnedWriteHalf, line: &str) {
    let wire = format!("{line}\r\n");
    timeout(SMTP_STEP_TIMEOUT, write.write_all(wire.as_bytes()))
        .await
        .expect("SMTP write in time")
        .expect("SMTP write succeeds");
}

/// Reads one (possibly multi-line) SMTP reply and checks its code.
async fn expect_reply(read: &mut BufReader<OwnedReadHalf>, code: u16) {
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        let n = timeout(SMTP_STEP_TIMEOUT, read.read_line(&mut line))
            .await
            .expect("SMTP reply in time")
            .expect("SMTP read succeeds");
        assert!(
            n > 0,
            "SMTP server closed the connection; reply so far: {reply:?}"
        );
        reply.push_str(&line);
        // "250-..." continues a reply, "250 ..." ends it.
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    assert!(
        reply.starts_with(&code.to_string()),
        "expected SMTP {code}, got {reply:?}"
    );
}
