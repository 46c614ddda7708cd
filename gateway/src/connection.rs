//! One client connection: a reader that checks each frame and puts it on the
//! bus; what the client is sent goes through its [`SocketWriter`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use shared_proto::bus::Bus;
use shared_proto::bus::admission::{Admitted, Limits};
use shared_proto::client::{ClientRequest, ServerFrame, parse_client_frame};
use shared_proto::envelope::{ActionRequest, Origin};
use shared_proto::partitions;
use shared_proto::routing::{SYNC, Service, route};
use shared_proto::status::ErrorCode;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::hub::{ConnectionHandle, Hub, PendingRequest};
use crate::rate_limit::{FloodWatch, TokenBucket};
use crate::settings::GatewaySettings;
use crate::socket_writer::{ReadSide, SocketWriter};
use shared_proto::status::close_code;

/// The read buffer every connection allocates up front. Frames are small:
/// 1 KiB instead of 4 KiB measured about 3 KiB less resident memory per idle
/// connection (tests/loadgen, docs/benchmarks.md); a larger frame still
/// arrives whole, the buffer grows for it.
const READ_BUFFER: usize = 1024;

/// What every connection of this replica shares.
pub struct Context {
    pub hub: Arc<Hub>,
    pub bus: Bus,
    pub settings: GatewaySettings,
    /// Cancelled when the replica starts draining: stop reading new frames.
    pub draining: CancellationToken,
    /// True while the subscription that brings replies is up. Without it an
    /// action's answer would be lost, so none is taken.
    pub listening: Arc<std::sync::atomic::AtomicBool>,
    /// How many partitions chat-service's messages are split into, as agreed
    /// by every process (`shared_proto::partitions`).
    pub chat_partitions: u32,
    /// Streams Redis lately refused, refused here for a moment without asking.
    pub refusals: crate::refusals::Refusals,
}

/// How long a connection this gateway closed waits for the client's own close
/// frame. Ending the TCP connection before reading it could leave unread
/// data behind, which makes the kernel send a reset instead of a FIN, and a
/// client (or a proxy in between) can then lose the close frame and its code.
/// It is also how long a client that stopped reading gets to take what was
/// left for it.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

type ClientStream = WebSocketStream<ReadSide>;

/// Serves one client on its socket, just upgraded to a WebSocket, until either
/// side closes it. `already_read` is what the client sent after its upgrade
/// request, in the same packets; `forwarded_addr` the client's address as a
/// trusted front door reported it.
pub async fn serve(
    socket: TcpStream,
    already_read: Vec<u8>,
    forwarded_addr: Option<String>,
    context: Arc<Context>,
) {
    let client_addr =
        forwarded_addr.or_else(|| socket.peer_addr().ok().map(|a| a.ip().to_string()));
    // Every frame is a whole message someone waits for: send it now, not when
    // the client has acknowledged the previous one.
    if let Err(err) = socket.set_nodelay(true) {
        debug!(error = %err, "could not turn off Nagle's algorithm");
    }
    let (read_half, write_half) = socket.into_split();
    let writer = SocketWriter::new(write_half, context.settings.outbox_frames);
    let limit = context.settings.max_frame_bytes;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let mut stream = WebSocketStream::from_partially_read(
        ReadSide::new(read_half, writer.clone()),
        already_read,
        Role::Server,
        Some(config),
    )
    .await;
    let handle = context.hub.register(Arc::new(writer.clone()));
    read_frames(&mut stream, &handle, client_addr.as_deref(), &context)
        .instrument(info_span!("connection", id = handle.id))
        .await;
    context.hub.unregister(handle.id);
    let closed_by_us = handle.closed.is_cancelled();
    drop(handle);
    // Sends the library's answer to a client's close frame, if it has one.
    let _ = stream.flush().await;
    if !writer.flushed(CLOSE_LINGER).await {
        debug!("the client does not read; dropping what was left to write");
    }
    writer.abandon();
    if closed_by_us {
        linger(&mut stream).await;
    }
}

/// Reads until the client answers our close frame (or goes), at most
/// [`CLOSE_LINGER`].
async fn linger(stream: &mut ClientStream) {
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                return;
            }
        }
    })
    .await;
}

async fn read_frames(
    stream: &mut ClientStream,
    handle: &Arc<ConnectionHandle>,
    client_addr: Option<&str>,
    context: &Context,
) {
    let mut bucket = TokenBucket::new(context.settings.rate_per_sec, context.settings.rate_burst);
    let mut flood = FloodWatch::default();
    let mut draining = false;
    loop {
        let message = tokio::select! {
            _ = handle.closed.cancelled() => return,
            // The replica is draining: the connection stays registered, so
            // the answers to its requests already on the bus still reach it,
            // until the hub closes it with 1012 (see startup).
            _ = context.draining.cancelled(), if !draining => {
                draining = true;
                continue;
            }
            message = stream.next() => message,
        };
        let message = match message {
            None => return,
            Some(Ok(message)) => message,
            Some(Err(err)) => {
                if matches!(err, WsError::Capacity(_)) {
                    handle.close(close_code::MESSAGE_TOO_BIG, "frame too large");
                } else {
                    debug!(error = %err, "client connection failed");
                }
                return;
            }
        };
        if draining && !matches!(message, Message::Close(_)) {
            // Frames sent while the replica drains are read but not taken:
            // they get no answer, so the client sends them again after it
            // reconnects elsewhere. Reading them (rather than leaving them in
            // the socket) keeps the coming close clean; see CLOSE_LINGER.
            continue;
        }
        if matches!(message, Message::Text(_) | Message::Binary(_)) {
            metrics::counter!("switchyard_gateway_frames_in_total").increment(1);
        }
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                handle.send(&ServerFrame::error(
                    ErrorCode::BadRequest,
                    "Binary frames are not accepted. Send JSON in text frames.",
                ));
                continue;
            }
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        let verdict = if bucket.try_take() {
            // Boxed: an idle connection's task then holds a pointer here,
            // not the largest state a frame's handling goes through (a
            // `SYNC` reads the histories with two scripts), which every
            // connection would otherwise carry all its life.
            Box::pin(accept_frame(text.as_str(), handle, client_addr, context)).await
        } else {
            Verdict::OverConnectionLimit
        };
        if matches!(verdict, Verdict::Taken) {
            flood.accepted();
            continue;
        }
        if flood.refused() {
            warn!("disconnecting a client that ignores its rate limit");
            handle.close(close_code::POLICY_VIOLATION, "rate limit exceeded");
            return;
        }
        if matches!(verdict, Verdict::OverConnectionLimit) {
            // Parsed only to echo its requestId, as every reply does.
            let request_id = parse_client_frame(text.as_str())
                .ok()
                .and_then(|r| r.request_id);
            handle.send(
                &ServerFrame::error(
                    ErrorCode::RateLimited,
                    "Too many frames. Slow down; this frame was not processed.",
                )
                .with_request_id(request_id.as_deref()),
            );
        }
    }
}

/// Whether a frame counted against the client's limits.
enum Verdict {
    /// Handled: put on the bus, or refused for what it said.
    Taken,
    /// Over the connection's own rate; not answered yet.
    OverConnectionLimit,
    /// Over its user's budget; already answered.
    OverUserLimit,
}

/// Answers a `SYNC` here, from the event histories.
async fn sync_frame(
    request: ClientRequest,
    handle: &ConnectionHandle,
    context: &Context,
) -> Verdict {
    let refuse = |code, message: String| {
        handle.send(
            &ServerFrame::error(code, message).with_request_id(request.request_id.as_deref()),
        );
        Verdict::Taken
    };
    let Some(identity) = handle.identity() else {
        return refuse(
            ErrorCode::Unauthorized,
            "SYNC needs a logged-in connection. Send LOGIN or FASTLOGIN first.".into(),
        );
    };
    if !context.listening.load(std::sync::atomic::Ordering::Acquire) {
        return refuse(
            ErrorCode::ServiceUnavailable,
            "The service is unavailable right now; nothing was done. Try again in a moment.".into(),
        );
    }
    match crate::sync::sync(request, identity, handle, context).await {
        crate::sync::Answered::Done => Verdict::Taken,
        crate::sync::Answered::OverUserLimit => Verdict::OverUserLimit,
    }
}

/// Checks one frame's envelope and, if it passes, puts it on the bus.
async fn accept_frame(
    text: &str,
    handle: &ConnectionHandle,
    client_addr: Option<&str>,
    context: &Context,
) -> Verdict {
    let request = match parse_client_frame(text) {
        Ok(request) => request,
        Err(rejection) => {
            handle.send(&rejection.to_frame());
            return Verdict::Taken;
        }
    };
    let reply_error = |code, message: String| {
        handle.send(
            &ServerFrame::error(code, message).with_request_id(request.request_id.as_deref()),
        );
    };
    if request.action == SYNC {
        return sync_frame(request, handle, context).await;
    }
    let Some(route) = route(&request.action) else {
        reply_error(
            ErrorCode::UnknownAction,
            format!(
                "Unknown action {:?}. See the protocol documentation for the actions this server knows.",
                request.action
            ),
        );
        return Verdict::Taken;
    };
    let identity = handle.identity();
    if route.requires_login && identity.is_none() {
        reply_error(
            ErrorCode::Unauthorized,
            format!(
                "{} needs a logged-in connection. Send LOGIN or FASTLOGIN first.",
                request.action
            ),
        );
        return Verdict::Taken;
    }
    if !context.listening.load(std::sync::atomic::Ordering::Acquire) {
        reply_error(
            ErrorCode::ServiceUnavailable,
            "The service is unavailable right now; nothing was done. Try again in a moment.".into(),
        );
        return Verdict::Taken;
    }
    let action_id = uuid::Uuid::now_v7().to_string();
    let received_at_ms = shared_proto::now_ms();
    let envelope = ActionRequest {
        action_id: action_id.clone(),
        action: request.action.clone(),
        request_id: request.request_id.clone(),
        payload: request.payload,
        origin: Origin {
            gateway_id: context.hub.gateway_id().to_owned(),
            connection_id: handle.id,
        },
        identity,
        received_at_ms,
        deadline_ms: Some(received_at_ms.saturating_add(
            i64::try_from(context.settings.action_timeout_ms).unwrap_or(i64::MAX / 2),
        )),
        client_addr: client_addr.map(str::to_owned),
    };
    // Tracked before it is submitted, so that even an instant reply finds it.
    context.hub.track(
        action_id.clone(),
        PendingRequest {
            connection_id: handle.id,
            action: request.action.clone(),
            request_id: request.request_id.clone(),
            started: Instant::now(),
            deadline: Instant::now() + context.settings.action_timeout(),
            timed_out: false,
        },
    );
    let settings = &context.settings;
    let (stream, partitions) = stream_for(context, route.service, &envelope);
    let limits = Limits {
        budget: settings.user_limits.budget(route.class),
        max_backlog: match partitions {
            None => settings.max_backlog,
            Some(parts) => (settings.max_backlog / parts).max(MIN_PARTITION_BACKLOG),
        },
        // Only the messages' partitions are bounded in time: theirs is the
        // latency the bound keeps. Account actions include slow ones on
        // purpose (password hashing, throttled guesses), whose waits say
        // nothing of overload; their streams are bounded in entries.
        max_wait: partitions.map(|_| Duration::from_millis(settings.max_queue_wait_ms)),
        busy_retry_after: settings.busy_retry(),
    };
    let admitted = match context.refusals.standing(&stream, Instant::now()) {
        Some(retry_after_ms) => Ok(Admitted::Busy { retry_after_ms }),
        None => {
            let asked = Instant::now();
            let admitted = context
                .bus
                .admit(&stream, route.class, &envelope, limits)
                .await;
            metrics::histogram!("switchyard_gateway_admission_duration_seconds", "service" => route.service.name())
                .record(asked.elapsed().as_secs_f64());
            if let Ok(Admitted::Busy { retry_after_ms }) = admitted {
                context
                    .refusals
                    .note(&stream, retry_after_ms, Instant::now());
            }
            admitted
        }
    };
    if !matches!(admitted, Ok(Admitted::Accepted)) {
        context.hub.untrack(&action_id);
    }
    match admitted {
        Ok(Admitted::Accepted) => Verdict::Taken,
        Ok(Admitted::Revoked) => {
            // The session ended on another gateway; this one may not have
            // heard yet.
            context.hub.log_out(handle.id);
            reply_error(
                ErrorCode::Unauthorized,
                "Your session was closed. Log in again to continue.".into(),
            );
            Verdict::Taken
        }
        Ok(Admitted::Limited { retry_after_ms }) => {
            metrics::counter!("switchyard_gateway_user_limited_total", "class" => route.class.name())
                .increment(1);
            handle.send(
                &ServerFrame::error(
                    ErrorCode::RateLimited,
                    format!(
                        "Too many {} actions from your account; this one was not processed. Try again in {retry_after_ms} ms.",
                        route.class.name()
                    ),
                )
                .with("retryAfterMs", retry_after_ms)
                .with_request_id(request.request_id.as_deref()),
            );
            Verdict::OverUserLimit
        }
        Ok(Admitted::Busy { retry_after_ms }) => {
            metrics::counter!("switchyard_gateway_busy_total", "service" => route.service.name())
                .increment(1);
            handle.send(
                &ServerFrame::error(
                    ErrorCode::Busy,
                    format!(
                        "The service is busy; {} was not processed. Try again in {retry_after_ms} ms.",
                        request.action
                    ),
                )
                .with("retryAfterMs", retry_after_ms)
                .with_request_id(request.request_id.as_deref()),
            );
            Verdict::Taken
        }
        Err(err) => {
            warn!(error = %err, action = %request.action, "could not put an action on the bus");
            reply_error(
                ErrorCode::ServiceUnavailable,
                "The service is unavailable right now; nothing was done. Try again in a moment."
                    .into(),
            );
            Verdict::Taken
        }
    }
}

/// The least backlog a partition's stream may hold before `BUSY`.
const MIN_PARTITION_BACKLOG: u64 = 32;

/// The stream an action goes on: a message on its conversation's partition
/// (with the number of partitions, whose replicas each drain a part of the
/// service's rate), anything else on its service's stream.
fn stream_for(
    context: &Context,
    service: Service,
    envelope: &ActionRequest,
) -> (String, Option<u64>) {
    let names = context.hub.names();
    let partition = envelope
        .identity
        .as_ref()
        .filter(|_| service == Service::Chat)
        .and_then(|identity| {
            partitions::conversation_of(&envelope.action, &envelope.payload, &identity.user_id)
        })
        .map(|conversation| partitions::partition_of(&conversation, context.chat_partitions));
    match partition {
        Some(partition) => (
            names.partition_stream(service, partition),
            Some(u64::from(context.chat_partitions.max(1))),
        ),
        None => (names.action_stream(service), None),
    }
}
