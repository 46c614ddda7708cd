//! Every Redis key and channel name the system uses, built in one place so
//! that producers and consumers can never disagree.

use crate::routing::Service;

/// Names under one prefix (`switchyard` by default), so that several
/// deployments can share a Redis without seeing each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Names {
            prefix: prefix.into(),
        }
    }

    /// The stream a service reads its actions from.
    pub fn action_stream(&self, service: Service) -> String {
        format!("{}:actions:{}", self.prefix, service.name())
    }

    /// Where a service's worker puts the actions it gave up on (see
    /// `bus::dead_letters`), kept for an operator.
    pub fn dead_letters(&self, service: Service) -> String {
        format!("{}:actions:{}:dead", self.prefix, service.name())
    }

    /// The consumer group through which a service's replicas share its stream.
    pub fn consumer_group(&self, service: Service) -> String {
        format!("{}-{}", self.prefix, service.name())
    }

    /// The stream of mails waiting to be sent.
    pub fn mail_stream(&self) -> String {
        format!("{}:mail", self.prefix)
    }

    /// The consumer group of the mailers.
    pub fn mail_group(&self) -> String {
        format!("{}-mailer", self.prefix)
    }

    /// Mails given up on after the last retry, kept for an operator.
    pub fn mail_dead_letters(&self) -> String {
        format!("{}:mail:dead", self.prefix)
    }

    /// Marks a mail job as enqueued, so a redelivered action enqueues it once.
    pub fn mail_enqueued_marker(&self, job_id: &str) -> String {
        format!("{}:mail:enqueued:{job_id}", self.prefix)
    }

    /// Marks a session as ended until it would have expired. Written before
    /// `USER_LOGOUT` is answered and checked by every gateway when it admits
    /// an action, so no gateway accepts one after the client saw the reply.
    pub fn revoked_session(&self, session_id: &str) -> String {
        format!("{}:revoked:{session_id}", self.prefix)
    }

    /// The user a session acts as, written by auth-service at LOGIN and
    /// FASTLOGIN for as long as the session lasts: how a service that serves
    /// HTTP (attachments) learns who a Bearer token belongs to without
    /// reading auth-service's `sessions` (see `bus::sessions`).
    pub fn session(&self, session_id: &str) -> String {
        format!("{}:session:{session_id}", self.prefix)
    }

    /// Uploads of one user within the current window (see `bus::Bus::count_within`).
    pub fn uploads(&self, user_id: &str) -> String {
        format!("{}:uploads:{user_id}", self.prefix)
    }

    /// The key that signs attachment URLs when none is configured, shared by
    /// every replica of the service that serves them.
    pub fn file_url_key(&self) -> String {
        format!("{}:files:url-key", self.prefix)
    }

    /// A per-user token bucket for one kind of action (see
    /// [`crate::routing::ActionClass`]).
    pub fn user_bucket(&self, user_id: &str, class: &str) -> String {
        format!("{}:limit:{class}:{user_id}", self.prefix)
    }

    /// The open connections of one user, on every gateway (a sorted set of
    /// leases scored by their expiry).
    pub fn user_connections(&self, user_id: &str) -> String {
        format!("{}:conns:{user_id}", self.prefix)
    }

    /// Failed-attempt bookkeeping for one subject (an account, a source
    /// address) of one kind of guess (`login`, ...).
    pub fn attempts(&self, kind: &str, subject: &str) -> String {
        format!("{}:attempts:{kind}:{subject}", self.prefix)
    }

    /// The users with a live connection lease anywhere, scored by when their
    /// latest lease lapses: where lapsed users are found and announced
    /// offline.
    pub fn online_users(&self) -> String {
        format!("{}:presence:online", self.prefix)
    }

    /// Set while a user's `TYPING` in a conversation was forwarded lately:
    /// another within that time is not forwarded.
    pub fn typing(&self, user_id: &str, conversation_id: &str) -> String {
        format!("{}:typing:{user_id}:{conversation_id}", self.prefix)
    }

    /// Set once auth-service has told chat-service every existing profile
    /// (for deployments from before chat-service kept its own copy).
    pub fn profiles_published_marker(&self) -> String {
        format!("{}:profiles:published", self.prefix)
    }

    /// The events kept for one user's `SYNC`: a stream whose entry ids come
    /// from [`Names::event_clock`].
    pub fn user_history(&self, user_id: &str) -> String {
        format!("{}:history:user:{user_id}", self.prefix)
    }

    /// The events kept for the members of one group, once per group.
    pub fn group_history(&self, group_id: &str) -> String {
        format!("{}:history:group:{group_id}", self.prefix)
    }

    /// The one clock every kept event takes its id from, so that ids order
    /// events across histories (a stream holding only its last entry).
    pub fn event_clock(&self) -> String {
        format!("{}:history:clock", self.prefix)
    }

    /// The life of the histories: set anew when Redis has lost them.
    pub fn history_epoch(&self) -> String {
        format!("{}:history:epoch", self.prefix)
    }

    /// chat-service's copy of a user's memberships (group id to entry, see
    /// `bus::versioned_map`), read at each login.
    pub fn user_groups_copy(&self, user_id: &str) -> String {
        format!("{}:chat:memberships:{user_id}", self.prefix)
    }

    /// auth-service's copy of a session, for resuming it without the
    /// database (see `auth-service/src/resume_cache.rs`).
    pub fn cached_session(&self, token_hash: &str) -> String {
        format!("{}:auth:session:{token_hash}", self.prefix)
    }

    /// auth-service's copy of what a login shows of a user.
    pub fn user_card(&self, user_id: &str) -> String {
        format!("{}:auth:card:{user_id}", self.prefix)
    }

    /// The channel a gateway listens on for replies to its own connections.
    pub fn gateway_channel(&self, gateway_id: &str) -> String {
        format!("{}:gw:{gateway_id}", self.prefix)
    }

    /// The stream of one partition of a service's work (see
    /// [`crate::partitions`]).
    pub fn partition_stream(&self, service: Service, partition: u32) -> String {
        format!("{}:actions:{}:p{partition}", self.prefix, service.name())
    }

    /// How long entries have waited on `stream` before they were done, as
    /// each replica reading it measures (see `bus::queue_delay`).
    pub fn stream_queue_delay(&self, stream: &str) -> String {
        format!("{stream}:delay")
    }

    /// How late each gateway lately handed out the events published to it
    /// (see `bus::queue_delay`).
    pub fn delivery_delay(&self) -> String {
        format!("{}:delivery:delay", self.prefix)
    }

    /// Who reads a partition's stream now: one replica's lease.
    pub fn partition_lease(&self, service: Service, partition: u32) -> String {
        format!("{}:lease:{}:p{partition}", self.prefix, service.name())
    }

    /// The replicas sharing a service's partitions, each scored by when it
    /// last said it was alive.
    pub fn partition_replicas(&self, service: Service) -> String {
        format!("{}:replicas:{}", self.prefix, service.name())
    }

    /// How many partitions a service's work is split into, as agreed by the
    /// first process to start.
    pub fn partition_count(&self, service: Service) -> String {
        format!("{}:partitions:{}", self.prefix, service.name())
    }

    /// The channel on which chat-service's replicas tell each other what
    /// changed, so each forgets what it remembered of it.
    pub fn chat_changes(&self) -> String {
        format!("{}:chat:changes", self.prefix)
    }

    /// The channel for events to every connection of one user, on any gateway.
    pub fn user_channel(&self, user_id: &str) -> String {
        format!("{}:user:{user_id}", self.prefix)
    }

    /// The channel for events to every member of one group, on any gateway.
    pub fn group_channel(&self, group_id: &str) -> String {
        format!("{}:group:{group_id}", self.prefix)
    }
}

impl Default for Names {
    fn default() -> Self {
        Names::new("switchyard")
    }
}
