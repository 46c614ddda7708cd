//! Builds auth-service from its settings and runs it until asked to stop.

use std::sync::Arc;
use std::time::Duration;

use shared_proto::bus::Bus;
use shared_proto::bus::actions::ActionHandler;
use shared_proto::bus::worker::{self, WorkerConfig};
use shared_proto::routing::Service;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::credentials::PasswordHasherPool;
use crate::handler::AuthService;
use crate::settings::Settings;
use crate::store::Store;

pub async fn run_until_stopped(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let names = settings.bus.names();
    let bus = Bus::connect(&settings.redis.url, names.clone(), &shutdown).await?;
    let store = Store::connect(&settings.mongodb).await?;
    // Without the unique e-mail index, concurrent registrations could create
    // two accounts: take no action before it exists.
    shared_proto::shutdown::retry_until_ok(&shutdown, "create indexes", || store.ensure_indexes())
        .await?;

    let service = Arc::new(AuthService {
        store: store.clone(),
        bus: bus.clone(),
        hasher: PasswordHasherPool::default(),
        settings: settings.auth.clone(),
    });
    let config = WorkerConfig {
        stream: names.action_stream(Service::Auth),
        group: names.consumer_group(Service::Auth),
        consumer: worker::consumer_name("auth"),
        claim_idle: Duration::from_millis(settings.bus.claim_idle_ms),
        max_in_flight: settings.bus.max_in_flight,
        per_key_in_flight: settings.bus.max_in_flight_per_user,
        max_held: settings.bus.max_held,
        drain_timeout: Duration::from_secs(10),
    };
    let metrics = shared_proto::observability::install()?;
    let ready = {
        let (bus, store) = (bus.clone(), store.clone());
        shared_proto::observability::readiness(move || {
            let (bus, store) = (bus.clone(), store.clone());
            async move { bus.is_reachable().await && store.ping().await }
        })
    };
    shared_proto::observability::serve(&settings.http.listen, metrics, ready, shutdown.clone())
        .await?;
    let cleaner = tokio::spawn(delete_expired_sessions(store, shutdown.clone()));
    let handler = Arc::new(ActionHandler::new(
        service,
        names,
        settings.bus.stale_after(),
    ));
    worker::run(bus, config, handler, shutdown).await;
    cleaner.abort();
    Ok(())
}

/// The database keeps no TTL index (FerretDB has none), so expired sessions
/// are removed here; they are refused on use whether removed or not.
async fn delete_expired_sessions(store: Store, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                match store.delete_expired_sessions(shared_proto::now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => info!(deleted = n, "removed expired sessions"),
                    Err(err) => warn!(error = %err, "removing expired sessions failed"),
                }
            }
        }
    }
}
