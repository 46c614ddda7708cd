//! Builds chat-service from its settings and runs it until asked to stop.

use std::sync::Arc;
use std::time::Duration;

use shared_proto::bus::Bus;
use shared_proto::bus::actions::ActionHandler;
use shared_proto::bus::worker::{self, WorkerConfig};
use shared_proto::routing::Service;
use tokio_util::sync::CancellationToken;

use crate::events::Events;
use crate::handler::ChatService;
use crate::settings::Settings;
use crate::store::Store;

pub async fn run_until_stopped(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let names = settings.bus.names();
    let bus = Bus::connect(&settings.redis.url, names.clone(), &shutdown).await?;
    let store = Store::connect(&settings.mongodb).await?;
    // The unique indexes are what keep sequence numbers gapless and resends
    // single: take no action before they exist.
    shared_proto::shutdown::retry_until_ok(&shutdown, "create indexes", || store.ensure_indexes())
        .await?;
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
    let service = Arc::new(ChatService {
        store,
        events: Events::new(names.clone()),
        settings: settings.chat.clone(),
    });
    let config = WorkerConfig {
        stream: names.action_stream(Service::Chat),
        group: names.consumer_group(Service::Chat),
        consumer: worker::consumer_name("chat"),
        claim_idle: Duration::from_millis(settings.bus.claim_idle_ms.max(100)),
        max_in_flight: settings.bus.max_in_flight,
        per_key_in_flight: settings.bus.max_in_flight_per_user,
        max_held: settings.bus.max_held,
        drain_timeout: Duration::from_secs(10),
    };
    worker::run(
        bus,
        config,
        Arc::new(ActionHandler::new(
            service,
            names,
            settings.bus.stale_after(),
        )),
        shutdown,
    )
    .await;
    Ok(())
}
