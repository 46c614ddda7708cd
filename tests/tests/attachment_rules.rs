//! What may be attached, and what the file store keeps: each refusal on the
//! WebSocket says which file and why; an upload cut off half way, or never
//! attached to a message, leaves nothing in GridFS; each user's uploads are
//! bounded in rate and in bytes waiting to be sent.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use serde_json::Value;
use switchyard_tests::chat::{ChatUser, EVENT_TIMEOUT, add_member, assert_refused, befriend};
use switchyard_tests::files::{
    ATTACHMENT_CHUNKS, ATTACHMENT_FILES, download, file_bytes, png, start_upload, upload, uploaded,
};
use switchyard_tests::front_door::{FrontDoor, FrontDoorKind};
use switchyard_tests::{CHAT, Stack, assert_status};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// How long a test waits for the store to reach the state it expects.
const STORE_TIMEOUT: Duration = Duration::from_secs(15);

async fn stack_with(kind: FrontDoorKind, settings: &[(&str, &str)]) -> (Stack, FrontDoor) {
    let mut builder = Stack::builder().gateways(2).chat(true).generous_limits();
    for (key, value) in settings {
        builder = builder.service_env(CHAT, *key, *value);
    }
    let stack = builder.start().await;
    let door = FrontDoor::start(kind, &stack, &[0, 1]).await;
    (stack, door)
}

fn file_id(upload: &Value) -> String {
    upload["fileId"]
        .as_str()
        .unwrap_or_else(|| panic!("no fileId: {upload}"))
        .to_owned()
}

fn message_of(reply: &Value) -> &str {
    reply["message"].as_str().unwrap_or_default()
}

/// Documents of a GridFS collection matching `filter`.
async fn count(stack: &Stack, collection: &str, filter: Document) -> u64 {
    stack
        .mongo()
        .collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap_or_else(|e| panic!("counting {collection}: {e}"))
}

/// Waits until `check` holds, or fails saying `what`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + STORE_TIMEOUT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {STORE_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn each_file_attached_is_checked_and_the_refusal_says_which() {
    // Through HAProxy this time: the other front door routes /files too.
    let (stack, door) = stack_with(FrontDoorKind::Haproxy, &[]).await;
    let base = door.http();
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut ben = ChatUser::sign_up(&stack, 1, "ben@example.com", "Ben").await;
    befriend(&mut ana, &mut ben).await;
    let picture = uploaded(&base, &ana.token, "a.png", "image/png", &png(30, 30, None)).await;
    let picture = file_id(&picture);
    let bens =
        file_id(&uploaded(&base, &ben.token, "b.png", "image/png", &png(30, 30, None)).await);

    let unknown = "00000000-0000-4000-8000-000000000000";
    let reply = ana
        .client
        .send_files(ben.target(), "", "r-1", &[unknown])
        .await;
    assert_refused(&reply, "BAD_REQUEST");
    assert!(message_of(&reply).contains(unknown), "{reply}");

    let reply = ana
        .client
        .send_files(ben.target(), "", "r-2", &[&bens])
        .await;
    assert_refused(&reply, "FORBIDDEN");
    assert!(message_of(&reply).contains(&bens), "{reply}");
    assert!(message_of(&reply).contains("uploader"), "{reply}");

    let eleven: Vec<String> = (0..11)
        .map(|i| format!("00000000-0000-4000-8000-0000000000{i:02}"))
        .collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    let reply = ana
        .client
        .send_files(ben.target(), "", "r-3", &eleven)
        .await;
    assert_refused(&reply, "BAD_REQUEST");
    assert!(message_of(&reply).contains("10"), "{reply}");

    let reply = ana
        .client
        .send_files(ben.target(), "", "r-4", &[&picture, &picture])
        .await;
    assert_refused(&reply, "BAD_REQUEST");

    // Without attachments the text is still required.
    let reply = ana.client.send_files(ben.target(), " ", "r-5", &[]).await;
    assert_refused(&reply, "BAD_REQUEST");

    // Nothing refused attached anything: the picture is still free to send.
    let first = ana
        .client
        .send_files(ben.target(), "", "r-6", &[&picture])
        .await;
    assert_status(&first, "MESSAGE_SENT");
    ben.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    // A resend is the same message, not a second attachment.
    let again = ana
        .client
        .send_files(ben.target(), "", "r-6", &[&picture])
        .await;
    assert_status(&again, "MESSAGE_SENT");
    assert_eq!(again["messageId"], first["messageId"]);
    assert_eq!(
        again["attachments"][0]["fileId"],
        picture.as_str(),
        "{again}"
    );

    // A resend naming another file is still the first message, and the
    // other file stays free to send.
    let other =
        file_id(&uploaded(&base, &ana.token, "c.png", "image/png", &png(20, 20, None)).await);
    let resent = ana
        .client
        .send_files(ben.target(), "", "r-6", &[&other])
        .await;
    assert_status(&resent, "MESSAGE_SENT");
    assert_eq!(resent["messageId"], first["messageId"]);
    assert_eq!(
        resent["attachments"][0]["fileId"],
        picture.as_str(),
        "{resent}"
    );
    let with_other = ana
        .client
        .send_files(ben.target(), "", "r-8", &[&other])
        .await;
    assert_status(&with_other, "MESSAGE_SENT");

    let reply = ana
        .client
        .send_files(ben.target(), "once more", "r-7", &[&picture])
        .await;
    assert_refused(&reply, "BAD_REQUEST");
    assert!(
        message_of(&reply).contains("already in a message"),
        "{reply}"
    );

    // And it reads through this door as through the other.
    let url = first["attachments"][0]["url"].as_str().expect("a url");
    let got = download(&base, url, None, None).await;
    assert_eq!(got.status, 200);
    assert!(got.body == png(30, 30, None));
}

#[tokio::test]
async fn an_upload_cut_off_half_way_leaves_nothing_in_gridfs() {
    let (stack, door) = stack_with(FrontDoorKind::Nginx, &[]).await;
    let ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let bytes = file_bytes(2_000_000);

    let mut socket = start_upload(
        &door.http(),
        &ana.token,
        "half.bin",
        bytes.len(),
        &bytes[..900_000],
    )
    .await;
    // The first chunks reach GridFS while the rest is still to come...
    eventually("chunks of the upload in progress are written", || async {
        count(&stack, ATTACHMENT_CHUNKS, doc! {}).await >= 2
    })
    .await;
    // ...and go once the client is gone.
    socket.shutdown().await.expect("closing the upload");
    drop(socket);
    eventually("nothing of the cut-off upload stays", || async {
        count(&stack, ATTACHMENT_CHUNKS, doc! {}).await == 0
    })
    .await;
    assert_eq!(count(&stack, ATTACHMENT_FILES, doc! {}).await, 0);

    // The next upload is whole.
    let whole = uploaded(
        &door.http(),
        &ana.token,
        "whole.bin",
        "application/octet-stream",
        &bytes,
    )
    .await;
    let got = download(
        &door.http(),
        &format!("/files/{}", file_id(&whole)),
        Some(&ana.token),
        None,
    )
    .await;
    assert!(got.body == bytes);
}

#[tokio::test]
async fn uploads_are_bounded_per_user_in_rate_and_in_bytes_not_yet_sent() {
    let settings = [
        ("SWITCHYARD__FILES__UPLOADS_PER_MINUTE", "3"),
        ("SWITCHYARD__FILES__MAX_PENDING_BYTES_PER_USER", "100000"),
    ];
    let (stack, door) = stack_with(FrontDoorKind::Nginx, &settings).await;
    let base = door.http();
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut ben = ChatUser::sign_up(&stack, 1, "ben@example.com", "Ben").await;
    befriend(&mut ana, &mut ben).await;

    for i in 0..3 {
        uploaded(
            &base,
            &ana.token,
            &format!("{i}.bin"),
            "text/plain",
            &file_bytes(10),
        )
        .await;
    }
    let refused = upload(
        &base,
        Some(&ana.token),
        "3.bin",
        "text/plain",
        &file_bytes(10),
    )
    .await;
    refused.assert_refused(429, "RATE_LIMITED");
    assert!(
        refused.json()["retryAfterMs"]
            .as_u64()
            .is_some_and(|ms| ms > 0)
    );
    assert!(!refused.header("retry-after").is_empty());
    // Another user is not slowed down by it.
    let first = uploaded(
        &base,
        &ben.token,
        "x.bin",
        "text/plain",
        &file_bytes(60_000),
    )
    .await;

    // Ben keeps 60,000 bytes unsent: another 60,000 would pass the 100,000 allowed...
    upload(
        &base,
        Some(&ben.token),
        "y.bin",
        "text/plain",
        &file_bytes(60_000),
    )
    .await
    .assert_refused(429, "RATE_LIMITED");
    // ...until the first is sent.
    let sent = ben
        .client
        .send_files(ana.target(), "", "b-1", &[&file_id(&first)])
        .await;
    assert_status(&sent, "MESSAGE_SENT");
    uploaded(
        &base,
        &ben.token,
        "y.bin",
        "text/plain",
        &file_bytes(60_000),
    )
    .await;
}

#[tokio::test]
async fn a_file_never_attached_is_deleted_after_its_time_and_a_sent_one_stays() {
    let settings = [
        ("SWITCHYARD__FILES__UNATTACHED_TTL_SECS", "2"),
        ("SWITCHYARD__FILES__SWEEP_INTERVAL_SECS", "1"),
    ];
    let (stack, door) = stack_with(FrontDoorKind::Nginx, &settings).await;
    let base = door.http();
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut ben = ChatUser::sign_up(&stack, 1, "ben@example.com", "Ben").await;
    befriend(&mut ana, &mut ben).await;
    let kept = file_id(
        &uploaded(
            &base,
            &ana.token,
            "kept.png",
            "image/png",
            &png(50, 50, None),
        )
        .await,
    );
    let left = file_id(
        &uploaded(
            &base,
            &ana.token,
            "left.png",
            "image/png",
            &png(50, 50, None),
        )
        .await,
    );
    let sent = ana
        .client
        .send_files(ben.target(), "", "k-1", &[&kept])
        .await;
    assert_status(&sent, "MESSAGE_SENT");

    let path = format!("/files/{left}");
    eventually("the never-attached picture is deleted", || async {
        download(&base, &path, Some(&ana.token), None).await.status == 404
    })
    .await;
    let ids = vec![left.clone(), format!("{left}.thumbnail")];
    assert_eq!(
        count(&stack, ATTACHMENT_FILES, doc! {"_id": {"$in": ids.clone()}}).await,
        0
    );
    assert_eq!(
        count(
            &stack,
            ATTACHMENT_CHUNKS,
            doc! {"files_id": {"$in": ids.clone()}}
        )
        .await,
        0
    );

    for path in [format!("/files/{kept}"), format!("/files/{kept}/thumbnail")] {
        let got = download(&base, &path, Some(&ben.token), None).await;
        assert_eq!(got.status, 200, "{path} of the sent picture stays");
    }
}

#[tokio::test]
async fn a_session_logged_out_anywhere_no_longer_uploads_or_reads() {
    let (stack, door) = stack_with(FrontDoorKind::Nginx, &[]).await;
    let base = door.http();
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let picture = png(20, 20, None);
    let file = file_id(&uploaded(&base, &ana.token, "a.png", "image/png", &picture).await);
    let path = format!("/files/{file}");
    assert_eq!(
        download(&base, &path, Some(&ana.token), None).await.status,
        200
    );

    // Another connection of the same session, on the other gateway, logs out.
    let mut other = ana.connect_again(&stack, 1).await;
    assert_status(&other.logout(&ana.email, &ana.token).await, "USER_LOGOUT");
    upload(&base, Some(&ana.token), "b.png", "image/png", &picture)
        .await
        .assert_refused(401, "UNAUTHORIZED");
    download(&base, &path, Some(&ana.token), None)
        .await
        .assert_refused(401, "UNAUTHORIZED");

    // A new login is a new session, known to the file side at once.
    let relogin = ana
        .client
        .login(&ana.email, switchyard_tests::DEFAULT_PASSWORD)
        .await;
    assert_status(&relogin, "USER_LOGGED");
    let token = relogin["flag"]["token"].as_str().expect("a token");
    assert_eq!(download(&base, &path, Some(token), None).await.status, 200);
}

#[tokio::test]
async fn an_upload_whose_replica_dies_half_way_leaves_nothing_once_swept() {
    let settings = [
        ("SWITCHYARD__FILES__UNATTACHED_TTL_SECS", "2"),
        ("SWITCHYARD__FILES__SWEEP_INTERVAL_SECS", "1"),
    ];
    let (mut stack, door) = stack_with(FrontDoorKind::Nginx, &settings).await;
    let ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let bytes = file_bytes(2_000_000);
    let socket = start_upload(
        &stack.files_http(0),
        &ana.token,
        "half.bin",
        bytes.len(),
        &bytes[..900_000],
    )
    .await;
    eventually("chunks of the upload in progress are written", || async {
        count(&stack, ATTACHMENT_CHUNKS, doc! {}).await >= 2
    })
    .await;
    // The replica dies with the upload in hand: nothing of it cleans up.
    stack.kill_service(CHAT, 0).await;
    drop(socket);
    assert!(count(&stack, ATTACHMENT_CHUNKS, doc! {}).await >= 2);
    stack.start_service(CHAT, 0).await;
    eventually("the abandoned upload's chunks are swept", || async {
        count(&stack, ATTACHMENT_CHUNKS, doc! {}).await == 0
    })
    .await;
    assert_eq!(count(&stack, ATTACHMENT_FILES, doc! {}).await, 0);
    assert_eq!(count(&stack, "attachment_uploads", doc! {}).await, 0);
    // And the service takes uploads again.
    uploaded(
        &door.http(),
        &ana.token,
        "again.bin",
        "application/octet-stream",
        &bytes,
    )
    .await;
}

#[tokio::test]
async fn files_go_to_groups_only_where_the_deployment_allows_it() {
    let settings = [("SWITCHYARD__FILES__FILES_IN_GROUPS", "true")];
    let (stack, door) = stack_with(FrontDoorKind::Nginx, &settings).await;
    let base = door.http();
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut ben = ChatUser::sign_up(&stack, 1, "ben@example.com", "Ben").await;
    let group_id = ana.client.create_group("Readers").await;
    add_member(&mut ana, &group_id, &mut ben).await;
    let bytes = file_bytes(5_000);
    let file = file_id(
        &uploaded(
            &base,
            &ana.token,
            "notes.bin",
            "application/octet-stream",
            &bytes,
        )
        .await,
    );
    let reply = ana
        .client
        .send_files(
            serde_json::json!({"groupId": group_id}),
            "notes",
            "g-1",
            &[&file],
        )
        .await;
    assert_status(&reply, "MESSAGE_SENT");
    let event = ben.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    let url = event["attachments"][0]["url"].as_str().expect("a url");
    let got = download(&base, url, None, None).await;
    assert!(got.body == bytes);
    assert!(got.header("content-disposition").starts_with("attachment"));
}
