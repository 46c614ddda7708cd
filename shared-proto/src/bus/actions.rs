//! The glue between the stream worker and a service's action handlers: every
//! service answers through here, so replies, pushed events and the mapping of
//! failures to client frames are the same everywhere.

use std::future::Future;
use std::sync::Arc;

use tracing::{Instrument, error, info, info_span, warn};

use super::Publication;
use super::dead_letters::Reason;
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
    /// False when this service does not answer the client: it handed the
    /// action on to another service, which answers, or no client waits.
    /// `frame` then only names the outcome in logs and metrics.
    pub answers_client: bool,
}

impl Outcome {
    pub fn reply(frame: ServerFrame) -> Self {
        Outcome {
            frame,
            session: None,
            events: Vec::new(),
            answers_client: true,
        }
    }

    /// Done, with nobody to answer here: `status` names the outcome in logs
    /// and metrics.
    pub fn unanswered(status: &str) -> Self {
        Outcome {
            answers_client: false,
            ..Outcome::reply(ServerFrame::new(status, ""))
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
    /// One user's actions share a few slots. Actions whose class is shed
    /// when stale are dropped once their client has been told `TIMEOUT`.
    fn admission(&self, request: &ActionRequest) -> Admission {
        // Anonymous actions take no such slot: many clients can share one
        // address (a front door, a NAT), and their guessing is bounded where
        // it matters, in auth-service. Nor does the question a gateway asks
        // for a login: a new device's login must not wait behind the work of
        // the user's other devices.
        let key = request
            .identity
            .as_ref()
            .filter(|_| request.action != crate::routing::SESSION_STARTED)
            .map(|i| i.user_id.as_str().to_owned());
        let deadline = request
            .deadline_ms
            .unwrap_or_else(|| request.received_at_ms.saturating_add(self.stale_after_ms));
        let shed_at_ms = (!crate::routing::done_when_late(&request.action)).then_some(deadline);
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
        let (frame, session, events, answers_client) = match result {
            Ok(outcome) => (
                outcome.frame,
                outcome.session,
                outcome.events,
                outcome.answers_client,
            ),
            Err(ActionError::Refused(frame)) => (frame, None, Vec::new(), true),
            Err(ActionError::Unavailable(err)) => {
                error!(error = %format!("{err:#}"), "action failed: a backing system is unavailable");
                let frame = ServerFrame::error(
                    ErrorCode::ServiceUnavailable,
                    "The service is unavailable right now; nothing was done. Try again in a moment.",
                );
                (frame, None, Vec::new(), true)
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
        let mut publications = Vec::with_capacity(1 + events.len());
        if answers_client {
            publications.push(self.reply(&request, frame, session));
        }
        publications.extend(events);
        Disposition::Done(publications)
    }

    /// An action given up on is logged with its ids, and its requester is
    /// told `INTERNAL`: the gateway passes it on if the client still waits.
    fn given_up(
        &self,
        request: &ActionRequest,
        deliveries: u64,
        reason: &Reason,
    ) -> Vec<Publication> {
        error!(
            action = %request.action,
            action_id = %request.action_id,
            request_id = request.request_id.as_deref().unwrap_or(""),
            user_id = request.identity.as_ref().map(|i| i.user_id.as_str()).unwrap_or(""),
            deliveries,
            %reason,
            "giving up on an action; it goes to the dead-letter stream",
        );
        vec![self.reply(request, given_up_frame(), None)]
    }
}

/// What a client is told about an action given up on.
fn given_up_frame() -> ServerFrame {
    ServerFrame::error(
        ErrorCode::Internal,
        "The server could not finish this request after several tries and set it aside; part of \
         it may have happened. Check its effect before sending it again.",
    )
}

impl<S> ActionHandler<S> {
    /// The answer to `request`, on the channel of the gateway it came from.
    fn reply(
        &self,
        request: &ActionRequest,
        frame: ServerFrame,
        session: Option<SessionChange>,
    ) -> Publication {
        Publication::live(
            self.names.gateway_channel(&request.origin.gateway_id),
            ToGateway::Reply {
                connection_id: request.origin.connection_id,
                action_id: request.action_id.clone(),
                frame: frame.with_request_id(request.request_id.as_deref()),
                session,
            },
        )
    }
}

/// An action name as a metric label: only names the system knows, so a
/// client cannot grow the number of series.
fn metric_label(action: &str) -> &'static str {
    crate::routing::known_action(action).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Identity, Origin};

    struct Nothing;

    impl ActionService for Nothing {
        async fn handle(&self, _: &ActionRequest, _: &Delivery) -> Result<Outcome, ActionError> {
            Err(ActionError::refused(ErrorCode::Internal, "unused"))
        }
    }

    fn request(action: &str, user: Option<&str>, deadline_ms: Option<i64>) -> ActionRequest {
        ActionRequest {
            action_id: "a".into(),
            action: action.into(),
            request_id: None,
            payload: serde_json::Map::new(),
            origin: Origin {
                gateway_id: "gw".into(),
                connection_id: 1,
            },
            identity: user.map(|u| Identity {
                user_id: crate::action::UserId::new(u),
                session_id: "s".into(),
                email: "e@example.com".into(),
            }),
            received_at_ms: 1_000,
            deadline_ms,
            client_addr: Some("10.0.0.1".into()),
        }
    }

    fn handler() -> ActionHandler<Nothing> {
        ActionHandler::new(
            Arc::new(Nothing),
            Names::default(),
            std::time::Duration::from_secs(10),
        )
    }

    #[test]
    fn a_read_is_shed_at_the_deadline_its_client_was_given_and_a_change_never() {
        let handler = handler();
        let read = handler.admission(&request("HISTORY", Some("ana"), Some(5_000)));
        assert_eq!(read.shed_at_ms, Some(5_000));
        let login = handler.admission(&request("LOGIN", None, None));
        assert_eq!(login.shed_at_ms, Some(11_000), "the service's own fallback");
        let send = handler.admission(&request("SEND_MESSAGE", Some("ana"), Some(5_000)));
        assert_eq!(send.shed_at_ms, None, "a change is always finished");
    }

    #[test]
    fn an_action_given_up_on_answers_its_client_internal() {
        let mut asked = request("SEND_MESSAGE", Some("ana"), None);
        asked.request_id = Some("r-9".into());
        let published = handler().given_up(&asked, 5, &Reason::Failed);
        let [publication] = published.as_slice() else {
            panic!("one reply: {published:?}");
        };
        assert_eq!(publication.channel, "switchyard:gw:gw");
        let ToGateway::Reply {
            connection_id,
            action_id,
            frame,
            session,
        } = &publication.message
        else {
            panic!("a reply: {publication:?}");
        };
        assert_eq!((*connection_id, action_id.as_str()), (1, "a"));
        assert_eq!(frame.status(), "INTERNAL");
        assert_eq!(frame.get("requestId"), Some(&serde_json::json!("r-9")));
        assert!(session.is_none());
    }

    #[test]
    fn a_users_actions_share_one_key_and_anonymous_ones_take_none() {
        let handler = handler();
        let a = handler.admission(&request("HISTORY", Some("ana"), None));
        let b = handler.admission(&request("SEND_MESSAGE", Some("ana"), None));
        let c = handler.admission(&request("HISTORY", Some("bob"), None));
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
        assert_eq!(handler.admission(&request("LOGIN", None, None)).key, None);
        let login_setup = handler.admission(&request("SESSION_STARTED", Some("ana"), None));
        assert_eq!(
            login_setup.key, None,
            "a login waits behind no other device"
        );
    }
}
