//! The connections held by this replica: who each is logged in as, which
//! users and groups they make us listen to, and the requests still waiting
//! for an answer. This is the one place events are delivered to sockets.
//!
//! Everything here can be rebuilt by a client reconnecting elsewhere: it is a
//! cache of who is connected, never a source of truth.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use shared_proto::client::ServerFrame;
use shared_proto::envelope::Origin;
use shared_proto::names::Names;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

pub use crate::handle::{ConnectionHandle, FrameSink, Pushed, Refused, Session};

/// A channel to start or stop listening to, or a mark in the queue of
/// such changes. The listener applies them in the order they were queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionChange {
    Subscribe(String),
    Unsubscribe(String),
    /// Passed once every change queued before it is in place at Redis.
    Barrier(Barrier),
}

/// A mark in the queue of subscription changes; see [`Hub::subscriptions_settled`].
#[derive(Debug, Clone)]
pub struct Barrier(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl Barrier {
    fn new() -> (Barrier, oneshot::Receiver<()>) {
        let (passed, waiting) = oneshot::channel();
        (Barrier(Arc::new(Mutex::new(Some(passed)))), waiting)
    }

    /// Tells the waiter that the changes queued before this mark are in place.
    pub fn pass(&self) {
        if let Some(passed) = lock(&self.0).take() {
            let _ = passed.send(());
        }
    }
}

impl PartialEq for Barrier {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Barrier {}

/// A request put on the bus and not yet answered.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    pub connection_id: u64,
    pub action: String,
    pub request_id: Option<String>,
    pub started: Instant,
    pub deadline: Instant,
    /// Set once the client was told `TIMEOUT`; a late answer is still passed
    /// on, since it tells the client what happened.
    pub timed_out: bool,
}

#[derive(Default)]
struct Registry {
    connections: HashMap<u64, Arc<ConnectionHandle>>,
    /// Logged-in connections per user.
    users: HashMap<String, HashSet<u64>>,
    /// Groups of each locally connected user, as told by chat-service.
    user_groups: HashMap<String, HashSet<String>>,
    /// Locally connected members of each group.
    group_users: HashMap<String, HashSet<String>>,
    /// The connections a group's events go to, built on the group's first
    /// event and dropped whenever its members or their connections change:
    /// a group event then costs one lookup, not one per member.
    group_audiences: HashMap<String, Audience>,
    /// Users whose groups are being asked of chat-service for a login here
    /// (see [`crate::login`]).
    lookups: HashMap<String, Lookup>,
}

/// The lookups of one user's groups under way, and the groups whose
/// membership changed on the user's channel since the first began: such a
/// change is at least as new as any answer, so it wins over them.
#[derive(Default)]
struct Lookup {
    pending: usize,
    changed: HashSet<String>,
}

/// The local connections of a group's members, with each one's user.
type Audience = Arc<[(String, Arc<ConnectionHandle>)]>;

impl Registry {
    fn audience(&mut self, group_id: &str) -> Option<Audience> {
        if let Some(audience) = self.group_audiences.get(group_id) {
            return Some(audience.clone());
        }
        let members = self.group_users.get(group_id)?;
        let audience: Audience = members
            .iter()
            .flat_map(|user| {
                self.users
                    .get(user)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| self.connections.get(id))
                    .map(move |handle| (user.clone(), handle.clone()))
            })
            .collect();
        self.group_audiences
            .insert(group_id.to_owned(), audience.clone());
        Some(audience)
    }

    /// Forgets the audiences of every group `user_id` is in, after a change
    /// to the user's connections.
    fn forget_audiences_of(&mut self, user_id: &str) {
        if let Some(groups) = self.user_groups.get(user_id) {
            for group in groups {
                self.group_audiences.remove(group);
            }
        }
    }
}

/// The connections of this replica.
pub struct Hub {
    gateway_id: String,
    names: Names,
    next_connection_id: AtomicU64,
    registry: Mutex<Registry>,
    pending: Mutex<HashMap<String, PendingRequest>>,
    subscriptions: mpsc::UnboundedSender<SubscriptionChange>,
    /// Logins that ended here since [`Hub::take_ended_logins`] last looked:
    /// their connection leases are to be given back (see [`crate::leases`]).
    ended_logins: Mutex<Vec<(String, u64)>>,
}

impl Hub {
    pub fn new(
        gateway_id: String,
        names: Names,
        subscriptions: mpsc::UnboundedSender<SubscriptionChange>,
    ) -> Self {
        Hub {
            gateway_id,
            names,
            next_connection_id: AtomicU64::new(1),
            registry: Mutex::new(Registry::default()),
            pending: Mutex::new(HashMap::new()),
            subscriptions,
            ended_logins: Mutex::new(Vec::new()),
        }
    }

    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Adds a connection whose frames go to `sink`.
    pub fn register(&self, sink: Arc<dyn FrameSink>) -> Arc<ConnectionHandle> {
        let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(ConnectionHandle::new(id, sink));
        lock(&self.registry).connections.insert(id, handle.clone());
        metrics::gauge!("switchyard_gateway_connections").increment(1.0);
        handle
    }

    /// Forgets a connection that has gone.
    pub fn unregister(&self, connection_id: u64) {
        let handle = lock(&self.registry).connections.remove(&connection_id);
        if let Some(handle) = handle {
            metrics::gauge!("switchyard_gateway_connections").decrement(1.0);
            if let Some(old) = handle.set_session(None) {
                self.forget_login(connection_id, old.identity.user_id.as_str());
            }
        }
        lock(&self.pending).retain(|_, p| p.connection_id != connection_id);
    }

    pub fn connection_count(&self) -> usize {
        lock(&self.registry).connections.len()
    }

    pub fn connection(&self, connection_id: u64) -> Option<Arc<ConnectionHandle>> {
        lock(&self.registry)
            .connections
            .get(&connection_id)
            .cloned()
    }

    /// Makes a connection act as `session` from now on; false if the
    /// connection has gone meanwhile.
    pub fn log_in(&self, connection_id: u64, session: Session) -> bool {
        let Some(handle) = self.connection(connection_id) else {
            return false;
        };
        let user_id = session.identity.user_id.as_str().to_owned();
        if let Some(old) = handle.set_session(Some(session)) {
            self.forget_login(connection_id, old.identity.user_id.as_str());
        }
        let mut registry = lock(&self.registry);
        let connections = registry.users.entry(user_id.clone()).or_default();
        connections.insert(connection_id);
        if connections.len() == 1 {
            // Queued under the lock, so that it cannot overtake the
            // unsubscription of a logout that came just before.
            self.change(SubscriptionChange::Subscribe(
                self.names.user_channel(&user_id),
            ));
        }
        registry.forget_audiences_of(&user_id);
        true
    }

    /// Resolves once every subscription asked for until now is in place at
    /// Redis: from then on, what is published on those channels reaches this
    /// replica. False if the listener has stopped.
    pub fn subscriptions_settled(&self) -> impl std::future::Future<Output = bool> + 'static {
        let (barrier, passed) = Barrier::new();
        self.change(SubscriptionChange::Barrier(barrier));
        async move { passed.await.is_ok() }
    }

    /// Notes that a user's groups are being looked up for a login here;
    /// [`Hub::end_group_lookup`] when it is over, answered or not.
    pub fn begin_group_lookup(&self, user_id: &str) {
        let mut registry = lock(&self.registry);
        registry
            .lookups
            .entry(user_id.to_owned())
            .or_default()
            .pending += 1;
    }

    /// Records the groups a lookup found the user in, but those whose
    /// membership changed since the lookup began.
    pub fn apply_group_lookup(&self, user_id: &str, groups: &[String]) {
        let mut registry = lock(&self.registry);
        for group_id in groups {
            let changed = registry
                .lookups
                .get(user_id)
                .is_some_and(|lookup| lookup.changed.contains(group_id));
            if !changed {
                self.record_membership(&mut registry, user_id, group_id, true);
            }
        }
    }

    pub fn end_group_lookup(&self, user_id: &str) {
        let mut registry = lock(&self.registry);
        if let Some(lookup) = registry.lookups.get_mut(user_id) {
            lookup.pending -= 1;
            if lookup.pending == 0 {
                registry.lookups.remove(user_id);
            }
        }
    }

    /// Every logged-in connection here, with its user.
    pub fn logged_in(&self) -> Vec<(String, u64)> {
        let registry = lock(&self.registry);
        registry
            .users
            .iter()
            .flat_map(|(user, ids)| ids.iter().map(move |id| (user.clone(), *id)))
            .collect()
    }

    /// Records a login that ended without passing through this hub's
    /// bookkeeping (its connection went while it was being let in).
    pub fn note_ended_login(&self, user_id: &str, connection_id: u64) {
        lock(&self.ended_logins).push((user_id.to_owned(), connection_id));
    }

    /// The logins that ended since the last call, with their users.
    pub fn take_ended_logins(&self) -> Vec<(String, u64)> {
        std::mem::take(&mut *lock(&self.ended_logins))
    }

    /// Makes a connection anonymous again.
    pub fn log_out(&self, connection_id: u64) {
        if let Some(handle) = self.connection(connection_id) {
            if let Some(old) = handle.set_session(None) {
                self.forget_login(connection_id, old.identity.user_id.as_str());
            }
        }
    }

    /// Ends a session on every local connection using it, and tells them.
    pub fn revoke_session(&self, user_id: &str, session_id: &str) {
        for handle in self.connections_of(user_id) {
            let uses_it = handle
                .session()
                .is_some_and(|s| s.identity.session_id == session_id);
            if uses_it {
                self.log_out(handle.id);
                handle.send(&ServerFrame::new(
                    "SESSION_CLOSED",
                    "Your session was closed. Log in again to continue.",
                ));
            }
        }
    }

    /// Logs out every connection whose session has expired, and tells it, so
    /// that an expired session stops receiving events even if it stays silent.
    pub fn expire_sessions(&self, now_ms: i64) {
        let handles: Vec<_> = lock(&self.registry).connections.values().cloned().collect();
        for handle in handles {
            let expired = handle.session().is_some_and(|s| s.expires_at_ms <= now_ms);
            if expired {
                self.log_out(handle.id);
                handle.send(&ServerFrame::new(
                    "SESSION_CLOSED",
                    "Your session expired. Log in again to continue.",
                ));
            }
        }
    }

    /// Records that a locally connected user joined or left a group.
    pub fn set_membership(&self, user_id: &str, group_id: &str, member: bool) {
        let mut registry = lock(&self.registry);
        if let Some(lookup) = registry.lookups.get_mut(user_id) {
            lookup.changed.insert(group_id.to_owned());
        }
        self.record_membership(&mut registry, user_id, group_id, member);
    }

    fn record_membership(
        &self,
        registry: &mut Registry,
        user_id: &str,
        group_id: &str,
        member: bool,
    ) {
        if !registry.users.contains_key(user_id) {
            return;
        }
        registry.group_audiences.remove(group_id);
        let change = if member {
            registry
                .user_groups
                .entry(user_id.to_owned())
                .or_default()
                .insert(group_id.to_owned());
            let users = registry.group_users.entry(group_id.to_owned()).or_default();
            users.insert(user_id.to_owned());
            (users.len() == 1)
                .then(|| SubscriptionChange::Subscribe(self.names.group_channel(group_id)))
        } else {
            if let Some(groups) = registry.user_groups.get_mut(user_id) {
                groups.remove(group_id);
            }
            remove_member(&mut registry.group_users, group_id, user_id)
                .then(|| SubscriptionChange::Unsubscribe(self.names.group_channel(group_id)))
        };
        if let Some(change) = change {
            self.change(change);
        }
    }

    /// Delivers an event to every local connection of a user.
    pub fn deliver_to_user(&self, user_id: &str, event: &Pushed, except: Option<&Origin>) {
        let mut delivered = 0u64;
        for handle in self.connections_of(user_id) {
            if !self.is_origin(&handle, except) && handle.send_event(event) {
                delivered += 1;
            }
        }
        count_deliveries(delivered);
    }

    /// Delivers an event to every local connection of every member of a group.
    pub fn deliver_to_group(
        &self,
        group_id: &str,
        event: &Pushed,
        except: Option<&Origin>,
        skip_user: Option<&str>,
    ) {
        let Some(audience) = lock(&self.registry).audience(group_id) else {
            return;
        };
        let mut delivered = 0u64;
        for (user, handle) in audience.iter() {
            if Some(user.as_str()) != skip_user
                && !self.is_origin(handle, except)
                && handle.send_event(event)
            {
                delivered += 1;
            }
        }
        count_deliveries(delivered);
    }

    /// Delivers the answer to a request. A second answer to the same request
    /// (a redelivered action) is dropped.
    pub fn deliver_reply(
        &self,
        action_id: &str,
        frame: &ServerFrame,
    ) -> Option<Arc<ConnectionHandle>> {
        let handle = self.take_reply(action_id)?;
        handle.send(frame);
        Some(handle)
    }

    /// Claims the answer to a request, to be sent by the caller: the
    /// connection waiting for it, unless it was answered already or has gone.
    pub fn take_reply(&self, action_id: &str) -> Option<Arc<ConnectionHandle>> {
        let pending = lock(&self.pending).remove(action_id)?;
        metrics::histogram!("switchyard_gateway_request_duration_seconds", "action" => pending.action.clone())
            .record(pending.started.elapsed().as_secs_f64());
        self.connection(pending.connection_id)
    }

    /// Remembers a request until its answer comes or its deadline passes.
    pub fn track(&self, action_id: String, request: PendingRequest) {
        lock(&self.pending).insert(action_id, request);
    }

    /// Forgets a request that never reached the bus.
    pub fn untrack(&self, action_id: &str) {
        lock(&self.pending).remove(action_id);
    }

    pub fn pending_count(&self) -> usize {
        lock(&self.pending)
            .values()
            .filter(|p| !p.timed_out)
            .count()
    }

    /// Tells every client whose request passed its deadline that its outcome
    /// is unknown. Requests stay tracked a while longer for a late answer.
    pub fn expire(&self, now: Instant, forget_after: std::time::Duration) {
        let mut expired = Vec::new();
        {
            let mut pending = lock(&self.pending);
            pending.retain(|_, p| now < p.deadline + forget_after);
            for request in pending.values_mut() {
                if !request.timed_out && now >= request.deadline {
                    request.timed_out = true;
                    expired.push(request.clone());
                }
            }
        }
        for request in expired {
            debug!(action = %request.action, "request timed out");
            if let Some(handle) = self.connection(request.connection_id) {
                handle.send(
                    &ServerFrame::error(
                        shared_proto::status::ErrorCode::Timeout,
                        format!(
                            "No answer to {} in time; its outcome is unknown. Check its effect before sending it again.",
                            request.action
                        ),
                    )
                    .with_request_id(request.request_id.as_deref()),
                );
            }
        }
    }

    /// Closes every connection, e.g. when this replica stops.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let handles: Vec<_> = lock(&self.registry).connections.values().cloned().collect();
        for handle in handles {
            handle.close(code, reason);
        }
    }

    /// Every channel this replica should be listening to right now.
    pub fn channels(&self) -> Vec<String> {
        let registry = lock(&self.registry);
        let mut channels = vec![self.names.gateway_channel(&self.gateway_id)];
        channels.extend(registry.users.keys().map(|u| self.names.user_channel(u)));
        channels.extend(
            registry
                .group_users
                .keys()
                .map(|g| self.names.group_channel(g)),
        );
        channels
    }

    /// The groups of a locally connected user, as far as this replica knows.
    pub fn groups_of(&self, user_id: &str) -> Vec<String> {
        lock(&self.registry)
            .user_groups
            .get(user_id)
            .map(|groups| groups.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn connections_of(&self, user_id: &str) -> Vec<Arc<ConnectionHandle>> {
        let registry = lock(&self.registry);
        registry
            .users
            .get(user_id)
            .into_iter()
            .flatten()
            .filter_map(|id| registry.connections.get(id).cloned())
            .collect()
    }

    fn is_origin(&self, handle: &ConnectionHandle, origin: Option<&Origin>) -> bool {
        origin.is_some_and(|o| o.gateway_id == self.gateway_id && o.connection_id == handle.id)
    }

    /// Drops a connection from its user's set; the user's last connection here
    /// takes the user's and its groups' subscriptions with it.
    fn forget_login(&self, connection_id: u64, user_id: &str) {
        self.note_ended_login(user_id, connection_id);
        let mut registry = lock(&self.registry);
        let Some(connections) = registry.users.get_mut(user_id) else {
            return;
        };
        connections.remove(&connection_id);
        let gone = connections.is_empty();
        registry.forget_audiences_of(user_id);
        if !gone {
            return;
        }
        registry.users.remove(user_id);
        self.change(SubscriptionChange::Unsubscribe(
            self.names.user_channel(user_id),
        ));
        for group in registry.user_groups.remove(user_id).unwrap_or_default() {
            if remove_member(&mut registry.group_users, &group, user_id) {
                self.change(SubscriptionChange::Unsubscribe(
                    self.names.group_channel(&group),
                ));
            }
        }
    }

    /// Queues a change for the listener. Callers that change the registry
    /// queue while they hold its lock, so that changes are queued in the
    /// order the registry saw them.
    fn change(&self, change: SubscriptionChange) {
        // Refused only once the listener has stopped, with the replica.
        let _ = self.subscriptions.send(change);
    }
}

/// Counted once per event with its number of deliveries, not once per
/// delivery: a group event reaches hundreds of sockets.
fn count_deliveries(delivered: u64) {
    metrics::counter!("switchyard_gateway_events_delivered_total").increment(delivered);
    metrics::counter!("switchyard_gateway_frames_out_total").increment(delivered);
}

/// Removes a user from a group's local members; true if none are left.
fn remove_member(
    group_users: &mut HashMap<String, HashSet<String>>,
    group_id: &str,
    user_id: &str,
) -> bool {
    let Some(users) = group_users.get_mut(group_id) else {
        return false;
    };
    users.remove(user_id);
    if users.is_empty() {
        group_users.remove(group_id);
        true
    } else {
        false
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps are updated in single steps; a panic elsewhere cannot leave
    // them half-written, so a poisoned lock is still safe to use.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
