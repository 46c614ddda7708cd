//! Letting a connection in as the user of a login reply (`LOGIN`,
//! `FASTLOGIN`), and answering it only once the connection is ready: it acts
//! as the user, holds a connection lease, and the subscriptions that bring
//! the user's events and their groups' events are in place at Redis. A
//! client that reads `USER_LOGGED` may act at once and misses nothing sent
//! to it from then on.
//!
//! The user's groups come from chat-service, asked with `SESSION_STARTED`, a
//! request of the gateway's own: its answer, `SESSION_READY` with the group
//! ids, comes back on this replica's channel like any reply and is handed
//! here instead of to a client.
//!
//! If chat-service does not answer within `login_setup_ms`, the login is
//! answered anyway: a login does not wait on chat. The question is asked
//! again (after the action timeout, then twice as long each time, up to a
//! minute) while the connection stays logged in with that session, and the
//! group events reach it from the answer on. Likewise if Redis does not
//! confirm a subscription within a couple of seconds: the listener makes up
//! for it when Redis is back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shared_proto::bus::Bus;
use shared_proto::client::ServerFrame;
use shared_proto::envelope::{ActionRequest, Identity, Origin};
use shared_proto::routing::{SESSION_READY, SESSION_STARTED, Service};
use shared_proto::status::ErrorCode;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, warn};

use crate::hub::{ConnectionHandle, Hub, Session};
use crate::leases::Leases;

/// The longest pause between two questions for a user's groups.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

/// How long a login reply may wait for the user's channel to be listened to:
/// a round trip to Redis, unless Redis is away.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// Logins under way on this replica, and the questions they wait on.
pub struct Logins {
    hub: Arc<Hub>,
    bus: Bus,
    leases: Leases,
    /// How long a login reply may wait for the connection's subscriptions.
    setup: Duration,
    /// How long to wait for chat-service before asking again.
    retry_after: Duration,
    /// Questions asked and not yet answered, by action id.
    waiting: Mutex<HashMap<String, oneshot::Sender<ServerFrame>>>,
}

impl Logins {
    pub fn new(
        hub: Arc<Hub>,
        bus: Bus,
        leases: Leases,
        setup: Duration,
        retry_after: Duration,
    ) -> Arc<Logins> {
        Arc::new(Logins {
            hub,
            bus,
            leases,
            setup,
            retry_after: retry_after.max(Duration::from_millis(100)),
            waiting: Mutex::new(HashMap::new()),
        })
    }

    /// Lets `handle` in as `session` and sends it `reply` once it is ready
    /// (or once `login_setup_ms` has passed), in a task of its own.
    pub fn open(
        self: &Arc<Self>,
        handle: Arc<ConnectionHandle>,
        reply: ServerFrame,
        session: Session,
    ) {
        tokio::spawn(self.clone().open_session(handle, reply, session));
    }

    /// Takes the answer to a question this replica asked itself; gives the
    /// frame back if the action id is not one of them.
    pub fn answer(&self, action_id: &str, frame: ServerFrame) -> Option<ServerFrame> {
        match self.lock().remove(action_id) {
            Some(waiter) => {
                // The login may have stopped waiting; then nobody needs it.
                let _ = waiter.send(frame);
                None
            }
            None => Some(frame),
        }
    }

    async fn open_session(
        self: Arc<Self>,
        handle: Arc<ConnectionHandle>,
        reply: ServerFrame,
        session: Session,
    ) {
        let identity = session.identity.clone();
        if !self
            .leases
            .acquire(identity.user_id.as_str(), handle.id)
            .await
        {
            refuse_over_limit(&handle, &reply, self.leases.max_per_user());
            return;
        }
        let lookup = GroupLookup::begin(&self.hub, identity.user_id.as_str());
        if !self.hub.log_in(handle.id, session) {
            // Gone meanwhile: the lease is handed back with the other ended logins.
            self.hub
                .note_ended_login(identity.user_id.as_str(), handle.id);
            return;
        }
        let mut reply = Some(reply);
        // The user's channel first: a change of their groups announced from
        // now on reaches this replica, and wins over an older answer.
        self.settled(Instant::now() + SUBSCRIBE_WAIT).await;
        let ready_by = Instant::now() + self.setup;
        let mut pause = self.retry_after;
        loop {
            let asked = self.ask_groups(handle.id, &identity, pause).await;
            let retry_at = Instant::now() + pause;
            let groups = self
                .groups_by(asked, retry_at, ready_by, &handle, &mut reply)
                .await;
            if let Some(groups) = groups {
                self.hub
                    .apply_group_lookup(identity.user_id.as_str(), &groups);
                if reply.is_some() {
                    self.settled(ready_by).await;
                }
                break;
            }
            let still_in = handle
                .identity()
                .is_some_and(|now| now.session_id == identity.session_id);
            if !still_in || handle.closed.is_cancelled() {
                break;
            }
            debug!(user_id = %identity.user_id, "no groups from chat-service yet; asking again");
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
        drop(lookup);
        if let Some(reply) = reply {
            handle.send(&reply);
        }
    }

    /// Waits until the subscriptions asked for so far are in place, or until
    /// `limit`.
    async fn settled(&self, limit: Instant) {
        let settled = self.hub.subscriptions_settled();
        if tokio::time::timeout_at(limit, settled).await.is_err() {
            debug!("subscriptions not in place in time; answering the login anyway");
        }
    }

    /// The groups of the answer to `asked`, if one names them by `retry_at`.
    /// Meanwhile sends `reply` at `ready_by`; gives up if the connection closes.
    async fn groups_by(
        &self,
        asked: Option<Question<'_>>,
        retry_at: Instant,
        ready_by: Instant,
        handle: &ConnectionHandle,
        reply: &mut Option<ServerFrame>,
    ) -> Option<Vec<String>> {
        let answered = async {
            let answer = match asked {
                Some(question) => question.answer().await,
                None => None,
            };
            match answer.as_ref().and_then(group_ids) {
                Some(groups) => groups,
                // A refusal or none at all: ask again at `retry_at`.
                None => std::future::pending().await,
            }
        };
        tokio::pin!(answered);
        loop {
            tokio::select! {
                groups = &mut answered => return Some(groups),
                _ = sleep_until(ready_by), if reply.is_some() => {
                    debug!("chat-service has not told the user's groups in time; answering the login");
                    metrics::counter!("switchyard_gateway_logins_answered_unready_total").increment(1);
                    if let Some(reply) = reply.take() {
                        handle.send(&reply);
                    }
                }
                _ = sleep_until(retry_at) => return None,
                _ = handle.closed.cancelled() => return None,
            }
        }
    }

    /// Asks chat-service which groups the user belongs to, for this
    /// connection; `None` if the question could not be put on the bus.
    async fn ask_groups(
        &self,
        connection_id: u64,
        identity: &Identity,
        asked_again_after: Duration,
    ) -> Option<Question<'_>> {
        let action_id = uuid::Uuid::now_v7().to_string();
        let mut request = ActionRequest::internal(
            action_id.clone(),
            SESSION_STARTED,
            Origin {
                gateway_id: self.hub.gateway_id().to_owned(),
                connection_id,
            },
            Some(identity.clone()),
            serde_json::Map::new(),
        );
        // Not worth doing once asked again.
        request.deadline_ms = Some(
            request
                .received_at_ms
                .saturating_add(millis(asked_again_after)),
        );
        let (waiter, answer) = oneshot::channel();
        // Waiting before it is asked, so that even an instant answer finds it.
        self.lock().insert(action_id.clone(), waiter);
        let question = Question {
            logins: self,
            action_id,
            answer,
        };
        match self.bus.submit(Service::Chat, &request).await {
            Ok(()) => Some(question),
            Err(err) => {
                warn!(error = %err, "could not ask for the groups of a user who logged in");
                None
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<ServerFrame>>> {
        // One insertion or removal at a time; a panic elsewhere cannot leave
        // the map half-written.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A question to chat-service waiting for its answer; forgotten when dropped.
struct Question<'a> {
    logins: &'a Logins,
    action_id: String,
    answer: oneshot::Receiver<ServerFrame>,
}

impl Question<'_> {
    async fn answer(mut self) -> Option<ServerFrame> {
        (&mut self.answer).await.ok()
    }
}

impl Drop for Question<'_> {
    fn drop(&mut self) {
        self.logins.lock().remove(&self.action_id);
    }
}

/// A lookup of the user's groups under way in the hub; ended when dropped.
struct GroupLookup<'a> {
    hub: &'a Hub,
    user_id: String,
}

impl<'a> GroupLookup<'a> {
    fn begin(hub: &'a Hub, user_id: &str) -> GroupLookup<'a> {
        hub.begin_group_lookup(user_id);
        GroupLookup {
            hub,
            user_id: user_id.to_owned(),
        }
    }
}

impl Drop for GroupLookup<'_> {
    fn drop(&mut self) {
        self.hub.end_group_lookup(&self.user_id);
    }
}

/// The group ids a `SESSION_READY` answer names; `None` for any other answer.
fn group_ids(frame: &ServerFrame) -> Option<Vec<String>> {
    if frame.status() != SESSION_READY {
        debug!(
            status = frame.status(),
            "chat-service did not tell the user's groups"
        );
        return None;
    }
    let ids = frame.get("groupIds")?.as_array()?;
    ids.iter()
        .map(|id| id.as_str().map(str::to_owned))
        .collect()
}

/// Answers a login refused because the account holds its most connections.
fn refuse_over_limit(handle: &ConnectionHandle, reply: &ServerFrame, max_per_user: usize) {
    metrics::counter!("switchyard_gateway_logins_refused_total", "reason" => "connections")
        .increment(1);
    let request_id = reply.get("requestId").and_then(|v| v.as_str());
    handle.send(
        &ServerFrame::error(
            ErrorCode::TooManyConnections,
            format!(
                "This account has {max_per_user} connections open, the most it may have. Close one, then log in again."
            ),
        )
        .with_request_id(request_id),
    );
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_session_ready_answer_names_groups() {
        let ready = ServerFrame::new(SESSION_READY, "").with("groupIds", json!(["g1", "g2"]));
        assert_eq!(group_ids(&ready), Some(vec!["g1".into(), "g2".into()]));
        let none = ServerFrame::new(SESSION_READY, "").with("groupIds", json!([]));
        assert_eq!(group_ids(&none), Some(Vec::new()));
        let unavailable = ServerFrame::error(ErrorCode::ServiceUnavailable, "down");
        assert_eq!(group_ids(&unavailable), None);
        let malformed = ServerFrame::new(SESSION_READY, "").with("groupIds", json!([1]));
        assert_eq!(group_ids(&malformed), None);
        assert_eq!(group_ids(&ServerFrame::new(SESSION_READY, "")), None);
    }
}
