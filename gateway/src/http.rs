//! The HTTP routes: the WebSocket upgrade at `/` (where the existing clients
//! connect) and `/ws`, the probes `/healthz` and `/readyz`, and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::connection::{self, Context};
use crate::upgrade::WebSocketHandshake;

/// What the routes need.
#[derive(Clone)]
pub struct AppState {
    pub context: Arc<Context>,
    /// True while the bus subscription is up.
    pub listening: Arc<AtomicBool>,
    /// Tracks connection tasks so shutdown can wait for them.
    pub connections: TaskTracker,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(upgrade))
        .route("/ws", get(upgrade))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { state.metrics.render() }),
        )
        .with_state(state)
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

/// An empty allow-list admits every origin (development). Otherwise the
/// `Origin` header must be present and match one entry exactly.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|origin| {
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
    let listening = state.listening.load(Ordering::Relaxed);
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

    #[test]
    fn the_origin_must_match_an_entry_when_a_list_is_set() {
        let mut headers = HeaderMap::new();
        assert!(origin_allowed(&[], &headers), "empty list allows all");
        let list = vec!["https://chat.example.com".to_owned()];
        assert!(!origin_allowed(&list, &headers), "missing origin refused");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example.com"),
        );
        assert!(!origin_allowed(&list, &headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://chat.example.com"),
        );
        assert!(origin_allowed(&list, &headers));
    }
}
