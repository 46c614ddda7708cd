//! The attachments: one GridFS bucket, `attachments`, whose two collections
//! this service owns.
//!
//! - `attachments.files`: one document per stored file, as GridFS writes it
//!   (`length`, `chunkSize`, `uploadDate`, `filename`), with what this
//!   service knows of it under `metadata` ([`FileMeta`]): who uploaded it,
//!   what it is, and once it is in a message, which message and conversation.
//!   A picture's thumbnail is a file of its own, `<id>.thumbnail`, whose
//!   `metadata.thumbnail_of` names the picture; it is attached with it.
//! - `attachments.chunks`: the bytes, `chunkSize` per document, written and
//!   deleted with the files document by the driver's GridFS support; read
//!   directly here to serve a byte range without reading what comes before.
//! - `attachment_uploads`: one document per upload in progress, written
//!   before its first chunk and deleted once it is whole or aborted. One
//!   left behind is an upload whose replica died half way: the sweep
//!   deletes its chunks, which no files document will ever name.
//!
//! Every replica reads and writes the same bucket, so any replica serves
//! any file. The files document is written last, after every chunk: a file
//! exists once it is whole. Attaching a file is one conditional update
//! (uploader, not yet attached), so a file is attached once, by its uploader.

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::GridFsBucketOptions;
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};
use shared_proto::action::{ConversationId, UserId};
use shared_proto::store::StoreError;

/// The bucket's name: its collections are `attachments.files` and
/// `attachments.chunks`.
pub const BUCKET: &str = "attachments";
const FILES: &str = "attachments.files";
const CHUNKS: &str = "attachments.chunks";
const UPLOADS: &str = "attachment_uploads";

/// Pictures are shown inline; anything else is downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Picture,
    File,
    /// A picture's thumbnail, never attached by itself.
    Thumbnail,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Picture => "picture",
            FileKind::File => "file",
            FileKind::Thumbnail => "thumbnail",
        }
    }
}

/// What this service keeps of a file, under the files document's `metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    pub uploader: UserId,
    pub kind: FileKind,
    /// Decided from the bytes, never from the name or the declared type.
    pub content_type: String,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// The key of the message it is attached to; `null` until then.
    #[serde(default)]
    pub attached_to: Option<String>,
    /// The conversation of that message: who may read it may read the file.
    #[serde(default)]
    pub conversation_id: Option<ConversationId>,
    /// For a thumbnail, the picture it shows.
    #[serde(default)]
    pub thumbnail_of: Option<String>,
}

/// A document of `attachments.files`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoredFile {
    #[serde(rename = "_id")]
    pub id: String,
    pub length: i64,
    #[serde(rename = "chunkSize")]
    pub chunk_size: i64,
    #[serde(rename = "uploadDate")]
    pub upload_date: mongodb::bson::DateTime,
    #[serde(default)]
    pub filename: String,
    pub metadata: FileMeta,
}

/// A document of `attachments.chunks`.
#[derive(Debug, Deserialize)]
pub struct Chunk {
    pub n: i64,
    pub data: mongodb::bson::Binary,
}

/// An upload in progress (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadInProgress {
    #[serde(rename = "_id")]
    pub file_id: String,
    pub uploader: UserId,
    pub started_at: mongodb::bson::DateTime,
}

/// The id of a picture's thumbnail.
pub fn thumbnail_id(file_id: &str) -> String {
    format!("{file_id}.thumbnail")
}

/// How attaching a set of files went.
#[derive(Debug, PartialEq, Eq)]
pub enum Attach {
    /// Every file is now (or already was) attached to this message.
    Done,
    /// Some could not be attached (attached elsewhere meanwhile); those that
    /// were attached to this message have been let go again.
    Lost,
}

#[derive(Clone)]
pub struct FileStore {
    pub bucket: GridFsBucket,
    files: Collection<StoredFile>,
    files_written: Collection<Document>,
    chunks: Collection<Chunk>,
    uploads: Collection<UploadInProgress>,
}

impl FileStore {
    pub fn new(db: &Database) -> FileStore {
        let options = GridFsBucketOptions::builder()
            .bucket_name(BUCKET.to_owned())
            .build();
        FileStore {
            bucket: db.gridfs_bucket(options),
            files: db.collection(FILES),
            files_written: db.collection(FILES),
            chunks: db.collection(CHUNKS),
            uploads: db.collection(UPLOADS),
        }
    }

    pub async fn file(&self, id: &str) -> Result<Option<StoredFile>, StoreError> {
        Ok(self.files.find_one(doc! {"_id": id}).await?)
    }

    /// The files with these ids that exist, in one round trip.
    pub async fn files(&self, ids: &[String]) -> Result<Vec<StoredFile>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .files
            .find(doc! {"_id": {"$in": ids}})
            .await?
            .try_collect()
            .await?)
    }

    /// The chunks `first..=last` of a file, in order, a few at a time so
    /// that a download holds little of the file in memory.
    pub async fn chunks(
        &self,
        file_id: &str,
        first: i64,
        last: i64,
    ) -> Result<mongodb::Cursor<Chunk>, StoreError> {
        Ok(self
            .chunks
            .find(doc! {"files_id": file_id, "n": {"$gte": first, "$lte": last}})
            .sort(doc! {"n": 1})
            .batch_size(4)
            .await?)
    }

    /// Attaches `ids` to the message `message_key` in `conversation_id`:
    /// only files `uploader` uploaded and nobody attached yet, or attached to
    /// this very message (a redelivery). One update for the lot, then one
    /// count to see whether all of them are this message's now.
    pub async fn attach(
        &self,
        ids: &[String],
        uploader: &UserId,
        message_key: &str,
        conversation_id: &ConversationId,
    ) -> Result<Attach, StoreError> {
        // Pictures' thumbnails go with them, so that a thumbnail left
        // unattached is one whose picture never was, and is swept with it.
        let with_thumbnails: Vec<String> = ids
            .iter()
            .flat_map(|id| [id.clone(), thumbnail_id(id)])
            .collect();
        self.files_written
            .update_many(
                doc! {
                    "_id": {"$in": with_thumbnails},
                    "metadata.uploader": uploader.as_str(),
                    "metadata.attached_to": Bson::Null,
                },
                doc! {"$set": {
                    "metadata.attached_to": message_key,
                    "metadata.conversation_id": conversation_id.as_str(),
                }},
            )
            .await?;
        let mine = self
            .files_written
            .count_documents(doc! {"_id": {"$in": ids}, "metadata.attached_to": message_key})
            .await?;
        if usize::try_from(mine).is_ok_and(|n| n == ids.len()) {
            return Ok(Attach::Done);
        }
        self.detach(message_key).await?;
        Ok(Attach::Lost)
    }

    /// Lets go of the files attached to a message that was not stored.
    pub async fn detach(&self, message_key: &str) -> Result<(), StoreError> {
        self.files_written
            .update_many(
                doc! {"metadata.attached_to": message_key},
                doc! {"$set": {"metadata.attached_to": Bson::Null, "metadata.conversation_id": Bson::Null}},
            )
            .await?;
        Ok(())
    }

    /// Lets go of the files attached to a message except `kept` (and their
    /// thumbnails): a resend that named other files than the message it
    /// repeats.
    pub async fn detach_except(
        &self,
        message_key: &str,
        kept: &[String],
    ) -> Result<(), StoreError> {
        let kept: Vec<String> = kept
            .iter()
            .flat_map(|id| [id.clone(), thumbnail_id(id)])
            .collect();
        self.files_written
            .update_many(
                doc! {"metadata.attached_to": message_key, "_id": {"$nin": kept}},
                doc! {"$set": {"metadata.attached_to": Bson::Null, "metadata.conversation_id": Bson::Null}},
            )
            .await?;
        Ok(())
    }

    /// Bytes `uploader` keeps in files not attached to any message.
    pub async fn pending_bytes(&self, uploader: &UserId) -> Result<i64, StoreError> {
        let files: Vec<StoredFile> = self
            .files
            .find(doc! {
                "metadata.uploader": uploader.as_str(),
                "metadata.attached_to": Bson::Null,
                "metadata.kind": {"$ne": FileKind::Thumbnail.as_str()},
            })
            .await?
            .try_collect()
            .await?;
        Ok(files.iter().map(|f| f.length).sum())
    }

    /// Files uploaded before `before` and never attached: pictures and
    /// files, and thumbnails whose picture never was (a thumbnail is
    /// attached with its picture).
    pub async fn unattached_before(
        &self,
        before: mongodb::bson::DateTime,
        limit: i64,
    ) -> Result<Vec<StoredFile>, StoreError> {
        Ok(self
            .files
            .find(doc! {
                "uploadDate": {"$lt": before},
                "metadata.attached_to": Bson::Null,
            })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Deletes a file (its document and its chunks); a file already gone
    /// counts as deleted, as another replica may have got there first.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self.bucket.delete(Bson::String(id.to_owned())).await {
            Ok(()) => Ok(()),
            Err(err) if matches!(*err.kind, mongodb::error::ErrorKind::GridFs(_)) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Records that the chunks of `file_id` are about to be written.
    pub async fn begin_upload(&self, file_id: &str, uploader: &UserId) -> Result<(), StoreError> {
        let upload = UploadInProgress {
            file_id: file_id.to_owned(),
            uploader: uploader.clone(),
            started_at: mongodb::bson::DateTime::now(),
        };
        self.uploads.insert_one(upload).await?;
        Ok(())
    }

    /// The upload of `file_id` is whole, or aborted with its chunks.
    pub async fn end_upload(&self, file_id: &str) -> Result<(), StoreError> {
        self.uploads.delete_one(doc! {"_id": file_id}).await?;
        Ok(())
    }

    /// Uploads begun before `before` and never ended.
    pub async fn abandoned_uploads(
        &self,
        before: mongodb::bson::DateTime,
        limit: i64,
    ) -> Result<Vec<UploadInProgress>, StoreError> {
        Ok(self
            .uploads
            .find(doc! {"started_at": {"$lt": before}})
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Deletes what an abandoned upload wrote: its chunks, unless its files
    /// document exists (it was whole, and only its end went unrecorded).
    pub async fn clear_abandoned(&self, file_id: &str) -> Result<(), StoreError> {
        if self.file(file_id).await?.is_none() {
            self.chunks.delete_many(doc! {"files_id": file_id}).await?;
        }
        self.end_upload(file_id).await
    }

    /// How many chunks belong to `file_id`, for checks that nothing of an
    /// abandoned upload stays.
    pub async fn chunk_count(&self, file_id: &str) -> Result<u64, StoreError> {
        Ok(self
            .chunks
            .count_documents(doc! {"files_id": file_id})
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stored_as_lowercase_words() {
        assert_eq!(
            mongodb::bson::to_bson(&FileKind::Picture).expect("bson"),
            Bson::String("picture".into())
        );
        assert_eq!(FileKind::File.as_str(), "file");
    }

    #[test]
    fn a_thumbnail_id_is_a_valid_id_derived_from_its_picture() {
        assert_eq!(thumbnail_id("abc"), "abc.thumbnail");
    }
}
