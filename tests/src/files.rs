//! Attachments as a client handles them: uploads and downloads over plain
//! HTTP (through the front door or straight to a chat-service), uploads cut
//! off or oversized over a raw socket, and the pictures a test sends.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::Client;

/// How long one HTTP exchange may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The collections of the attachments' GridFS bucket.
pub const ATTACHMENT_FILES: &str = "attachments.files";
pub const ATTACHMENT_CHUNKS: &str = "attachments.chunks";

/// An HTTP answer: status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    ///
    /// # Panics
    /// If it is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "a {} answer whose body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header's value, or "" if absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts a JSON refusal: `status`, `rocketStatus` `code` and a sentence.
    #[track_caller]
    pub fn assert_refused(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got: {}",
            String::from_utf8_lossy(&self.body)
        );
        let json = self.json();
        assert_eq!(json["rocketStatus"], code, "{json}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "a refusal says why: {json}"
        );
        assert_eq!(self.header("x-content-type-options"), "nosniff");
        assert!(!self.header("content-security-policy").is_empty());
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .unwrap_or_else(|e| panic!("building an HTTP client: {e}"))
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("HTTP request failed: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("reading an HTTP body: {e}"))
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// `POST <base>/files?name=<name>` with `bytes` as the body, declared as
/// `content_type`, with the session `token` if any.
pub async fn upload(
    base: &str,
    token: Option<&str>,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> Answer {
    let mut request = http()
        .post(format!("{base}/files"))
        .query(&[("name", name)])
        .header("content-type", content_type)
        .body(bytes.to_vec());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer(request).await
}

/// Uploads and returns the `201` answer's JSON.
///
/// # Panics
/// If the upload is not answered `201`.
pub async fn uploaded(
    base: &str,
    token: &str,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> Value {
    let answer = upload(base, Some(token), name, content_type, bytes).await;
    assert_eq!(
        answer.status,
        201,
        "upload of {name}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()
}

/// `GET <base><path>` (a path such as `/files/<id>`, or a signed URL), with
/// the session `token` and a `Range` if given.
pub async fn download(base: &str, path: &str, token: Option<&str>, range: Option<&str>) -> Answer {
    let mut request = http().get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(range) = range {
        request = request.header("range", range);
    }
    answer(request).await
}

/// The host and port of an `http://host:port` base.
fn address(base: &str) -> String {
    base.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Starts `POST /files?name=<name>` over a raw socket announcing `length`
/// bytes, sends `first` of them, and returns the socket, still open, for
/// the test to cut off or finish.
pub async fn start_upload(
    base: &str,
    token: &str,
    name: &str,
    length: usize,
    first: &[u8],
) -> TcpStream {
    let host = address(base);
    let mut socket = TcpStream::connect(&host)
        .await
        .unwrap_or_else(|e| panic!("connecting to {host}: {e}"));
    let head = format!(
        "POST /files?name={name} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    );
    socket
        .write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("sending the upload's headers: {e}"));
    socket
        .write_all(first)
        .await
        .unwrap_or_else(|e| panic!("sending the upload's first bytes: {e}"));
    socket
}

/// What an upload sent over a raw socket got: the status line's code (0 if
/// none came) and how many body bytes had been sent when it came.
#[derive(Debug)]
pub struct RawOutcome {
    pub status: u16,
    pub sent: usize,
    pub response: String,
}

/// Sends `total` bytes of a file as a chunked body (no `Content-Length`,
/// so only the bytes tell the size), 64 KiB at a time, and stops sending
/// as soon as an answer arrives.
pub async fn chunked_upload(base: &str, token: &str, name: &str, total: usize) -> RawOutcome {
    let host = address(base);
    let socket = TcpStream::connect(&host)
        .await
        .unwrap_or_else(|e| panic!("connecting to {host}: {e}"));
    let (mut reader, mut writer) = socket.into_split();
    let head = format!(
        "POST /files?name={name} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    writer
        .write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("sending the upload's headers: {e}"));
    let read = tokio::spawn(async move {
        let mut response = Vec::new();
        let mut buffer = [0_u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout(HTTP_TIMEOUT, reader.read(&mut buffer)).await {
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buffer[..n]);
            if response.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&response).into_owned()
    });
    let piece = vec![b'z'; 64 * 1024];
    let mut sent = 0;
    while sent < total && !read.is_finished() {
        let frame = format!("{:x}\r\n", piece.len());
        let ok = writer.write_all(frame.as_bytes()).await.is_ok()
            && writer.write_all(&piece).await.is_ok()
            && writer.write_all(b"\r\n").await.is_ok();
        if !ok {
            break;
        }
        sent += piece.len();
        // At the pace of a fast client, so the answer can overtake the body.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if sent >= total {
        let _ = writer.write_all(b"0\r\n\r\n").await;
    }
    let response = read
        .await
        .unwrap_or_else(|e| panic!("reading the upload's answer: {e}"));
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    RawOutcome {
        status,
        sent,
        response,
    }
}

/// A PNG of `width` × `height` (a colour gradient), with a `tEXt` chunk
/// `keyword`: `text` right after its header if given, the way cameras and
/// phones store where a picture was taken.
pub fn png(width: u32, height: u32, text: Option<(&str, &str)>) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            120,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("encoding a PNG: {e}"));
    let bytes = out.into_inner();
    let Some((keyword, text)) = text else {
        return bytes;
    };
    // Signature (8) and IHDR (4 + 4 + 13 + 4).
    let (start, rest) = bytes.split_at(33);
    let mut data = keyword.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(text.as_bytes());
    let mut with_text = start.to_vec();
    with_text.extend(png_chunk(b"tEXt", &data));
    with_text.extend_from_slice(rest);
    with_text
}

/// A PNG whose header announces `width` × `height` greyscale pixels, with
/// only the first rows of zeros behind it: a few kilobytes that would
/// decode into gigabytes.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // 8-bit greyscale, deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 0, 0, 0, 0]);
    bytes.extend(png_chunk(b"IHDR", &header));
    // A zlib stream of one stored deflate block of zeros.
    let zeros = vec![0_u8; 4000];
    let mut idat = vec![0x78, 0x01, 0x01];
    let len = u16::try_from(zeros.len()).unwrap_or(u16::MAX);
    idat.extend_from_slice(&len.to_le_bytes());
    idat.extend_from_slice(&(!len).to_le_bytes());
    idat.extend_from_slice(&zeros);
    idat.extend_from_slice(&adler32(&zeros).to_be_bytes());
    bytes.extend(png_chunk(b"IDAT", &idat));
    bytes.extend(png_chunk(b"IEND", &[]));
    bytes
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = u32::try_from(data.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let mut covered = kind.to_vec();
    covered.extend_from_slice(data);
    chunk.extend_from_slice(&crc32(&covered).to_be_bytes());
    chunk
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1_u32, 0_u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

/// Bytes no format claims: a file, not a picture.
pub fn file_bytes(length: usize) -> Vec<u8> {
    (0..length).map(|i| (i * 7 % 251) as u8).collect()
}

impl Client {
    /// `SEND_MESSAGE` to `to` (`{"userId"}` or `{"groupId"}`) with
    /// `attachments`; replies `MESSAGE_SENT` or a refusal.
    pub async fn send_files(
        &mut self,
        to: Value,
        text: &str,
        client_msg_id: &str,
        attachments: &[&str],
    ) -> Value {
        self.chat(
            "SEND_MESSAGE",
            json!({"to": to, "text": text, "clientMsgId": client_msg_id, "attachments": attachments}),
        )
        .await
    }
}
