//! `SYNC`: the events a client missed since a position, answered by the
//! gateway from the event histories in Redis (see `bus::history`), with no
//! gap and no duplicate between the reply and the live events after it.
//!
//! While the histories are read, live events for the connection are held
//! back; the reply goes out first, then whichever of those it did not carry.

use serde_json::Value;
use shared_proto::client::{ClientRequest, ServerFrame};
use shared_proto::envelope::Identity;
use shared_proto::position::Position;
use shared_proto::routing::ActionClass;
use shared_proto::status::{ErrorCode, ReplyStatus};

use crate::connection::Context;
use crate::handle::{ConnectionHandle, Replayed};
use crate::missed::{self, Unread};
use crate::replay::Gap;

/// An event frame as clients get it: with its position.
pub fn positioned(frame: ServerFrame, position: &Position) -> ServerFrame {
    frame.with("position", position.to_string())
}

/// How a `SYNC` went, for the connection's rate accounting.
pub enum Answered {
    Done,
    /// The user's read budget was spent.
    OverUserLimit,
}

/// Answers one `SYNC` on a logged-in connection.
pub async fn sync(
    request: ClientRequest,
    identity: Identity,
    handle: &ConnectionHandle,
    context: &Context,
) -> Answered {
    let request_id = request.request_id.as_deref();
    let since = match request.payload.get("since") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match text.parse::<Position>() {
            Ok(position) => Some(position),
            Err(_) => return refuse(handle, ErrorCode::BadRequest, BAD_SINCE, request_id),
        },
        Some(_) => return refuse(handle, ErrorCode::BadRequest, BAD_SINCE, request_id),
    };
    let groups = context.hub.groups_of(identity.user_id.as_str());
    let sent = handle.hold_events();
    let ask = missed::Ask {
        identity: &identity,
        groups: &groups,
        since: since.as_ref(),
        sent,
        budget: Some(context.settings.user_limits.budget(ActionClass::Read)),
    };
    let missed = match missed::read(&context.bus, &ask).await {
        Ok(missed) => missed,
        Err(Unread::Revoked) => {
            handle.release_events(&error(ErrorCode::Unauthorized, REVOKED, request_id), None);
            context.hub.log_out(handle.id);
            return Answered::Done;
        }
        Err(Unread::Limited { retry_after_ms }) => {
            let frame = error(
                ErrorCode::RateLimited,
                &format!(
                    "Too many read actions from your account; this SYNC was not processed. Try again in {retry_after_ms} ms."
                ),
                request_id,
            )
            .with("retryAfterMs", retry_after_ms);
            handle.release_events(&frame, None);
            return Answered::OverUserLimit;
        }
        Err(Unread::Unavailable) => {
            handle.release_events(
                &error(ErrorCode::ServiceUnavailable, UNAVAILABLE, request_id),
                None,
            );
            return Answered::Done;
        }
    };
    let Some(since) = since else {
        // Nothing to replay: only where things stand, to start from.
        handle.release_events(&synced(Vec::new(), &missed.head, request_id), None);
        return Answered::Done;
    };
    let replayed = Replayed {
        after: Some(since.id),
        upto: missed.newest.id,
    };
    match missed.events {
        Ok(events) => {
            let frames = events
                .into_iter()
                .map(|(id, frame)| {
                    let position = Position {
                        epoch: missed.head.epoch.clone(),
                        id,
                    };
                    positioned(frame, &position)
                })
                .collect();
            handle.release_events(&synced(frames, &missed.newest, request_id), Some(replayed));
        }
        Err(gap) => {
            metrics::counter!("switchyard_gateway_sync_gaps_total").increment(1);
            handle.release_events(
                &sync_gap(gap, &missed.head, request_id),
                Some(Replayed {
                    after: None,
                    ..replayed
                }),
            );
        }
    }
    Answered::Done
}

const BAD_SINCE: &str =
    "\"since\", when present, must be a position from an event or from a SYNCED or SYNC_GAP reply.";
const REVOKED: &str = "Your session was closed. Log in again to continue.";
const UNAVAILABLE: &str =
    "The service is unavailable right now; nothing was done. Try again in a moment.";

fn synced(events: Vec<ServerFrame>, position: &Position, request_id: Option<&str>) -> ServerFrame {
    ServerFrame::new(ReplyStatus::Synced, "Here is what you missed.")
        .with("events", events)
        .with("position", position.to_string())
        .with_request_id(request_id)
}

fn sync_gap(gap: Gap, position: &Position, request_id: Option<&str>) -> ServerFrame {
    ServerFrame::new(
        ReplyStatus::SyncGap,
        format!(
            "{} Reload your conversations with LIST_CONVERSATIONS and HISTORY, then continue from \"position\".",
            gap.explain()
        ),
    )
    .with("position", position.to_string())
    .with_request_id(request_id)
}

fn error(code: ErrorCode, message: &str, request_id: Option<&str>) -> ServerFrame {
    ServerFrame::error(code, message).with_request_id(request_id)
}

fn refuse(
    handle: &ConnectionHandle,
    code: ErrorCode,
    message: &str,
    request_id: Option<&str>,
) -> Answered {
    handle.send(&error(code, message, request_id));
    Answered::Done
}
