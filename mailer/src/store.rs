//! The `mail_log` collection: one document per job id (`_id`), saying whether
//! the job was sent or given up on. It is what makes sending idempotent: a job
//! delivered again (a redelivered action, a replica that died before
//! acknowledging) is skipped once its document says `sent`.
//!
//! Plain find and upsert only, which FerretDB handles like MongoDB.

use std::future::IntoFuture;
use std::time::Duration;

use mongodb::Collection;
use mongodb::bson::{Document, doc};
use shared_proto::mail::MailJob;
use shared_proto::settings::MongoSettings;
use shared_proto::store::ClientSettings;
pub use shared_proto::store::StoreError;

pub const COLLECTION: &str = "mail_log";

/// How long one operation may take. Without it the driver waits 30 s for a
/// server to appear, which pins a job (and a slot) for no benefit.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Handed to the SMTP server; never send again.
    Sent,
    /// Given up on and put on the dead-letter stream. Not final: an operator
    /// may enqueue the job again, and then it is tried again.
    Dead,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Dead => "dead",
        }
    }

    fn parse(value: &str) -> Option<Status> {
        match value {
            "sent" => Some(Status::Sent),
            "dead" => Some(Status::Dead),
            _ => None,
        }
    }
}

/// A handle on `mail_log`. Cheap to clone.
#[derive(Clone)]
pub struct MailLog {
    collection: Collection<Document>,
    database: mongodb::Database,
}

impl MailLog {
    /// Parses the URI; the connection itself is made on first use, so the
    /// mailer starts even while MongoDB is still coming up.
    pub async fn connect(settings: &MongoSettings) -> Result<MailLog, StoreError> {
        // The driver's own server-selection wait is left as it is: every
        // operation here is bounded by OPERATION_TIMEOUT instead.
        let database = shared_proto::store::connect(settings, ClientSettings::default()).await?;
        Ok(MailLog {
            collection: database.collection(COLLECTION),
            database,
        })
    }

    /// True if the database answers.
    pub async fn ping(&self) -> bool {
        shared_proto::store::ping(&self.database).await
    }

    /// What is recorded about a job, if anything.
    pub async fn status(&self, job_id: &str) -> Result<Option<Status>, StoreError> {
        let found = bounded(
            self.collection
                .find_one(doc! { "_id": job_id })
                .projection(doc! { "status": 1 }),
        )
        .await?;
        Ok(found
            .as_ref()
            .and_then(|document| document.get_str("status").ok())
            .and_then(Status::parse))
    }

    /// Records that a job was sent, after `attempts` tries.
    pub async fn record_sent(&self, job: &MailJob, attempts: u32) -> Result<(), StoreError> {
        let update = doc! { "$set": {
            "status": Status::Sent.as_str(),
            "to": &job.to,
            "subject": &job.subject,
            "sent_at_ms": shared_proto::now_ms(),
            "attempts": i64::from(attempts),
        }};
        bounded(
            self.collection
                .update_one(doc! { "_id": &job.job_id }, update)
                .upsert(true),
        )
        .await?;
        Ok(())
    }

    /// Records that a job was given up on, unless it is already recorded as
    /// sent (a duplicate of the job, handled elsewhere, got through): `sent`
    /// is what keeps it from going out again, so it must not be overwritten.
    pub async fn record_dead(
        &self,
        job: &MailJob,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        let filter = doc! { "_id": &job.job_id, "status": { "$ne": Status::Sent.as_str() } };
        let update = doc! { "$set": {
            "status": Status::Dead.as_str(),
            "to": &job.to,
            "subject": &job.subject,
            "failed_at_ms": shared_proto::now_ms(),
            "attempts": i64::from(attempts),
            "error": error,
        }};
        match bounded(self.collection.update_one(filter, update).upsert(true)).await {
            Ok(_) => Ok(()),
            // The filter missed the `sent` document, so the upsert collided
            // with its `_id`: exactly the case to leave alone.
            Err(err) if err.is_duplicate_key() => Ok(()),
            Err(err) => Err(err),
        }
    }
}

async fn bounded<T>(
    operation: impl IntoFuture<Output = mongodb::error::Result<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, operation.into_future()).await {
        Ok(result) => Ok(result?),
        Err(_elapsed) => Err(StoreError::Timeout(OPERATION_TIMEOUT)),
    }
}
