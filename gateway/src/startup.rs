//! Builds the gateway from its settings and runs it until asked to stop.
//!
//! Stopping drains: the replica stops taking connections and frames, waits
//! (up to `drain_ms`) for the answers to requests already on the bus, then
//! closes every socket with 1012 so clients reconnect to another replica.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use shared_proto::bus::Bus;
use shared_proto::partitions;
use shared_proto::routing::Service;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::connection::Context;
use crate::http::{AppState, router};
use crate::hub::Hub;
use crate::leases::Leases;
use crate::settings::Settings;
use shared_proto::status::close_code;

/// How long after its deadline a request is still remembered, so that a late
/// answer reaches the client instead of being dropped.
const LATE_ANSWER_GRACE: Duration = Duration::from_secs(60);

pub struct Application {
    listener: TcpListener,
    state: AppState,
    subscription_changes: mpsc::UnboundedReceiver<crate::hub::SubscriptionChange>,
}

impl Application {
    /// Connects to Redis and binds the listening socket.
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let gateway_id = settings
            .gateway
            .id
            .clone()
            .unwrap_or_else(|| format!("gw-{}", uuid::Uuid::new_v4().simple()));
        let names = settings.bus.names();
        let bus = Bus::connect(&settings.redis.url, names.clone(), &shutdown)
            .await?
            .with_history_limits(settings.bus.history());
        let chat_partitions =
            shared_proto::shutdown::retry_until_ok(&shutdown, "agree on the partitions", || {
                partitions::agree_on_count(&bus, Service::Chat, settings.bus.chat_partitions)
            })
            .await?;
        let listener = TcpListener::bind(&settings.gateway.listen).await?;
        let (changes_tx, subscription_changes) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub::new(gateway_id, names, changes_tx));
        let context = Arc::new(Context {
            hub,
            bus,
            settings: settings.gateway,
            // Stopping starts with draining.
            draining: shutdown.child_token(),
            listening: Arc::new(AtomicBool::new(false)),
            chat_partitions,
            refusals: Default::default(),
        });
        Ok(Application {
            listener,
            state: AppState {
                context,
                connections: TaskTracker::new(),
                metrics: shared_proto::observability::install()?,
            },
            subscription_changes,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            subscription_changes,
        } = self;
        let context = state.context.clone();
        let background = CancellationToken::new();
        let hub = context.hub.clone();
        info!(gateway = hub.gateway_id(), addr = %listener.local_addr()?, "gateway listening");
        if context.settings.allowed_origins.is_empty() {
            warn!(
                "origins are not checked: gateway.allowed_origins is empty, so a page on any site \
                 can open a WebSocket here from a visitor's browser; set \
                 SWITCHYARD__GATEWAY__ALLOWED_ORIGINS to the origins the web clients are served from"
            );
        }

        let leases = Leases::new(
            context.bus.clone(),
            hub.gateway_id().to_owned(),
            context.settings.max_connections_per_user,
        );
        let lease_keeper = tokio::spawn(crate::leases::keep(
            leases.clone(),
            hub.clone(),
            background.clone(),
        ));
        let logins = crate::login::Logins::new(
            hub.clone(),
            context.bus.clone(),
            leases,
            context.settings.login_setup(),
            context.settings.action_timeout(),
        );
        let delivery_delay = Arc::new(crate::delivery_delay::DeliveryDelay::default());
        let listener_task = tokio::spawn(crate::listener::run(
            context.bus.clone(),
            hub.clone(),
            logins,
            subscription_changes,
            delivery_delay.clone(),
            context.listening.clone(),
            background.clone(),
        ));
        let delay_reporter = tokio::spawn(crate::delivery_delay::report(
            delivery_delay,
            context.bus.clone(),
            hub.gateway_id().to_owned(),
            background.clone(),
        ));
        let sweeper = tokio::spawn(sweep_deadlines(hub.clone(), background.clone()));

        let connections = state.connections.clone();
        crate::server::serve(listener, router(state), shutdown).await;

        info!(pending = hub.pending_count(), "draining");
        let deadline = Instant::now() + context.settings.drain();
        while hub.pending_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        hub.close_all(close_code::SERVICE_RESTART, "gateway restarting");
        connections.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
        background.cancel();
        let _ = tokio::join!(listener_task, sweeper, lease_keeper, delay_reporter);
        info!("gateway stopped");
        Ok(())
    }
}

/// Tells clients whose requests got no answer in time.
async fn sweep_deadlines(hub: Arc<Hub>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                hub.expire(Instant::now(), LATE_ANSWER_GRACE);
                ticks += 1;
                // Sessions last days; looking every few seconds is plenty.
                if ticks % 50 == 0 {
                    hub.expire_sessions(shared_proto::now_ms());
                }
                metrics::gauge!("switchyard_gateway_pending_requests").set(hub.pending_count() as f64);
            }
        }
    }
}
