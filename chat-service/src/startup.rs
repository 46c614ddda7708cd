//! Builds chat-service from its settings and runs it until asked to stop.

use std::sync::Arc;
use std::time::Duration;

use shared_proto::bus::Bus;
use shared_proto::bus::actions::ActionHandler;
use shared_proto::routing::Service;
use shared_proto::service::{StreamSpec, run_action_service};
use tokio_util::sync::CancellationToken;

use crate::events::Events;
use crate::files::{self, FileService, signing::UrlSigner};
use crate::known::Known;
use crate::message_log::MessageLog;
use crate::partitions;
use crate::service::ChatService;
use crate::settings::{FilesSettings, Settings};
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
    let signer = url_signer(&bus, &settings.files, &shutdown).await?;
    let files = Arc::new(FileService::new(
        store.clone(),
        bus.clone(),
        settings.files.clone(),
        signer.clone(),
    ));
    files::serve(&settings.files.listen, files, shutdown.clone()).await?;
    tokio::spawn(files::sweep::run(
        store.files.clone(),
        Duration::from_secs(settings.files.unattached_ttl_secs),
        Duration::from_secs(settings.files.sweep_interval_secs),
        shutdown.clone(),
    ));
    let known = Known::new(bus.clone());
    tokio::spawn(known.clone().hear_changes(shutdown.clone()));
    let service = Arc::new(ChatService {
        messages: MessageLog::start(store.clone(), settings.mongodb.operation_timeout()),
        known,
        store,
        bus: bus.clone(),
        events: Events::new(names),
        settings: settings.chat.clone(),
        files: settings.files.clone(),
        signer,
    });
    let count =
        shared_proto::shutdown::retry_until_ok(&shutdown, "agree on the partitions", || {
            shared_proto::partitions::agree_on_count(
                &bus,
                Service::Chat,
                settings.bus.chat_partitions,
            )
        })
        .await?;
    let base =
        StreamSpec::actions(Service::Chat, &settings.bus.names()).worker_config(&settings.bus);
    let plan = partitions::Plan {
        count,
        lease: Duration::from_millis(settings.bus.partition_lease_ms).max(MIN_LEASE),
        replica: base.consumer.clone(),
        base,
    };
    let handler = Arc::new(ActionHandler::new(
        service.clone(),
        settings.bus.names(),
        settings.bus.stale_after(),
    ));
    let sharing = tokio::spawn(partitions::run(
        bus.clone(),
        plan,
        handler,
        shutdown.clone(),
    ));
    // Every other action, and messages from gateways that put them on the
    // service's own stream.
    let served = run_action_service(
        Service::Chat,
        service,
        bus,
        &settings.bus,
        &settings.http,
        ready,
        shutdown,
    )
    .await;
    let _ = sharing.await;
    served
}

/// The shortest partition lease accepted: it is renewed at a third of it.
const MIN_LEASE: Duration = Duration::from_millis(300);

/// The signer of attachment URLs: the configured key, or else one the
/// replicas agree on through Redis (the first replica's random key).
async fn url_signer(
    bus: &Bus,
    settings: &FilesSettings,
    shutdown: &CancellationToken,
) -> anyhow::Result<UrlSigner> {
    let ttl = Duration::from_secs(settings.url_ttl_secs.max(1));
    let configured = settings.url_secret.expose();
    if !configured.is_empty() {
        return Ok(UrlSigner::new(configured.as_bytes(), ttl));
    }
    let candidate = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let key = bus.names().file_url_key();
    let shared = shared_proto::shutdown::retry_until_ok(shutdown, "agree on a URL key", || {
        bus.shared_value(&key, &candidate)
    })
    .await?;
    Ok(UrlSigner::new(shared.as_bytes(), ttl))
}
