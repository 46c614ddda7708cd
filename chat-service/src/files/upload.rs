//! `POST /files?name=<file name>`: the body is the file.
//!
//! The first bytes decide what the file is ([`super::sniff`]) and so which
//! size limit applies. A file that is not a picture is streamed into GridFS
//! as it arrives, so memory per upload is one GridFS chunk plus one body
//! frame whatever the size, and it is refused (`413`) as soon as it crosses
//! its limit or its `Content-Length` announces it will. An upload that ends
//! early or is refused leaves no chunk behind: the upload stream is aborted,
//! if the request itself is dropped the driver deletes what was written, and
//! if the replica dies the sweep does (every upload is recorded as in
//! progress until it is whole or aborted).
//!
//! A picture is held whole (it is at most the picture limit) because its
//! thumbnail is drawn from all of it; it is stored, with its thumbnail, only
//! once both are known to be good.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::io::AsyncWriteExt;
use mongodb::bson::Bson;
use serde::{Deserialize, Serialize};
use shared_proto::action::UserId;

use super::FileService;
use super::access::bearer_user;
use super::errors::{HttpError, describe_bytes};
use super::picture::{self, PictureError};
use super::sniff::{HEAD_BYTES, Sniffed, claims_picture, sniff};
use crate::store::files::{FileKind, FileMeta, thumbnail_id};

/// The window of the per-user upload rate.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// How much of a refused upload is read and dropped at most, and for how
/// long, before its connection is closed.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 255;

#[derive(Debug, Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

/// The `201` answer, and what a message says of each attachment before its
/// URLs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Uploaded {
    pub file_id: String,
    pub name: String,
    pub size: i64,
    pub content_type: String,
    pub kind: FileKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

pub async fn upload(
    State(service): State<Arc<FileService>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let mut body = body.into_data_stream();
    let result = receive(&service, &uri, &headers, &mut body).await;
    let status = match &result {
        Ok(_) => "CREATED",
        Err(refusal) => refusal.code.as_str(),
    };
    metrics::counter!("switchyard_files_uploads_total", "status" => status).increment(1);
    if result.is_err() {
        // The refusal goes out now; what the client still sends is read and
        // dropped a while, so that its connection (or the front door's) is
        // not reset under the answer before it is read.
        tokio::spawn(drain(body));
    }
    result
}

/// Reads and drops what is left of a refused upload, for a bounded time and
/// number of bytes.
async fn drain(mut body: BodyDataStream) {
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.next().await {
            left = left.saturating_sub(frame.len());
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

async fn receive(
    service: &FileService,
    uri: &Uri,
    headers: &HeaderMap,
    body: &mut BodyDataStream,
) -> Result<Response, HttpError> {
    let me = bearer_user(service, headers).await?;
    let query = Query::<UploadQuery>::try_from_uri(uri)
        .map_err(|_| HttpError::bad_request("The query must be ?name=<file name>."))?;
    let name = file_name(query.0.name.as_deref())?;
    let settings = &service.settings;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let claimed_picture = claims_picture(&name, declared);
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let ceiling = if claimed_picture {
        settings.max_picture_bytes
    } else {
        settings.max_file_bytes.max(settings.max_picture_bytes)
    };
    refuse_announced(announced, ceiling)?;
    check_rate(service, &me).await?;
    check_storage(service, &me, announced.unwrap_or(0)).await?;

    let head = read_head(body, ceiling).await?;
    let uploaded = match sniff(&head) {
        Sniffed::Picture(format) => {
            let limit = settings.max_picture_bytes;
            refuse_announced(announced, limit)?;
            let bytes = read_rest(head, body, limit).await?;
            store_picture(service, &me, &name, bytes, format).await?
        }
        Sniffed::File(content_type) => {
            if claimed_picture {
                return Err(HttpError::unsupported(format!(
                    "\"{name}\" is presented as a picture, but its bytes are not a PNG, JPEG, GIF or WebP picture."
                )));
            }
            let limit = settings.max_file_bytes;
            refuse_announced(announced, limit)?;
            stream_file(service, &me, &name, content_type, head, body, limit).await?
        }
    };
    let stored = u64::try_from(uploaded.size).unwrap_or(0);
    metrics::counter!("switchyard_files_bytes_stored_total").increment(stored);
    let json = serde_json::to_string(&uploaded).unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response())
}

/// The name to keep: its last path segment, trimmed, without control
/// characters, at most 255 characters.
fn file_name(raw: Option<&str>) -> Result<String, HttpError> {
    let raw = raw.unwrap_or_default();
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if last.is_empty() || last == "." || last == ".." {
        return Err(HttpError::bad_request(
            "Name the file: POST /files?name=<file name>.",
        ));
    }
    if last.chars().any(char::is_control) {
        return Err(HttpError::bad_request(
            "The file name contains control characters.",
        ));
    }
    Ok(last.chars().take(MAX_NAME_CHARS).collect())
}

fn refuse_announced(announced: Option<u64>, limit: u64) -> Result<(), HttpError> {
    match announced {
        Some(length) if length > limit => Err(HttpError::too_large(limit)),
        _ => Ok(()),
    }
}

async fn check_rate(service: &FileService, me: &UserId) -> Result<(), HttpError> {
    let key = service.bus.names().uploads(me.as_str());
    let count = service
        .bus
        .count_within(&key, RATE_WINDOW)
        .await
        .map_err(HttpError::unavailable)?;
    if count > service.settings.uploads_per_minute {
        return Err(HttpError::rate_limited(
            format!(
                "You may upload {} files a minute; wait a little.",
                service.settings.uploads_per_minute
            ),
            u64::try_from(RATE_WINDOW.as_millis()).unwrap_or(u64::MAX),
        ));
    }
    Ok(())
}

async fn check_storage(service: &FileService, me: &UserId, coming: u64) -> Result<(), HttpError> {
    let pending = service
        .files
        .pending_bytes(me)
        .await
        .map_err(HttpError::unavailable)?;
    let pending = u64::try_from(pending).unwrap_or(0);
    let limit = service.settings.max_pending_bytes_per_user;
    if pending.saturating_add(coming) > limit {
        let wait = service.settings.unattached_ttl_secs.saturating_mul(1000);
        return Err(HttpError::rate_limited(
            format!(
                "Your files not yet sent take {} of the {} you may keep; send or wait for them to expire.",
                describe_bytes(pending),
                describe_bytes(limit)
            ),
            wait,
        ));
    }
    Ok(())
}

/// The first frames of the body, at least [`HEAD_BYTES`] unless it is shorter.
async fn read_head(body: &mut BodyDataStream, limit: u64) -> Result<Vec<u8>, HttpError> {
    let mut head = Vec::with_capacity(HEAD_BYTES);
    while head.len() < HEAD_BYTES {
        match next_frame(body).await? {
            Some(frame) => {
                head.extend_from_slice(&frame);
                over(head.len(), limit)?;
            }
            None => break,
        }
    }
    if head.is_empty() {
        return Err(HttpError::bad_request("The file is empty."));
    }
    Ok(head)
}

/// The whole of a picture, refused once it is over `limit`.
async fn read_rest(
    mut bytes: Vec<u8>,
    body: &mut BodyDataStream,
    limit: u64,
) -> Result<Vec<u8>, HttpError> {
    while let Some(frame) = next_frame(body).await? {
        over(bytes.len() + frame.len(), limit)?;
        bytes.extend_from_slice(&frame);
    }
    Ok(bytes)
}

fn over(length: usize, limit: u64) -> Result<(), HttpError> {
    if u64::try_from(length).unwrap_or(u64::MAX) > limit {
        return Err(HttpError::too_large(limit));
    }
    Ok(())
}

async fn next_frame(body: &mut BodyDataStream) -> Result<Option<Bytes>, HttpError> {
    match body.next().await {
        Some(Ok(frame)) => Ok(Some(frame)),
        Some(Err(_)) => Err(HttpError::bad_request("The upload was cut off.")),
        None => Ok(None),
    }
}

/// Streams a file that is not a picture into GridFS; on any failure the
/// upload is aborted, which deletes its chunks.
async fn stream_file(
    service: &FileService,
    me: &UserId,
    name: &str,
    content_type: &'static str,
    head: Vec<u8>,
    body: &mut BodyDataStream,
    limit: u64,
) -> Result<Uploaded, HttpError> {
    let id = uuid::Uuid::new_v4().to_string();
    let meta = FileMeta {
        uploader: me.clone(),
        kind: FileKind::File,
        content_type: content_type.to_owned(),
        width: None,
        height: None,
        attached_to: None,
        conversation_id: None,
        thumbnail_of: None,
    };
    let mut stream = open_upload(service, &id, name, &meta).await?;
    let mut size = head.len();
    let mut written = stream.write_all(&head).await;
    let outcome = loop {
        if let Err(err) = written {
            break Err(HttpError::unavailable(err));
        }
        match next_frame(body).await {
            Ok(Some(frame)) => {
                size += frame.len();
                if let Err(refusal) = over(size, limit) {
                    break Err(refusal);
                }
                written = stream.write_all(&frame).await;
            }
            Ok(None) => break Ok(()),
            Err(refusal) => break Err(refusal),
        }
    };
    if let Err(refusal) = outcome {
        // What was written goes; if that fails, the sweep finds the upload
        // never ended and deletes its chunks.
        if stream.abort().await.is_ok() {
            let _ = service.files.end_upload(&id).await;
        }
        return Err(refusal);
    }
    stream.close().await.map_err(HttpError::unavailable)?;
    // Whole: a failure here only leaves the sweep a record to drop.
    let _ = service.files.end_upload(&id).await;
    Ok(Uploaded {
        file_id: id,
        name: name.to_owned(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        content_type: content_type.to_owned(),
        kind: FileKind::File,
        width: None,
        height: None,
    })
}

/// Checks and thumbnails a picture, then stores the thumbnail and the
/// picture, in that order: a picture that exists has its thumbnail.
async fn store_picture(
    service: &FileService,
    me: &UserId,
    name: &str,
    bytes: Vec<u8>,
    format: image::ImageFormat,
) -> Result<Uploaded, HttpError> {
    let settings = &service.settings;
    let (max_pixels, side) = (settings.max_pixels, settings.thumbnail_side);
    let permit = service
        .decodes
        .acquire()
        .await
        .map_err(HttpError::unavailable)?;
    let bytes = Arc::new(bytes);
    let decoding = Arc::clone(&bytes);
    let inspected =
        tokio::task::spawn_blocking(move || picture::inspect(&decoding, format, max_pixels, side))
            .await
            .map_err(HttpError::unavailable)?;
    drop(permit);
    let picture = inspected.map_err(|err| match err {
        PictureError::TooManyPixels { .. } => HttpError::unsupported(err.to_string()),
        PictureError::Unreadable => HttpError::unsupported(format!(
            "\"{name}\" starts like a {} picture but cannot be read as one.",
            format.to_mime_type()
        )),
    })?;
    let id = uuid::Uuid::new_v4().to_string();
    let content_type = format.to_mime_type().to_owned();
    let meta = FileMeta {
        uploader: me.clone(),
        kind: FileKind::Picture,
        content_type: content_type.clone(),
        width: Some(picture.width),
        height: Some(picture.height),
        attached_to: None,
        conversation_id: None,
        thumbnail_of: None,
    };
    let thumb_meta = FileMeta {
        kind: FileKind::Thumbnail,
        content_type: picture.thumbnail_type.to_owned(),
        thumbnail_of: Some(id.clone()),
        ..meta.clone()
    };
    let thumb_id = thumbnail_id(&id);
    write_whole(service, &thumb_id, name, &thumb_meta, &picture.thumbnail).await?;
    if let Err(err) = write_whole(service, &id, name, &meta, &bytes).await {
        let _ = service.files.delete(&thumb_id).await;
        return Err(err);
    }
    Ok(Uploaded {
        file_id: id,
        name: name.to_owned(),
        size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        content_type,
        kind: FileKind::Picture,
        width: Some(picture.width),
        height: Some(picture.height),
    })
}

async fn write_whole(
    service: &FileService,
    id: &str,
    name: &str,
    meta: &FileMeta,
    bytes: &[u8],
) -> Result<(), HttpError> {
    let mut stream = open_upload(service, id, name, meta).await?;
    if let Err(err) = stream.write_all(bytes).await {
        if stream.abort().await.is_ok() {
            let _ = service.files.end_upload(id).await;
        }
        return Err(HttpError::unavailable(err));
    }
    stream.close().await.map_err(HttpError::unavailable)?;
    let _ = service.files.end_upload(id).await;
    Ok(())
}

/// Records an upload as in progress (so that a replica dying with it leaves
/// its chunks findable) and opens its GridFS stream.
async fn open_upload(
    service: &FileService,
    id: &str,
    name: &str,
    meta: &FileMeta,
) -> Result<mongodb::gridfs::GridFsUploadStream, HttpError> {
    let metadata = mongodb::bson::to_document(meta).map_err(HttpError::unavailable)?;
    service
        .files
        .begin_upload(id, &meta.uploader)
        .await
        .map_err(HttpError::unavailable)?;
    service
        .files
        .bucket
        .open_upload_stream(name)
        .id(Bson::String(id.to_owned()))
        .metadata(metadata)
        .await
        .map_err(HttpError::unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_is_its_last_segment_without_control_characters() {
        assert_eq!(
            file_name(Some("../../etc/passwd")).ok(),
            Some("passwd".into())
        );
        assert_eq!(
            file_name(Some("C:\\x\\photo.png")).ok(),
            Some("photo.png".into())
        );
        assert!(file_name(Some("a\u{0}b")).is_err());
        assert!(file_name(Some("  ")).is_err());
        assert!(file_name(None).is_err());
        assert_eq!(
            file_name(Some(&"x".repeat(300))).map(|n| n.len()).ok(),
            Some(255)
        );
    }
}
