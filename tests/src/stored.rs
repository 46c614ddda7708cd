//! What the services stored, read straight from the database, so that a
//! test can check the effect of an action and not only its reply.
//!
//! Collections (database `switchyard`): `users` (one per account, keyed by a
//! generated id, unique on `email`), `sessions` (keyed by the SHA-256 of the
//! token) and the mailer's `mail_log`.

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};

use crate::stack::Stack;

/// The accounts collection.
pub const USERS: &str = "users";
/// The sessions collection.
pub const SESSIONS: &str = "sessions";

impl Stack {
    /// The stored account with this (normalised) e-mail address, if any.
    ///
    /// # Panics
    /// If the database does not answer.
    pub async fn stored_user(&self, email: &str) -> Option<Document> {
        self.mongo()
            .collection::<Document>(USERS)
            .find_one(doc! {"email": email})
            .await
            .unwrap_or_else(|e| panic!("reading the account of {email}: {e}"))
    }

    /// Every document of a collection.
    ///
    /// # Panics
    /// If the database does not answer.
    pub async fn stored_documents(&self, collection: &str) -> Vec<Document> {
        self.mongo()
            .collection::<Document>(collection)
            .find(doc! {})
            .await
            .unwrap_or_else(|e| panic!("reading {collection}: {e}"))
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("reading {collection}: {e}"))
    }

    /// Every document of every collection of the database, with the name of
    /// its collection: the whole of what the services keep.
    ///
    /// # Panics
    /// If the database does not answer.
    pub async fn everything_stored(&self) -> Vec<(String, Document)> {
        let mut names = self
            .mongo()
            .list_collection_names()
            .await
            .unwrap_or_else(|e| panic!("listing the collections: {e}"));
        names.sort();
        let mut all = Vec::new();
        for name in names {
            for document in self.stored_documents(&name).await {
                all.push((name.clone(), document));
            }
        }
        all
    }
}
