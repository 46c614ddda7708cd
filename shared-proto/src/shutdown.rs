//! Graceful shutdown, the same in every binary: SIGTERM or Ctrl-C cancels one
//! token that every long-running task watches.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// A token cancelled on the first SIGTERM or Ctrl-C.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `attempt` until it succeeds, backing off from 200 ms to 5 s between
/// tries and logging each failure; gives up only when `shutdown` fires (also
/// in the middle of an attempt). For startup steps that must not be skipped,
/// like reaching Redis or creating the indexes uniqueness depends on.
pub async fn retry_until_ok<T, E, F, Fut>(
    shutdown: &CancellationToken,
    what: &str,
    mut attempt: F,
) -> anyhow::Result<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => anyhow::bail!("stopped before being able to {what}"),
            result = attempt() => result,
        };
        match result {
            Ok(value) => return Ok(value),
            Err(err) => tracing::warn!(error = %err, "cannot {what} yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => anyhow::bail!("stopped before being able to {what}"),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
}
