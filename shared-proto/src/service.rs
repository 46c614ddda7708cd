//! The one way a stream-consuming service starts: serve its probes and
//! metrics, read its stream through a consumer group with one set of worker
//! defaults, and stop when the shutdown token is cancelled.
//!
//! What differs between services (their state, indexes, background chores,
//! retry policies) stays in each service's own startup module.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::bus::actions::{ActionHandler, ActionService};
use crate::bus::worker::{self, EntryHandler, WorkerConfig};
use crate::envelope::ActionRequest;
use crate::names::Names;
use crate::observability::{self, ReadinessCheck};
use crate::routing::Service;
use crate::settings::{BusSettings, HttpSettings};

/// How long to wait, once stopping, for entries already being handled,
/// unless a service says otherwise.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest claim interval accepted: the worker ticks at fractions of it.
pub const MIN_CLAIM_IDLE: Duration = Duration::from_millis(100);

/// How entries share a replica's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fairness {
    /// One user's entries share `max_in_flight_per_user` slots.
    PerUser,
    /// Entries have no user to be fair between: any may take any slot.
    None,
}

/// Which stream a service reads, and how.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Prefix of this replica's consumer name.
    pub role: String,
    pub stream: String,
    pub group: String,
    /// Where entries given up on go.
    pub dead_letters: String,
    pub fairness: Fairness,
    pub drain_timeout: Duration,
}

impl StreamSpec {
    /// The action stream of `service`, fair between users.
    pub fn actions(service: Service, names: &Names) -> Self {
        StreamSpec {
            role: service.name().into(),
            stream: names.action_stream(service),
            group: names.consumer_group(service),
            dead_letters: names.dead_letters(service),
            fairness: Fairness::PerUser,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }

    /// The worker settings for this stream, from the bus settings.
    pub fn worker_config(&self, bus: &BusSettings) -> WorkerConfig {
        let max_in_flight = bus.max_in_flight.max(1);
        WorkerConfig {
            stream: self.stream.clone(),
            group: self.group.clone(),
            consumer: worker::consumer_name(&self.role),
            claim_idle: Duration::from_millis(bus.claim_idle_ms).max(MIN_CLAIM_IDLE),
            max_in_flight,
            per_key_in_flight: match self.fairness {
                Fairness::PerUser => bus.max_in_flight_per_user,
                Fairness::None => max_in_flight,
            },
            max_held: bus.max_held,
            drain_timeout: self.drain_timeout,
            handle_timeout: Duration::from_millis(bus.handle_timeout_ms.max(1)),
            max_deliveries: bus.max_deliveries.max(1),
            dead_letters: self.dead_letters.clone(),
            adopt_at_start: false,
            fence: None,
        }
    }
}

/// A service whose probes are served and whose worker is ready to run.
pub struct StreamService {
    bus: Bus,
    config: WorkerConfig,
    shutdown: CancellationToken,
}

impl StreamService {
    /// Serves `/healthz`, `/readyz` and `/metrics` on `http.listen` until
    /// `shutdown`; the service is ready while Redis answers and `ready` (its
    /// own dependencies) says so.
    pub async fn start(
        spec: &StreamSpec,
        bus: Bus,
        settings: &BusSettings,
        http: &HttpSettings,
        ready: ReadinessCheck,
        shutdown: CancellationToken,
    ) -> anyhow::Result<StreamService> {
        let config = spec.worker_config(settings);
        let metrics = observability::install()?;
        let probe = {
            let bus = bus.clone();
            observability::readiness(move || {
                let (bus, ready) = (bus.clone(), ready.clone());
                async move { bus.is_reachable().await && ready().await }
            })
        };
        observability::serve(&http.listen, metrics, probe, shutdown.clone()).await?;
        Ok(StreamService {
            bus,
            config,
            shutdown,
        })
    }

    /// Handles entries until the shutdown token is cancelled, then waits (up
    /// to the drain timeout) for the entries in hand.
    pub async fn run<T, H>(self, handler: Arc<H>)
    where
        T: DeserializeOwned + Send + 'static,
        H: EntryHandler<T>,
    {
        worker::run::<T, H>(self.bus, self.config, handler, self.shutdown).await;
    }

    /// Handles the actions of `service`'s stream with `actions` until the
    /// shutdown token is cancelled.
    pub async fn run_actions<S: ActionService>(self, actions: Arc<S>, settings: &BusSettings) {
        let handler = ActionHandler::new(actions, settings.names(), settings.stale_after());
        self.run::<ActionRequest, _>(Arc::new(handler)).await;
    }
}

/// Serves probes and metrics, then handles `service`'s actions until
/// `shutdown`: the whole life of an action-taking service after it has
/// connected to its dependencies.
pub async fn run_action_service<S: ActionService>(
    service: Service,
    actions: Arc<S>,
    bus: Bus,
    settings: &BusSettings,
    http: &HttpSettings,
    ready: ReadinessCheck,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let spec = StreamSpec::actions(service, &settings.names());
    StreamService::start(&spec, bus, settings, http, ready, shutdown)
        .await?
        .run_actions(actions, settings)
        .await;
    Ok(())
}
