//! Builds auth-service from its settings and runs it until asked to stop.

use std::sync::Arc;
use std::time::Duration;

use shared_proto::bus::Bus;
use shared_proto::routing::Service;
use shared_proto::service::run_action_service;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::credentials::PasswordHasherPool;
use crate::service::AuthService;
use crate::settings::Settings;
use crate::store::Store;

pub async fn run_until_stopped(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let bus = Bus::connect(&settings.redis.url, settings.bus.names(), &shutdown)
        .await?
        .with_history_limits(settings.bus.history());
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
    let ready = {
        let store = store.clone();
        shared_proto::observability::readiness(move || {
            let store = store.clone();
            async move { store.ping().await }
        })
    };
    let cleaner = tokio::spawn(delete_expired_sessions(store, shutdown.clone()));
    let publisher = {
        let (service, shutdown) = (service.clone(), shutdown.clone());
        tokio::spawn(async move { crate::profiles::publish_all_once(&service, &shutdown).await })
    };
    let result = run_action_service(
        Service::Auth,
        service,
        bus,
        &settings.bus,
        &settings.http,
        ready,
        shutdown,
    )
    .await;
    cleaner.abort();
    publisher.abort();
    result
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
