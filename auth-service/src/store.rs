//! The `users` and `sessions` collections.
//!
//! auth-service owns both; no other service reads or writes them. A user's
//! public profile fields reach chat-service, which keeps a copy to show and
//! search, as `PROFILE_CHANGED` actions (see [`crate::profiles`]).
//! Nothing here relies on transactions or TTL indexes (FerretDB has neither):
//! every multi-step change is made safe by conditional single-document
//! updates, and expiry is checked in code. Counting guesses is not done
//! here: FerretDB 1.x applies an update as a read followed by a write, so two
//! concurrent increments can both pass one filter; Redis counts them (see
//! [`crate::limits`]).

use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use serde::{Deserialize, Serialize};
use shared_proto::action::UserId;
use shared_proto::settings::MongoSettings;
pub use shared_proto::store::StoreError;
use shared_proto::store::{ClientSettings, is_duplicate_key};

/// The public profile shown to the user and, in part, to others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub nickname: String,
    /// Lower-cased nickname, for case-insensitive prefix search on an index.
    pub nickname_lower: String,
    pub points: i64,
    pub rank: String,
    pub permission: String,
    pub age: String,
    pub country: String,
    pub ban: bool,
    pub profile_url: String,
    /// Set anew by every change (ms since the epoch): the copy chat-service
    /// keeps applies a change only if it is newer than what it holds.
    #[serde(default)]
    pub version: i64,
}

impl Profile {
    /// The original server's defaults for a new account.
    pub fn new_account(nickname: String) -> Self {
        Profile {
            nickname_lower: nickname.to_lowercase(),
            nickname,
            points: 1000,
            rank: "junior".into(),
            permission: "basic".into(),
            age: "any".into(),
            country: "any".into(),
            ban: false,
            profile_url: "/imgs/default".into(),
            version: 0,
        }
    }
}

/// A confirmation code waiting to be typed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCode {
    pub hash: String,
    pub salt: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    /// Tries handed out so far. Redis counts them atomically (see
    /// [`crate::limits::take_code_try`]); this is the durable record, which
    /// the count never goes below.
    pub attempts: i64,
    /// The action that issued it: a redelivered action recognises its own
    /// code, and the code's tries are counted under this name.
    pub issued_by_action: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "_id")]
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub confirmed: bool,
    pub created_at_ms: i64,
    pub registered_by_action: String,
    #[serde(default)]
    pub confirmed_by_action: Option<String>,
    #[serde(default)]
    pub code: Option<PendingCode>,
    pub profile: Profile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// SHA-256 of the token: the token itself is never stored.
    #[serde(rename = "_id")]
    pub token_hash: String,
    pub user_id: UserId,
    pub email: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub created_by_action: String,
    pub revoked: bool,
    #[serde(default)]
    pub revoked_by_action: Option<String>,
}

/// What inserting a new user did.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    Created,
    EmailTaken,
}

#[derive(Clone)]
pub struct Store {
    database: mongodb::Database,
    users: Collection<User>,
    sessions: Collection<Session>,
}

impl Store {
    /// Connects lazily (the driver retries by itself); operations fail after
    /// a few seconds when the server is down, so clients hear about it.
    pub async fn connect(settings: &MongoSettings) -> Result<Store, StoreError> {
        let database =
            shared_proto::store::connect(settings, ClientSettings::failing_fast("auth-service"))
                .await?;
        Ok(Store {
            database: database.clone(),
            users: database.collection("users"),
            sessions: database.collection("sessions"),
        })
    }

    /// Creates the indexes the queries need; the unique e-mail index is what
    /// makes two concurrent registrations of one address end in one account.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let unique = IndexOptions::builder().unique(true).build();
        self.users
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"email": 1})
                    .options(unique)
                    .build(),
            )
            .await?;
        self.sessions
            .create_index(IndexModel::builder().keys(doc! {"user_id": 1}).build())
            .await?;
        self.sessions
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"expires_at_ms": 1})
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// True if the database answers.
    pub async fn ping(&self) -> bool {
        shared_proto::store::ping(&self.database).await
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        Ok(self.users.find_one(doc! {"email": email}).await?)
    }

    pub async fn user_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        Ok(self.users.find_one(doc! {"_id": id.as_str()}).await?)
    }

    pub async fn insert_user(&self, user: &User) -> Result<Inserted, StoreError> {
        match self.users.insert_one(user).await {
            Ok(_) => Ok(Inserted::Created),
            Err(err) if is_duplicate_key(&err) => Ok(Inserted::EmailTaken),
            Err(err) => Err(err.into()),
        }
    }

    /// Replaces the pending code of an unconfirmed user. `only_if` narrows the
    /// match further (e.g. to the action that created the account).
    pub async fn replace_code(
        &self,
        user_id: &UserId,
        code: &PendingCode,
        only_if: Document,
    ) -> Result<bool, StoreError> {
        let mut filter = doc! {"_id": user_id.as_str(), "confirmed": false};
        filter.extend(only_if);
        let code = mongodb::bson::to_bson(code)?;
        let result = self
            .users
            .update_one(filter, doc! {"$set": {"code": code}})
            .await?;
        Ok(result.matched_count == 1)
    }

    /// Records that `tries` tries of the code issued by `issued_by` were
    /// handed out (see [`crate::limits::take_code_try`], which counts them);
    /// never lowers the number.
    pub async fn record_code_tries(
        &self,
        user_id: &UserId,
        issued_by: &str,
        tries: i64,
    ) -> Result<(), StoreError> {
        self.users
            .update_one(
                doc! {
                    "_id": user_id.as_str(),
                    "confirmed": false,
                    "code.issued_by_action": issued_by,
                    "code.attempts": {"$lt": tries},
                },
                doc! {"$set": {"code.attempts": tries}},
            )
            .await?;
        Ok(())
    }

    /// Sets the nickname of a confirmed account and returns the account as
    /// it is afterwards, or `None` if there is no such account.
    pub async fn set_nickname(
        &self,
        user_id: &UserId,
        nickname: &str,
        version: i64,
    ) -> Result<Option<User>, StoreError> {
        Ok(self
            .users
            .find_one_and_update(
                doc! {"_id": user_id.as_str(), "confirmed": true},
                doc! {"$set": {
                    "profile.nickname": nickname,
                    "profile.nickname_lower": nickname.to_lowercase(),
                    "profile.version": version,
                }},
            )
            .return_document(mongodb::options::ReturnDocument::After)
            .await?)
    }

    /// Up to `limit` confirmed accounts with ids after `after`, in id order:
    /// one page of a walk over every account.
    pub async fn confirmed_users_after(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        use futures_util::TryStreamExt;
        Ok(self
            .users
            .find(doc! {"_id": {"$gt": after}, "confirmed": true})
            .sort(doc! {"_id": 1})
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Marks the account confirmed and drops its code.
    pub async fn confirm(&self, user_id: &UserId, action_id: &str) -> Result<bool, StoreError> {
        let result = self
            .users
            .update_one(
                doc! {"_id": user_id.as_str(), "confirmed": false},
                doc! {"$set": {"confirmed": true, "confirmed_by_action": action_id}, "$unset": {"code": ""}},
            )
            .await?;
        Ok(result.modified_count == 1)
    }

    pub async fn insert_session(&self, session: &Session) -> Result<(), StoreError> {
        self.sessions.insert_one(session).await?;
        Ok(())
    }

    pub async fn session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.sessions.find_one(doc! {"_id": token_hash}).await?)
    }

    /// Revokes a session; true if this call (or an earlier delivery of the
    /// same action) revoked it.
    pub async fn revoke_session(
        &self,
        token_hash: &str,
        action_id: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .sessions
            .update_one(
                doc! {"_id": token_hash, "revoked": false},
                doc! {"$set": {"revoked": true, "revoked_by_action": action_id}},
            )
            .await?;
        if result.modified_count == 1 {
            return Ok(true);
        }
        Ok(self
            .session(token_hash)
            .await?
            .is_some_and(|s| s.revoked_by_action.as_deref() == Some(action_id)))
    }

    /// Deletes sessions that expired before `before_ms`.
    pub async fn delete_expired_sessions(&self, before_ms: i64) -> Result<u64, StoreError> {
        let result = self
            .sessions
            .delete_many(doc! {"expires_at_ms": {"$lt": before_ms}})
            .await?;
        Ok(result.deleted_count)
    }
}
