//! Deletes files nobody attached to a message within the allowed time, with
//! their thumbnails, and the chunks of uploads abandoned half way by a
//! replica that died (the same time after they began). Every replica sweeps;
//! deleting a file another replica deleted first is no error.

use std::time::Duration;

use mongodb::bson::DateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::files::{FileKind, FileStore, thumbnail_id};

/// Files deleted per round at most, so a round stays short.
const PER_ROUND: i64 = 200;

/// Sweeps every `interval` until `shutdown`.
pub async fn run(files: FileStore, ttl: Duration, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sweep_once(&files, ttl).await {
            Ok(0) => {}
            Ok(deleted) => {
                metrics::counter!("switchyard_files_swept_total")
                    .increment(u64::try_from(deleted).unwrap_or(0));
                info!(deleted, "deleted files never attached to a message");
            }
            Err(err) => warn!(error = %err, "could not delete never-attached files"),
        }
    }
}

/// Deletes the never-attached files uploaded more than `ttl` ago; returns
/// how many.
pub async fn sweep_once(
    files: &FileStore,
    ttl: Duration,
) -> Result<usize, shared_proto::store::StoreError> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let before = DateTime::from_millis(DateTime::now().timestamp_millis().saturating_sub(ttl_ms));
    let stale = files.unattached_before(before, PER_ROUND).await?;
    for file in &stale {
        if file.metadata.kind == FileKind::Picture {
            files.delete(&thumbnail_id(&file.id)).await?;
        }
        files.delete(&file.id).await?;
    }
    let abandoned = files.abandoned_uploads(before, PER_ROUND).await?;
    for upload in &abandoned {
        files.clear_abandoned(&upload.file_id).await?;
    }
    Ok(stale.len() + abandoned.len())
}
