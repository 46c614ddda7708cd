//! Pictures in groups and files one-to-one: uploaded over HTTP through the
//! front door, sent over the WebSocket by id, read by the other users on
//! the other gateway with the signed URLs their messages carry.

use std::time::Duration;

use mongodb::bson::doc;
use serde_json::{Value, json};
use switchyard_tests::chat::{
    ChatUser, EVENT_TIMEOUT, add_member, assert_refused, befriend, messages_of,
};
use switchyard_tests::files::{
    ATTACHMENT_CHUNKS, ATTACHMENT_FILES, download, file_bytes, png, upload, uploaded,
};
use switchyard_tests::front_door::{FrontDoor, FrontDoorKind};
use switchyard_tests::{CHAT, Stack, assert_status};

/// Two gateways, a chat-service, and NGINX in front of them (WebSocket
/// upgrades to the gateways, `/files` to chat-service).
async fn stack_with(settings: &[(&str, &str)]) -> (Stack, FrontDoor) {
    let mut builder = Stack::builder().gateways(2).chat(true).generous_limits();
    for (key, value) in settings {
        builder = builder.service_env(CHAT, *key, *value);
    }
    let stack = builder.start().await;
    let door = FrontDoor::start(FrontDoorKind::Nginx, &stack, &[0, 1]).await;
    (stack, door)
}

/// The one attachment of a message (a `NEW_MESSAGE`, a
/// `HISTORY` message, or a `MESSAGE_SENT`).
#[track_caller]
fn only_attachment(message: &Value) -> &Value {
    let attachments = message["attachments"]
        .as_array()
        .unwrap_or_else(|| panic!("no attachments: {message}"));
    assert_eq!(attachments.len(), 1, "{message}");
    &attachments[0]
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field}: {value}"))
}

#[tokio::test]
async fn a_picture_sent_to_a_group_is_seen_by_a_member_on_the_other_gateway() {
    let (stack, door) = stack_with(&[]).await;
    let base = door.http();
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut ben = ChatUser::sign_up(&stack, 1, "ben@example.com", "Ben").await;
    let cal = ChatUser::sign_up(&stack, 1, "cal@example.com", "Cal").await;
    let group_id = ana.client.create_group("Hikers").await;
    add_member(&mut ana, &group_id, &mut ben).await;

    // A photograph that says where it was taken.
    let original = png(1200, 800, Some(("GPS", "48.8584 N, 2.2945 E")));
    let file = uploaded(&base, &ana.token, "summit.png", "image/png", &original).await;
    assert_eq!(file["kind"], "picture", "{file}");
    assert_eq!(file["contentType"], "image/png");
    assert_eq!(file["name"], "summit.png");
    assert_eq!(file["size"], original.len());
    assert_eq!(
        (file["width"].clone(), file["height"].clone()),
        (json!(1200), json!(800))
    );
    let file_id = str_of(&file, "fileId");

    let reply = ana
        .client
        .send_files(json!({"groupId": group_id}), "", "pic-1", &[file_id])
        .await;
    assert_status(&reply, "MESSAGE_SENT");
    assert_eq!(str_of(only_attachment(&reply), "fileId"), file_id);

    let event = ben.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    assert_eq!(event["text"], "", "{event}");
    let attachment = only_attachment(&event);
    for (field, expected) in [
        ("fileId", json!(file_id)),
        ("name", json!("summit.png")),
        ("size", json!(original.len())),
        ("contentType", json!("image/png")),
        ("kind", json!("picture")),
        ("width", json!(1200)),
        ("height", json!(800)),
    ] {
        assert_eq!(attachment[field], expected, "{field} in {attachment}");
    }

    // The URLs work without any header, as an <img src> would use them.
    let got = download(&base, str_of(attachment, "url"), None, None).await;
    assert_eq!(got.status, 200);
    assert!(
        got.body == original,
        "the original comes back byte for byte"
    );
    assert_eq!(got.header("content-type"), "image/png");
    assert_eq!(got.header("content-length"), original.len().to_string());
    assert!(
        got.header("content-disposition").starts_with("inline"),
        "{:?}",
        got.headers
    );
    assert_eq!(got.header("x-content-type-options"), "nosniff");
    assert!(
        got.header("content-security-policy")
            .contains("default-src 'none'")
    );
    assert!(!got.header("etag").is_empty());

    let thumb = download(&base, str_of(attachment, "thumbnailUrl"), None, None).await;
    assert_eq!(thumb.status, 200);
    assert_eq!(thumb.header("content-type"), "image/png");
    let small = image::load_from_memory(&thumb.body).expect("the thumbnail is a picture");
    assert_eq!((small.width(), small.height()), (320, 213));
    assert!(thumb.body.len() < original.len());
    let leaked = thumb.body.windows(3).any(|w| w == b"GPS");
    assert!(
        !leaked,
        "the thumbnail keeps none of the original's metadata"
    );

    // A member may also read it with their session; someone outside may not.
    let by_member = download(&base, &format!("/files/{file_id}"), Some(&ben.token), None).await;
    assert_eq!(by_member.status, 200);
    assert!(by_member.body == original);
    download(&base, &format!("/files/{file_id}"), Some(&cal.token), None)
        .await
        .assert_refused(403, "FORBIDDEN");
    download(
        &base,
        &format!("/files/{file_id}/thumbnail"),
        Some(&cal.token),
        None,
    )
    .await
    .assert_refused(403, "FORBIDDEN");

    // A later HISTORY carries the attachment with URLs of its own.
    let history = ben
        .client
        .history(&format!("g:{group_id}"), None, None)
        .await;
    let from_history = only_attachment(&messages_of(&history)[0]);
    assert_eq!(from_history["fileId"], file_id);
    let again = download(&base, str_of(from_history, "url"), None, None).await;
    assert!(again.body == original);
}

#[tokio::test]
async fn a_file_sent_one_to_one_is_read_in_ranges_and_kept_out_of_groups() {
    let (stack, door) = stack_with(&[]).await;
    let base = door.http();
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut ben = ChatUser::sign_up(&stack, 1, "ben@example.com", "Ben").await;
    befriend(&mut ana, &mut ben).await;

    let bytes = file_bytes(700_000);
    let file = uploaded(
        &base,
        &ana.token,
        "report \"final\".bin",
        "application/pdf",
        &bytes,
    )
    .await;
    assert_eq!(file["kind"], "file", "{file}");
    assert_eq!(file["contentType"], "application/octet-stream");
    assert!(file.get("width").is_none(), "{file}");
    let file_id = str_of(&file, "fileId");

    // Not to a group: it is not a picture.
    let group_id = ana.client.create_group("Team").await;
    let refused = ana
        .client
        .send_files(json!({"groupId": group_id}), "", "f-0", &[file_id])
        .await;
    assert_refused(&refused, "FORBIDDEN");
    assert!(
        str_of(&refused, "message").contains("not a picture"),
        "{refused}"
    );

    let reply = ana
        .client
        .send_files(ben.target(), "the report", "f-1", &[file_id])
        .await;
    assert_status(&reply, "MESSAGE_SENT");
    let event = ben.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    let attachment = only_attachment(&event);
    assert_eq!(attachment["kind"], "file");
    assert!(attachment.get("thumbnailUrl").is_none(), "{attachment}");
    let url = str_of(attachment, "url");

    let part = download(&base, url, None, Some("bytes=300000-500009")).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), "bytes 300000-500009/700000");
    assert_eq!(part.header("content-length"), "200010");
    assert!(
        part.body == bytes[300_000..500_010],
        "the range is the bytes uploaded"
    );
    let tail = download(&base, url, None, Some("bytes=-10")).await;
    assert_eq!(tail.status, 206);
    assert!(tail.body == bytes[699_990..]);
    let outside = download(&base, url, None, Some("bytes=700000-")).await;
    assert_eq!(outside.status, 416);

    let whole = download(&base, &format!("/files/{file_id}"), Some(&ben.token), None).await;
    assert_eq!(whole.status, 200);
    assert!(whole.body == bytes);
    assert_eq!(whole.header("accept-ranges"), "bytes");
    assert_eq!(
        whole.header("content-disposition"),
        "attachment; filename=\"report _final_.bin\"; filename*=UTF-8''report%20%22final%22.bin"
    );
    assert_eq!(whole.header("x-content-type-options"), "nosniff");
}

#[tokio::test]
async fn a_signed_url_works_without_a_session_until_it_expires_and_only_as_signed() {
    let (stack, door) = stack_with(&[("SWITCHYARD__FILES__URL_TTL_SECS", "3")]).await;
    let base = door.http();
    let mut ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let mut ben = ChatUser::sign_up(&stack, 1, "ben@example.com", "Ben").await;
    befriend(&mut ana, &mut ben).await;
    let picture = png(64, 64, None);
    let file = uploaded(&base, &ana.token, "face.png", "image/png", &picture).await;
    let file_id = str_of(&file, "fileId");
    let reply = ana
        .client
        .send_files(ben.target(), "", "s-1", &[file_id])
        .await;
    assert_status(&reply, "MESSAGE_SENT");
    let event = ben.client.expect_event("NEW_MESSAGE", EVENT_TIMEOUT).await;
    let url = str_of(only_attachment(&event), "url").to_owned();

    assert_eq!(download(&base, &url, None, None).await.status, 200);
    // Another file's path, another expiry, another signature: refused.
    let other_path = url.replace(file_id, "00000000-0000-4000-8000-000000000000");
    download(&base, &other_path, None, None)
        .await
        .assert_refused(403, "FORBIDDEN");
    let (path, query) = url.split_once('?').expect("a signed URL has a query");
    let later: String = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("exp", exp)) => format!("exp={}", exp.parse::<u64>().expect("exp") + 3600),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    download(&base, &format!("{path}?{later}"), None, None)
        .await
        .assert_refused(403, "FORBIDDEN");
    let mut tampered = url.clone();
    let last = tampered.pop().expect("a signature");
    tampered.push(if last == '0' { '1' } else { '0' });
    download(&base, &tampered, None, None)
        .await
        .assert_refused(403, "FORBIDDEN");

    tokio::time::sleep(Duration::from_secs(4)).await;
    let expired = download(&base, &url, None, None).await;
    expired.assert_refused(403, "FORBIDDEN");
    assert!(str_of(&expired.json(), "message").contains("expired"));
    // A fresh HISTORY hands out a fresh one.
    let history = ben
        .client
        .history(str_of(&reply, "conversationId"), None, None)
        .await;
    let fresh = str_of(only_attachment(&messages_of(&history)[0]), "url").to_owned();
    assert_eq!(download(&base, &fresh, None, None).await.status, 200);
}

#[tokio::test]
async fn uploads_are_refused_with_a_reason_and_leave_nothing_behind() {
    let limits = [
        ("SWITCHYARD__FILES__MAX_PICTURE_BYTES", "300000"),
        ("SWITCHYARD__FILES__MAX_FILE_BYTES", "1000000"),
    ];
    let (stack, door) = stack_with(&limits).await;
    let base = door.http();
    let ana = ChatUser::sign_up(&stack, 0, "ana@example.com", "Ana").await;
    let picture = png(40, 40, None);

    // Who is asking.
    upload(&base, None, "a.png", "image/png", &picture)
        .await
        .assert_refused(401, "UNAUTHORIZED");
    upload(&base, Some("not-a-session"), "a.png", "image/png", &picture)
        .await
        .assert_refused(401, "UNAUTHORIZED");
    download(
        &base,
        "/files/00000000-0000-4000-8000-000000000000",
        None,
        None,
    )
    .await
    .assert_refused(401, "UNAUTHORIZED");
    download(
        &base,
        "/files/00000000-0000-4000-8000-000000000000",
        Some(&ana.token),
        None,
    )
    .await
    .assert_refused(404, "NOT_FOUND");

    // What it is: known by its bytes, not its name or declared type.
    let mut executable = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec();
    executable.extend(file_bytes(4000));
    upload(
        &base,
        Some(&ana.token),
        "photo.png",
        "image/png",
        &executable,
    )
    .await
    .assert_refused(415, "UNSUPPORTED_MEDIA_TYPE");
    let bomb = switchyard_tests::files::png_bomb(50_000, 50_000);
    assert!(bomb.len() < 8 * 1024, "a few kilobytes: {}", bomb.len());
    let refused = upload(&base, Some(&ana.token), "huge.png", "image/png", &bomb).await;
    refused.assert_refused(415, "UNSUPPORTED_MEDIA_TYPE");
    assert!(str_of(&refused.json(), "message").contains("50000 × 50000"));
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
    let as_file = uploaded(&base, &ana.token, "logo.svg", "image/svg+xml", svg).await;
    assert_eq!(as_file["kind"], "file", "an SVG is a file: {as_file}");

    // How big: announced, or crossed while streaming.
    upload(
        &base,
        Some(&ana.token),
        "big.bin",
        "application/octet-stream",
        &file_bytes(1_000_001),
    )
    .await
    .assert_refused(413, "TOO_LARGE");
    // A picture followed by padding: a picture by its bytes, over its limit.
    let mut big_picture = png(40, 40, None);
    big_picture.extend(file_bytes(300_000));
    upload(
        &base,
        Some(&ana.token),
        "big.dat",
        "application/octet-stream",
        &big_picture,
    )
    .await
    .assert_refused(413, "TOO_LARGE");
    let streamed =
        switchyard_tests::files::chunked_upload(&base, &ana.token, "stream.bin", 20_000_000).await;
    assert_eq!(streamed.status, 413, "{streamed:?}");
    assert!(
        streamed.sent < 10_000_000,
        "refused once over the limit, not after the whole body: {} bytes sent",
        streamed.sent
    );

    // Nothing of the refused uploads stays: only the SVG is stored.
    let db = stack.mongo();
    let files = db.collection::<mongodb::bson::Document>(ATTACHMENT_FILES);
    let stored = files.count_documents(doc! {}).await.expect("count files");
    assert_eq!(stored, 1);
    let chunks = db.collection::<mongodb::bson::Document>(ATTACHMENT_CHUNKS);
    let svg_id = str_of(&as_file, "fileId");
    assert_eq!(
        chunks
            .count_documents(doc! {"files_id": {"$ne": svg_id}})
            .await
            .expect("count"),
        0
    );
}
