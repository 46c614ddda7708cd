//! Listens on Redis for what services send this replica: replies on its own
//! channel, events on the channels of its users and groups. Reconnects and
//! resubscribes by itself when Redis goes away.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use shared_proto::action::UserId;
use shared_proto::bus::Bus;
use shared_proto::envelope::{SessionChange, ToGateway};
use shared_proto::position::{Position, split_positioned};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::catch_up;
use crate::delivery_delay::DeliveryDelay;
use crate::frame::Frame;
use crate::hub::{Hub, Pushed, Session, SubscriptionChange};
use crate::login::Logins;

/// Runs until `shutdown`, keeping the subscriptions in step with the hub.
pub async fn run(
    bus: Bus,
    hub: Arc<Hub>,
    logins: Arc<Logins>,
    mut changes: mpsc::UnboundedReceiver<SubscriptionChange>,
    delivery_delay: Arc<DeliveryDelay>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    // The newest kept event this replica is known to have had: every event
    // for its connections up to it was heard, or is being caught up.
    let mut received: Option<Position> = None;
    let mut catching_up: Option<(Position, JoinHandle<()>)> = None;
    while !shutdown.is_cancelled() {
        let pubsub = match bus.client().get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(err) => {
                warn!(error = %err, "cannot subscribe to redis; retrying");
                if !back_off(&mut delay, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        // Held before listening, so that no live event overtakes what the
        // connections missed while this replica was not listening.
        let held = match received {
            Some(_) => catch_up::hold_all(&hub),
            None => Vec::new(),
        };
        // Everything the hub wants now; changes queued meanwhile are applied
        // after, in order, which converges on the same set.
        if let Err(err) = sink.subscribe(hub.channels()).await {
            warn!(error = %err, "subscribing failed; reconnecting");
            if !back_off(&mut delay, &shutdown).await {
                return;
            }
            continue;
        }
        let head = match bus.history_head().await {
            Ok(head) => head,
            Err(err) => {
                warn!(error = %err, "cannot read where the event histories stand; reconnecting");
                if !back_off(&mut delay, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        if let Some(since) = received.clone() {
            // A catch-up cut short by this new loss starts again from where
            // it started; what it sent is not sent twice (see `handle`).
            let since = match catching_up.take() {
                Some((started, task)) if !task.is_finished() => {
                    task.abort();
                    started
                }
                _ => since,
            };
            let task = tokio::spawn(catch_up::run(bus.clone(), hub.clone(), held, since.clone()));
            catching_up = Some((since, task));
        }
        advance(&mut received, head);
        delay = Duration::from_millis(100);
        ready.store(true, std::sync::atomic::Ordering::Release);
        info!("listening for replies and events");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let position = dispatch(&hub, &logins, message.get_channel_name(), message.get_payload_bytes());
                    if let Some(position) = position {
                        delivery_delay.heard(position.id.ms, shared_proto::now_ms());
                        advance(&mut received, position);
                    }
                }
                change = changes.recv() => {
                    let Some(change) = change else { return };
                    // Each call returns once Redis confirmed it, so a barrier
                    // reached here has every change before it in place.
                    let result = match &change {
                        SubscriptionChange::Subscribe(channel) => sink.subscribe(channel).await,
                        SubscriptionChange::Unsubscribe(channel) => sink.unsubscribe(channel).await,
                        SubscriptionChange::Barrier(barrier) => {
                            barrier.pass();
                            Ok(())
                        }
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

/// Waits before trying Redis again, a little longer each time; false if
/// the replica is stopping meanwhile.
async fn back_off(delay: &mut Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(*delay) => {}
    }
    // Capped low: while this is down the gateway takes no actions.
    *delay = (*delay * 2).min(Duration::from_secs(1));
    true
}

/// Moves `received` on to `position` if it is newer, or of a new epoch
/// (the histories were lost: what came before is gone for everyone).
fn advance(received: &mut Option<Position>, position: Position) {
    let newer = received
        .as_ref()
        .is_none_or(|r| r.epoch != position.epoch || r.id < position.id);
    if newer {
        *received = Some(position);
    }
}

/// Hands one bus message to the hub, and says the position of a kept
/// event. Malformed messages are logged and dropped: they come from a
/// peer's bug, not from a client.
pub fn dispatch(
    hub: &Hub,
    logins: &Arc<Logins>,
    channel: &str,
    payload: &[u8],
) -> Option<Position> {
    let (position, payload) = split_positioned(payload);
    let message: ToGateway = match serde_json::from_slice(payload) {
        Ok(message) => message,
        Err(err) => {
            warn!(error = %err, channel, "dropping a malformed bus message");
            return None;
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
                    return None;
                };
                let session = Session {
                    identity,
                    expires_at_ms,
                };
                logins.open(handle, frame, session);
            }
            Some(SessionChange::Close) => {
                if let Some(handle) = hub.deliver_reply(&action_id, &frame) {
                    hub.log_out(handle.id);
                }
            }
            None => {
                // Unless it answers a question this replica asked itself.
                let frame = logins.answer(&action_id, frame)?;
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
            let event = match position.clone() {
                Some(position) => Pushed {
                    frame: Frame::text(&crate::sync::positioned(frame, &position).to_text()),
                    id: Some(position.id),
                },
                None => Pushed::live(Frame::text(&frame.to_text())),
            };
            if let Some(user_id) = channel.strip_prefix(&user_prefix) {
                hub.deliver_to_user(user_id, &event, except.as_ref());
            } else if let Some(group_id) = channel.strip_prefix(&group_prefix) {
                hub.deliver_to_group(
                    group_id,
                    &event,
                    except.as_ref(),
                    skip_user.as_ref().map(UserId::as_str),
                );
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
        } => hub.set_membership(user_id.as_str(), group_id.as_str(), member),
    }
    position
}
