//! The HTTP routes: the WebSocket upgrade at `/` (where the existing clients
//! connect) and `/ws`, the web client (a plain `GET /`, and its files under
//! `/client/`), the probes `/healthz` and `/readyz`, and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::connection::{self, Context};
use crate::upgrade::{NotAnUpgrade, WebSocketHandshake};
use crate::web;

/// What the routes need.
#[derive(Clone)]
pub struct AppState {
    pub context: Arc<Context>,
    /// Tracks connection tasks so shutdown can wait for them.
    pub connections: TaskTracker,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/ws", get(upgrade))
        .route("/client/{*path}", get(web::asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { state.metrics.render() }),
        )
        .with_state(state)
}

/// `/`: the web client for a plain request, the WebSocket for an upgrade.
///
/// A request that asks for any upgrade (it has an `Upgrade` header) is
/// handled exactly as at `/ws`, refusals included; only a request that asks
/// for none gets the page, so existing clients see no difference.
async fn root(
    state: State<AppState>,
    headers: HeaderMap,
    handshake: Result<WebSocketHandshake, NotAnUpgrade>,
) -> Response {
    if !headers.contains_key(header::UPGRADE) {
        return web::page();
    }
    match handshake {
        Ok(handshake) => upgrade(state, headers, handshake).await,
        Err(refusal) => refusal.into_response(),
    }
}

async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    handshake: WebSocketHandshake,
) -> Response {
    let settings = &state.context.settings;
    if !origin_allowed(&settings.allowed_origins, &headers) {
        info!(origin = ?headers.get(header::ORIGIN), "refused an upgrade from an origin not on the allow-list");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    if state.context.draining.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let forwarded_addr = settings
        .client_addr_header
        .as_deref()
        .and_then(|name| headers.get(name))
        .and_then(|value| value.to_str().ok())
        .map(|value| shared_proto::client::excerpt(value.trim(), 64));
    let context = state.context.clone();
    let connections = state.connections.clone();
    handshake.accept(move |socket, already_read| {
        connections.track_future(connection::serve(
            socket,
            already_read,
            forwarded_addr,
            context,
        ))
    })
}

/// Whether an upgrade may proceed, judged by its `Origin` header.
///
/// Browsers always send `Origin` on a WebSocket upgrade, and a page cannot
/// change it; that is what the check protects against: a page on another
/// site opening a socket with the user's cookies and network position. A
/// request without `Origin` comes from a non-browser client (a native app,
/// a test client, the load generator), which could send any `Origin` it
/// liked, so it is admitted whatever the list. A request with `Origin` must
/// match an entry exactly (a trailing `/` aside) when the list is non-empty;
/// an empty list admits every origin, and the gateway warns about it at
/// start-up.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    if allowed.is_empty() {
        return true;
    }
    origin.to_str().is_ok_and(|origin| {
        allowed
            .iter()
            .any(|a| a.trim_end_matches('/') == origin.trim_end_matches('/'))
    })
}

/// The process is alive and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to take clients: Redis answers and the replies subscription is up.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.context.draining.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let listening = state.context.listening.load(Ordering::Acquire);
    if listening && state.context.bus.is_reachable().await {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_origin(origin: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
        headers
    }

    #[test]
    fn the_origin_must_match_an_entry_when_a_list_is_set() {
        let list = vec![
            "https://chat.example.com".to_owned(),
            "http://127.0.0.1:8080/".to_owned(),
        ];
        assert!(!origin_allowed(
            &list,
            &with_origin("https://evil.example.com")
        ));
        assert!(
            !origin_allowed(&list, &with_origin("http://chat.example.com")),
            "the scheme is part of the origin"
        );
        assert!(
            !origin_allowed(&list, &with_origin("https://chat.example.com:8443")),
            "the port is part of the origin"
        );
        assert!(
            !origin_allowed(&list, &with_origin("null")),
            "a sandboxed page or a file says `null`"
        );
        assert!(origin_allowed(
            &list,
            &with_origin("https://chat.example.com")
        ));
        assert!(
            origin_allowed(&list, &with_origin("http://127.0.0.1:8080")),
            "a trailing slash on either side does not matter"
        );
    }

    #[test]
    fn a_request_without_origin_is_a_non_browser_client_and_is_admitted() {
        let list = vec!["https://chat.example.com".to_owned()];
        assert!(origin_allowed(&list, &HeaderMap::new()));
        assert!(origin_allowed(&[], &HeaderMap::new()));
    }

    #[test]
    fn an_empty_list_admits_every_origin() {
        assert!(origin_allowed(
            &[],
            &with_origin("https://evil.example.com")
        ));
        assert!(origin_allowed(&[], &with_origin("null")));
    }

    #[test]
    fn an_origin_that_is_not_text_is_refused() {
        let list = vec!["https://chat.example.com".to_owned()];
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_bytes(b"https://chat.example.com\xff").expect("a valid header value"),
        );
        assert!(!origin_allowed(&list, &headers));
    }
}
