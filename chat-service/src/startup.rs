//! Builds chat-service from its settings and runs it until asked to stop.

use std::sync::Arc;

use shared_proto::bus::Bus;
use shared_proto::routing::Service;
use shared_proto::service::run_action_service;
use tokio_util::sync::CancellationToken;

use crate::events::Events;
use crate::service::ChatService;
use crate::settings::Settings;
use crate::store::Store;

pub async fn run_until_stopped(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let names = settings.bus.names();
    let bus = Bus::connect(&settings.redis.url, names.clone(), &shutdown)
        .await?
        .with_history_limits(settings.bus.history());
    let store = Store::connect(&settings.mongodb).await?;
    // The unique indexes are what keep sequence numbers gapless and resends
    // single: take no action before they exist.
    shared_proto::shutdown::retry_until_ok(&shutdown, "create indexes", || store.ensure_indexes())
        .await?;
    let ready = {
        let store = store.clone();
        shared_proto::observability::readiness(move || {
            let store = store.clone();
            async move { store.ping().await }
        })
    };
    let service = Arc::new(ChatService {
        store,
        bus: bus.clone(),
        events: Events::new(names),
        settings: settings.chat.clone(),
    });
    run_action_service(
        Service::Chat,
        service,
        bus,
        &settings.bus,
        &settings.http,
        ready,
        shutdown,
    )
    .await
}
