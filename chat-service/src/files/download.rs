//! `GET /files/<id>` and `GET /files/<id>/thumbnail`.
//!
//! Read by a Bearer token (the uploader, or anyone who may read the
//! conversation the file was sent in), or by a signed URL. The bytes are
//! read chunk by chunk from `attachments.chunks`, starting at the chunk that
//! holds the first byte asked for, so a range costs what it returns.
//! Pictures are shown inline; anything else is a download with a safe name.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;

use super::FileService;
use super::access::{bearer_user, may_read, valid_file_id};
use super::errors::HttpError;
use super::signing::{SignatureError, SignedQuery};
use crate::store::files::{FileKind, StoredFile, thumbnail_id};

pub async fn original(
    State(service): State<Arc<FileService>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let answer = match authorized(&service, &id, &uri, &headers).await {
        Ok(file) => serve(&service, file, &headers).await,
        Err(refusal) => Err(refusal),
    };
    counted(answer, "original")
}

pub async fn thumbnail(
    State(service): State<Arc<FileService>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    counted(
        thumbnail_of(&service, &id, &uri, &headers).await,
        "thumbnail",
    )
}

async fn thumbnail_of(
    service: &FileService,
    id: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    let picture = authorized(service, id, uri, headers).await?;
    if picture.metadata.kind != FileKind::Picture {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            shared_proto::status::ErrorCode::NotFound,
            "Only pictures have thumbnails.",
        ));
    }
    let thumb = service
        .files
        .file(&thumbnail_id(&picture.id))
        .await
        .map_err(HttpError::unavailable)?
        .ok_or_else(HttpError::not_found)?;
    serve(service, thumb, headers).await
}

/// Counts a download by what it read and the status it got.
fn counted(answer: Result<Response, HttpError>, what: &'static str) -> Result<Response, HttpError> {
    let status = match &answer {
        Ok(response) => response.status().as_u16(),
        Err(refusal) => refusal.status.as_u16(),
    };
    metrics::counter!("switchyard_files_downloads_total", "what" => what, "status" => status.to_string())
        .increment(1);
    answer
}

/// The file `id` (never a thumbnail by its own id), if the request may read it.
async fn authorized(
    service: &FileService,
    id: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<StoredFile, HttpError> {
    if !valid_file_id(id) {
        return Err(HttpError::not_found());
    }
    let signed = Query::<SignedQuery>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default();
    if signed.is_present() {
        service
            .signer
            .verify(uri.path(), &signed)
            .map_err(|err| match err {
                SignatureError::Expired => HttpError::forbidden(
                    "This link has expired; ask for the message again for a fresh one.",
                ),
                SignatureError::Invalid => HttpError::forbidden("This link is not valid."),
            })?;
        return find(service, id).await;
    }
    let me = bearer_user(service, headers).await?;
    let file = find(service, id).await?;
    if !may_read(service, &me, &file).await? {
        return Err(HttpError::forbidden(
            "You may not read this file: only its uploader, and once it is sent, whoever may read its conversation.",
        ));
    }
    Ok(file)
}

async fn find(service: &FileService, id: &str) -> Result<StoredFile, HttpError> {
    service
        .files
        .file(id)
        .await
        .map_err(HttpError::unavailable)?
        .filter(|f| f.metadata.kind != FileKind::Thumbnail)
        .ok_or_else(HttpError::not_found)
}

async fn serve(
    service: &FileService,
    file: StoredFile,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    let length = u64::try_from(file.length).unwrap_or(0);
    let etag = format!("\"{}-{}\"", file.id, file.length);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        set(&mut response, header::ETAG, &etag);
        return Ok(response);
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) => match parse_range(spec, length) {
            RangeAsked::Whole => None,
            RangeAsked::Part(start, end) => Some((start, end)),
            RangeAsked::Unsatisfiable => {
                let mut response = HttpError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    shared_proto::status::ErrorCode::BadRequest,
                    format!("The file has {length} bytes; the range asked for is outside them."),
                )
                .into_response();
                set(
                    &mut response,
                    header::CONTENT_RANGE,
                    &format!("bytes */{length}"),
                );
                return Ok(response);
            }
        },
        None => None,
    };
    let (start, end) = range.unwrap_or((0, length.saturating_sub(1)));
    let count = if length == 0 { 0 } else { end - start + 1 };
    let body = if count == 0 {
        Body::empty()
    } else {
        bytes_of(service, &file, start, end).await?
    };
    let mut response = Response::new(body);
    *response.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    set(
        &mut response,
        header::CONTENT_TYPE,
        &file.metadata.content_type,
    );
    set(&mut response, header::CONTENT_LENGTH, &count.to_string());
    set(&mut response, header::ETAG, &etag);
    set(&mut response, header::ACCEPT_RANGES, "bytes");
    // Private: the answer depends on who asks. Files never change, so a
    // reader's own cache may keep them.
    set(
        &mut response,
        header::CACHE_CONTROL,
        "private, max-age=3600",
    );
    if range.is_some() {
        set(
            &mut response,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{end}/{length}"),
        );
    }
    let inline = matches!(file.metadata.kind, FileKind::Picture | FileKind::Thumbnail);
    set(
        &mut response,
        header::CONTENT_DISPOSITION,
        &content_disposition(&file.filename, inline),
    );
    Ok(response)
}

/// Bytes `start..=end` of the file, as a body that reads a few chunks at a
/// time. A reader that goes away stops the reading: the body is dropped.
async fn bytes_of(
    service: &FileService,
    file: &StoredFile,
    start: u64,
    end: u64,
) -> Result<Body, HttpError> {
    let chunk = u64::try_from(file.chunk_size).unwrap_or(1).max(1);
    let (first, last) = (start / chunk, end / chunk);
    let cursor = service
        .files
        .chunks(
            &file.id,
            i64::try_from(first).unwrap_or(i64::MAX),
            i64::try_from(last).unwrap_or(i64::MAX),
        )
        .await
        .map_err(HttpError::unavailable)?;
    let stream = cursor.map(move |chunk_doc| {
        let chunk_doc = chunk_doc.map_err(std::io::Error::other)?;
        let n = u64::try_from(chunk_doc.n).unwrap_or(0);
        let data = chunk_doc.data.bytes;
        let offset = n * chunk;
        let from = usize::try_from(start.saturating_sub(offset))
            .unwrap_or(0)
            .min(data.len());
        let to = usize::try_from((end + 1).saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(data.len());
        Ok::<Bytes, std::io::Error>(Bytes::from(data).slice(from..to.max(from)))
    });
    Ok(Body::from_stream(stream))
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsked {
    Whole,
    /// Inclusive byte positions.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range (`a-b`, `a-`, `-n`). Several ranges, or units other
/// than bytes, are answered with the whole file, as HTTP allows.
fn parse_range(spec: &str, length: u64) -> RangeAsked {
    let Some(ranges) = spec.trim().strip_prefix("bytes=") else {
        return RangeAsked::Whole;
    };
    if ranges.contains(',') {
        return RangeAsked::Whole;
    }
    let Some((from, to)) = ranges.trim().split_once('-') else {
        return RangeAsked::Whole;
    };
    let (from, to) = (from.trim(), to.trim());
    let parsed = match (from.is_empty(), to.is_empty()) {
        (true, false) => to.parse::<u64>().ok().map(|suffix| {
            if suffix == 0 {
                None
            } else {
                Some((length.saturating_sub(suffix), length.saturating_sub(1)))
            }
        }),
        (false, true) => from
            .parse::<u64>()
            .ok()
            .map(|a| Some((a, length.saturating_sub(1)))),
        (false, false) => match (from.parse::<u64>(), to.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Some(Some((a, b.min(length.saturating_sub(1))))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeAsked::Whole,
        Some(None) => RangeAsked::Unsatisfiable,
        Some(Some((a, b))) if length == 0 || a >= length || a > b => RangeAsked::Unsatisfiable,
        Some(Some((a, b))) => RangeAsked::Part(a, b),
    }
}

/// `inline` or `attachment`, with a name that cannot break out of the
/// header: ASCII letters, digits and `._-` as they are, anything else `_`,
/// and the real name percent-encoded in `filename*`.
fn content_disposition(name: &str, inline: bool) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = if safe.trim_matches(['.', ' ']).is_empty() {
        "file".to_owned()
    } else {
        safe
    };
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let kind = if inline { "inline" } else { "attachment" };
    format!("{kind}; filename=\"{safe}\"; filename*=UTF-8''{encoded}")
}

fn set(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_http_defines_them() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsked::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeAsked::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsked::Part(90, 99));
        assert_eq!(parse_range("bytes=95-200", 100), RangeAsked::Part(95, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsked::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeAsked::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsked::Whole);
        assert_eq!(parse_range("lines=1-2", 100), RangeAsked::Whole);
        assert_eq!(parse_range("bytes=9-1", 100), RangeAsked::Whole);
    }

    #[test]
    fn a_file_name_cannot_break_out_of_its_header() {
        assert_eq!(
            content_disposition("a\"; evil=\r\n.exe", false),
            "attachment; filename=\"a__ evil___.exe\"; filename*=UTF-8''a%22%3B%20evil%3D%0D%0A.exe"
        );
        assert_eq!(
            content_disposition("été.png", true),
            "inline; filename=\"_t_.png\"; filename*=UTF-8''%C3%A9t%C3%A9.png"
        );
    }
}
