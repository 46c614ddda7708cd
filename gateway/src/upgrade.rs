//! The WebSocket opening handshake (RFC 6455, 4.2) on an HTTP/1.1 request,
//! handing the TCP socket itself to the connection.
//!
//! The gateway writes frames to the socket directly (see
//! [`crate::socket_writer`]), so it needs the socket, not an upgraded stream
//! behind HTTP's layers; [`crate::server`] serves HTTP so that the socket can
//! be taken back after the upgrade.

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, warn};

/// A valid WebSocket upgrade request, ready to be accepted.
pub struct WebSocketHandshake {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade; the answer names the header.
#[derive(Debug)]
pub struct NotAnUpgrade(StatusCode, &'static str);

impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketHandshake {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, NotAnUpgrade> {
        let bad = |why| Err(NotAnUpgrade(StatusCode::BAD_REQUEST, why));
        if parts.method != Method::GET {
            return Err(NotAnUpgrade(
                StatusCode::METHOD_NOT_ALLOWED,
                "A WebSocket upgrade is a GET request.\n",
            ));
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return bad("The Connection header must include \"upgrade\".\n");
        }
        if !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return bad("The Upgrade header must be \"websocket\".\n");
        }
        if !has_token(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return bad("The Sec-WebSocket-Version header must be 13.\n");
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return bad("The Sec-WebSocket-Key header is missing.\n");
        };
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(NotAnUpgrade(
                StatusCode::UPGRADE_REQUIRED,
                "This connection cannot be upgraded.\n",
            ));
        };
        Ok(WebSocketHandshake { key, on_upgrade })
    }
}

impl WebSocketHandshake {
    /// Answers the handshake; once the client has it, `serve` gets the socket
    /// and whatever the client sent after its request.
    pub fn accept<F, Fut>(self, serve: F) -> Response
    where
        F: FnOnce(TcpStream, Vec<u8>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    debug!(error = %err, "the client left during the upgrade");
                    return;
                }
            };
            match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => {
                    // `read_buf` is a view into hyper's whole read buffer
                    // (8 KiB): copied out and dropped here, the buffer is
                    // freed now instead of when the connection ends.
                    let already_read = parts.read_buf.to_vec();
                    drop(parts.read_buf);
                    serve(parts.io.into_inner(), already_read).await
                }
                // Only if the gateway were served by something other than
                // crate::server: a bug, not a client's doing.
                Err(_) => warn!("an upgraded connection is not a TCP socket; dropping it"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
            ],
            [(header::SEC_WEBSOCKET_ACCEPT, accept)],
        )
            .into_response()
    }
}

/// True if the header's comma-separated values include `token`, in any case.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|value| value.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tokens_are_matched_whole_and_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(has_token(&headers, header::CONNECTION, "upgrade"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgraded"));
        assert!(!has_token(&headers, header::CONNECTION, "upgrade"));
        assert!(!has_token(&headers, header::UPGRADE, "websocket"));
    }
}
