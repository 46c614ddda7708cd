//! Listens on Redis for what services send this replica: replies on its own
//! channel, events on the channels of its users and groups. Reconnects and
//! resubscribes by itself when Redis goes away.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use shared_proto::bus::Bus;
use shared_proto::client::ServerFrame;
use shared_proto::envelope::{ActionRequest, Identity, Origin, SessionChange, ToGateway};
use shared_proto::routing::{SESSION_STARTED, Service};
use shared_proto::status::ErrorCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::frame::Frame;
use crate::hub::{ConnectionHandle, Hub, Session, SubscriptionChange};
use crate::leases::Leases;

/// Runs until `shutdown`, keeping the subscriptions in step with the hub.
pub async fn run(
    bus: Bus,
    hub: Arc<Hub>,
    leases: Leases,
    mut changes: mpsc::UnboundedReceiver<SubscriptionChange>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let pubsub = match bus.client().get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(err) => {
                warn!(error = %err, "cannot subscribe to redis; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                // Capped low: while this is down the gateway takes no actions.
                delay = (delay * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        // Everything the hub wants now; changes queued meanwhile are applied
        // after, in order, which converges on the same set.
        if let Err(err) = sink.subscribe(hub.channels()).await {
            warn!(error = %err, "subscribing failed; reconnecting");
            continue;
        }
        delay = Duration::from_millis(100);
        ready.store(true, std::sync::atomic::Ordering::Release);
        info!("listening for replies and events");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                message = stream.next() => {
                    let Some(message) = message else { break };
                    dispatch(&hub, &bus, &leases, message.get_channel_name(), message.get_payload_bytes());
                }
                change = changes.recv() => {
                    let Some(change) = change else { return };
                    let result = match &change {
                        SubscriptionChange::Subscribe(channel) => sink.subscribe(channel).await,
                        SubscriptionChange::Unsubscribe(channel) => sink.unsubscribe(channel).await,
                    };
                    if let Err(err) = result {
                        warn!(error = %err, ?change, "changing a subscription failed; reconnecting");
                        break;
                    }
                }
            }
        }
        ready.store(false, std::sync::atomic::Ordering::Release);
        warn!("lost the redis subscription; reconnecting");
    }
}

/// Hands one bus message to the hub. Malformed messages are logged and
/// dropped: they come from a peer's bug, not from a client.
pub fn dispatch(hub: &Arc<Hub>, bus: &Bus, leases: &Leases, channel: &str, payload: &[u8]) {
    let message: ToGateway = match serde_json::from_slice(payload) {
        Ok(message) => message,
        Err(err) => {
            warn!(error = %err, channel, "dropping a malformed bus message");
            return;
        }
    };
    let names = hub.names();
    let user_prefix = names.user_channel("");
    let group_prefix = names.group_channel("");
    match message {
        ToGateway::Reply {
            action_id,
            frame,
            session,
            ..
        } => match session {
            Some(SessionChange::Open {
                identity,
                expires_at_ms,
            }) => {
                let Some(handle) = hub.take_reply(&action_id) else {
                    debug!(%action_id, "no one waits for this login");
                    return;
                };
                let session = Session {
                    identity,
                    expires_at_ms,
                };
                tokio::spawn(open_session(
                    hub.clone(),
                    bus.clone(),
                    leases.clone(),
                    handle,
                    frame,
                    session,
                ));
            }
            Some(SessionChange::Close) => {
                if let Some(handle) = hub.deliver_reply(&action_id, &frame) {
                    hub.log_out(handle.id);
                }
            }
            None => {
                if hub.deliver_reply(&action_id, &frame).is_none() {
                    debug!(%action_id, "no one waits for this reply");
                }
            }
        },
        ToGateway::Event {
            frame,
            except,
            skip_user,
        } => {
            // Encoded once, whatever the number of sockets it goes to.
            let frame = Frame::text(&frame.to_text());
            if let Some(user_id) = channel.strip_prefix(&user_prefix) {
                hub.deliver_to_user(user_id, &frame, except.as_ref());
            } else if let Some(group_id) = channel.strip_prefix(&group_prefix) {
                hub.deliver_to_group(group_id, &frame, except.as_ref(), skip_user.as_deref());
            } else {
                warn!(channel, "an event on a channel that carries none");
            }
        }
        ToGateway::SessionRevoked { session_id } => {
            if let Some(user_id) = channel.strip_prefix(&user_prefix) {
                hub.revoke_session(user_id, &session_id);
            }
        }
        ToGateway::Membership {
            user_id,
            group_id,
            member,
        } => hub.set_membership(&user_id, &group_id, member),
    }
}

/// Lets a connection in as the user of a login reply, if the user's
/// connections are under the limit, and only then sends the reply: once the
/// client reads `USER_LOGGED` its connection already acts as the user.
async fn open_session(
    hub: Arc<Hub>,
    bus: Bus,
    leases: Leases,
    handle: Arc<ConnectionHandle>,
    reply: ServerFrame,
    session: Session,
) {
    let identity = session.identity.clone();
    if !leases.acquire(&identity.user_id, handle.id).await {
        metrics::counter!("switchyard_gateway_logins_refused_total", "reason" => "connections")
            .increment(1);
        let request_id = reply.get("requestId").and_then(|v| v.as_str());
        handle.send(
            &ServerFrame::error(
                ErrorCode::TooManyConnections,
                format!(
                    "This account has {} connections open, the most it may have. Close one, then log in again.",
                    leases.max_per_user()
                ),
            )
            .with_request_id(request_id),
        );
        return;
    }
    if !hub.log_in(handle.id, session) {
        // Gone meanwhile: the lease is handed back with the other ended logins.
        hub.note_ended_login(&identity.user_id, handle.id);
        return;
    }
    handle.send(&reply);
    announce_session(&hub, &bus, handle.id, identity);
}

/// Asks chat-service which groups the user who just logged in here belongs
/// to; it answers with a membership message per group on this replica's
/// channel, after which the user's group events reach this connection.
fn announce_session(hub: &Hub, bus: &Bus, connection_id: u64, identity: Identity) {
    let request = ActionRequest {
        action_id: uuid::Uuid::now_v7().to_string(),
        action: SESSION_STARTED.to_owned(),
        request_id: None,
        payload: serde_json::Map::new(),
        origin: Origin {
            gateway_id: hub.gateway_id().to_owned(),
            connection_id,
        },
        identity: Some(identity),
        received_at_ms: shared_proto::now_ms(),
        deadline_ms: None,
        client_addr: None,
    };
    let bus = bus.clone();
    tokio::spawn(async move {
        if let Err(err) = bus.submit(Service::Chat, &request).await {
            warn!(error = %err, "could not ask for the groups of a user who logged in");
        }
    });
}
