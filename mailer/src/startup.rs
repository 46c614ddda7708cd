//! Builds the mailer from settings and runs it until a shutdown token is
//! cancelled: `main` passes the signal token, tests pass their own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shared_proto::bus::Bus;
use shared_proto::bus::worker::{self, WorkerConfig};
use shared_proto::mail::MailJob;
use tokio_util::sync::CancellationToken;

use crate::handler::{MailHandler, RetryPolicy};
use crate::settings::Settings;
use crate::smtp::Smtp;
use crate::store::MailLog;

/// How long to wait, once stopping, for sends already under way. Shorter than
/// a send may take at worst; a send cut off leaves its entry pending, to be
/// claimed by another replica.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The shortest claim interval accepted: the worker ticks at fractions of it.
const MIN_CLAIM_IDLE: Duration = Duration::from_millis(100);

pub struct Application {
    bus: Bus,
    config: WorkerConfig,
    handler: Arc<MailHandler>,
    shutdown: CancellationToken,
}

impl Application {
    /// Sets up SMTP and MongoDB (both connect on first use) and connects to
    /// Redis, waiting for it until `shutdown` is cancelled; then this fails.
    pub async fn build(
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Application> {
        let smtp = Smtp::new(&settings.smtp).context("setting up SMTP")?;
        let log = MailLog::connect(&settings.mongodb)
            .await
            .context("setting up MongoDB")?;
        let names = settings.bus.names();
        // Raced against the token as well: a connection attempt in progress
        // would otherwise hold up a stop requested meanwhile.
        let bus = tokio::select! {
            bus = Bus::connect(&settings.redis.url, names.clone(), &shutdown) => bus.context("connecting to Redis")?,
            _ = shutdown.cancelled() => anyhow::bail!("stopped while connecting to Redis"),
        };
        let config = WorkerConfig {
            stream: names.mail_stream(),
            group: names.mail_group(),
            consumer: worker::consumer_name("mailer"),
            claim_idle: Duration::from_millis(settings.bus.claim_idle_ms).max(MIN_CLAIM_IDLE),
            max_in_flight: settings.bus.max_in_flight.max(1),
            // Mail jobs have no user to be fair between.
            per_key_in_flight: settings.bus.max_in_flight.max(1),
            max_held: settings.bus.max_held,
            drain_timeout: DRAIN_TIMEOUT,
        };
        let metrics = shared_proto::observability::install()?;
        let ready = {
            let (bus, log) = (bus.clone(), log.clone());
            shared_proto::observability::readiness(move || {
                let (bus, log) = (bus.clone(), log.clone());
                async move { bus.is_reachable().await && log.ping().await }
            })
        };
        shared_proto::observability::serve(&settings.http.listen, metrics, ready, shutdown.clone())
            .await?;
        let policy = RetryPolicy::from_settings(&settings.mailer);
        let handler = Arc::new(MailHandler::new(
            smtp,
            log,
            bus.clone(),
            policy,
            shutdown.clone(),
        ));
        Ok(Application {
            bus,
            config,
            handler,
            shutdown,
        })
    }

    /// Sends mail until the shutdown token is cancelled, then waits (up to
    /// [`DRAIN_TIMEOUT`]) for the sends in hand.
    pub async fn run_until_stopped(self) {
        worker::run::<MailJob, _>(self.bus, self.config, self.handler, self.shutdown).await;
    }
}
