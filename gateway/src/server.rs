//! Serves the gateway's HTTP/1.1 routes on its listener, one task per
//! connection, until told to stop.
//!
//! `axum::serve` would do, except that it hands an upgraded connection over
//! wrapped in its protocol-detection layer, from which the TCP socket cannot be
//! taken back; here hyper serves HTTP/1.1 on the socket itself (see
//! [`crate::upgrade`]).

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// A client gets this long to send its request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping waits for HTTP requests in progress (upgraded
/// connections are not among them: they are the caller's).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Accepts connections until `stop` is cancelled, then lets the requests in
/// progress finish.
pub async fn serve(listener: TcpListener, routes: Router, stop: CancellationToken) {
    let requests = TaskTracker::new();
    loop {
        let socket = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(err) => {
                    // Usually out of file descriptors: back off instead of
                    // spinning; connections closing will free some.
                    warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(routes.clone());
        let stop = stop.clone();
        requests.spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(socket), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                debug!(error = %err, "an HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    requests.close();
    let _ = tokio::time::timeout(STOP_GRACE, requests.wait()).await;
}
