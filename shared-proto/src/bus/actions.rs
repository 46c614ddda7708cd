//! The glue between the stream worker and a service's action handlers: every
//! service answers through here, so replies, pushed events and the mapping of
//! failures to client frames are the same everywhere.

use std::future::Future;
use std::sync::Arc;

use tracing::{Instrument, error, info, info_span, warn};

use super::Publication;
use super::worker::{Admission, Delivery, Disposition, EntryHandler};
use crate::client::ServerFrame;
use crate::envelope::{ActionRequest, SessionChange, ToGateway};
use crate::names::Names;
use crate::status::ErrorCode;

/// What handling an action produced.
#[derive(Debug)]
pub struct Outcome {
    /// The reply to the connection that sent the action.
    pub frame: ServerFrame,
    /// A change of what that connection is logged in as.
    pub session: Option<SessionChange>,
    /// Events to push, published after the reply, in order.
    pub events: Vec<Publication>,
}

impl Outcome {
    pub fn reply(frame: ServerFrame) -> Self {
        Outcome {
            frame,
            session: None,
            events: Vec::new(),
        }
    }

    pub fn with_session(mut self, session: SessionChange) -> Self {
        self.session = Some(session);
        self
    }

    pub fn with_event(mut self, publication: Publication) -> Self {
        self.events.push(publication);
        self
    }
}

/// Why an action produced no outcome.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The client asked for something wrong; this frame says what.
    #[error("refused: {}", .0.status())]
    Refused(ServerFrame),
    /// A backing system failed; the client hears SERVICE_UNAVAILABLE and
    /// nothing was done (the handler made sure of that).
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// Part of the effect happened and the rest must: leave the entry pending
    /// so it is handled again (idempotently) once things are back.
    #[error("to be retried: {0:#}")]
    Retry(anyhow::Error),
}

impl ActionError {
    /// A refusal with an error code and a sentence.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        ActionError::Refused(ServerFrame::error(code, message))
    }
}

/// A service's handling of its actions.
pub trait ActionService: Send + Sync + 'static {
    fn handle(
        &self,
        request: &ActionRequest,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<Outcome, ActionError>> + Send;
}

/// Adapts an [`ActionService`] to the stream worker.
pub struct ActionHandler<S> {
    service: Arc<S>,
    names: Names,
    /// How long after the gateway received an action its client stops
    /// waiting, for an action that does not carry its own deadline.
    stale_after_ms: i64,
}

impl<S: ActionService> ActionHandler<S> {
    pub fn new(service: Arc<S>, names: Names, stale_after: std::time::Duration) -> Self {
        ActionHandler {
            service,
            names,
            stale_after_ms: i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX / 2),
        }
    }
}

impl<S: ActionService> EntryHandler<ActionRequest> for ActionHandler<S> {
    /// One user's actions share a few slots; an anonymous connection's count
    /// against its network address. Actions whose class is shed when stale
    /// are dropped once their client has been told `TIMEOUT`.
    fn admission(&self, request: &ActionRequest) -> Admission {
        let key = match &request.identity {
            Some(identity) => Some(format!("user:{}", identity.user_id)),
            None => request.client_addr.as_ref().map(|a| format!("addr:{a}")),
        };
        let deadline = request
            .deadline_ms
            .unwrap_or_else(|| request.received_at_ms.saturating_add(self.stale_after_ms));
        let shed_at_ms = crate::routing::class_of(&request.action)
            .shed_when_stale()
            .then_some(deadline);
        Admission { key, shed_at_ms }
    }

    async fn handle(&self, request: ActionRequest, delivery: Delivery) -> Disposition {
        let span = info_span!(
            "action",
            action = %request.action,
            action_id = %request.action_id,
            request_id = request.request_id.as_deref().unwrap_or(""),
            user_id = request.identity.as_ref().map(|i| i.user_id.as_str()).unwrap_or(""),
            reclaimed = delivery.reclaimed,
        );
        let started = std::time::Instant::now();
        let result = self
            .service
            .handle(&request, &delivery)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        let (frame, session, events) = match result {
            Ok(outcome) => (outcome.frame, outcome.session, outcome.events),
            Err(ActionError::Refused(frame)) => (frame, None, Vec::new()),
            Err(ActionError::Unavailable(err)) => {
                error!(error = %format!("{err:#}"), "action failed: a backing system is unavailable");
                let frame = ServerFrame::error(
                    ErrorCode::ServiceUnavailable,
                    "The service is unavailable right now; nothing was done. Try again in a moment.",
                );
                (frame, None, Vec::new())
            }
            Err(ActionError::Retry(err)) => {
                warn!(error = %format!("{err:#}"), "action half done; it will be handled again");
                return Disposition::Retry;
            }
        };
        info!(status = frame.status(), "action handled");
        let action = metric_label(&request.action);
        metrics::histogram!("switchyard_action_duration_seconds", "action" => action)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("switchyard_actions_total", "action" => action, "status" => frame.status().to_owned())
            .increment(1);
        let reply = Publication {
            channel: self.names.gateway_channel(&request.origin.gateway_id),
            message: ToGateway::Reply {
                connection_id: request.origin.connection_id,
                action_id: request.action_id.clone(),
                frame: frame.with_request_id(request.request_id.as_deref()),
                session,
            },
        };
        let mut publications = Vec::with_capacity(1 + events.len());
        publications.push(reply);
        publications.extend(events);
        Disposition::Done(publications)
    }
}

/// An action name as a metric label: only names the system knows, so a
/// client cannot grow the number of series.
fn metric_label(action: &str) -> &'static str {
    crate::routing::AUTH_ACTIONS
        .iter()
        .chain(crate::routing::CHAT_ACTIONS)
        .chain(std::iter::once(&crate::routing::SESSION_STARTED))
        .find(|known| **known == action)
        .copied()
        .unwrap_or("other")
}
