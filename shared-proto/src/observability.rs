//! Prometheus metrics and the small HTTP server every service runs beside
//! its stream worker: `/healthz`, `/readyz` and `/metrics`. The gateway mounts
//! the same `/metrics` on its own port.
//!
//! Metric names are the contract with dashboards; they are listed in
//! docs/metrics.md.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Latency buckets, in seconds: from a fast reply on loopback to the
/// gateway's 10 s timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The recorder installed, if any. A lock rather than a `OnceLock`:
/// installing can fail, and two callers at once (tests starting services
/// side by side in one process) must not both try.
static INSTALLED: std::sync::Mutex<Option<PrometheusHandle>> = std::sync::Mutex::new(None);

/// Installs the process-wide recorder (once; later calls return the same
/// handle) and keeps its histograms trimmed.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    *installed = Some(handle.clone());
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Answers whether the process can do its work right now.
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Wraps an async check as a [`ReadinessCheck`].
pub fn readiness<F, Fut>(check: F) -> ReadinessCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    Arc::new(move || Box::pin(check()))
}

#[derive(Clone)]
struct ProbeState {
    metrics: PrometheusHandle,
    ready: ReadinessCheck,
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listen` until `shutdown`.
pub async fn serve(
    listen: &str,
    metrics: PrometheusHandle,
    ready: ReadinessCheck,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    info!(addr = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(state): State<ProbeState>| async move { state.metrics.render() }),
        )
        .with_state(ProbeState { metrics, ready });
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    }))
}

async fn readyz(State(state): State<ProbeState>) -> Response {
    if (state.ready)().await {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_starting_side_by_side_share_one_recorder() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let _inside = runtime.enter();
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<_> = std::thread::scope(|scope| {
            let starting: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        let _inside = runtime.enter();
                        barrier.wait();
                        install().map_err(|err| err.to_string())
                    })
                })
                .collect();
            starting
                .into_iter()
                .map(|t| t.join().expect("an install does not panic"))
                .collect()
        });
        for result in &results {
            assert!(result.is_ok(), "{result:?}");
        }
        metrics::counter!("switchyard_test_installs_total").increment(1);
        let rendered = results[0].as_ref().expect("installed").render();
        assert!(
            rendered.contains("switchyard_test_installs_total 1"),
            "{rendered}"
        );
    }
}
