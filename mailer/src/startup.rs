//! Builds the mailer from settings and runs it until a shutdown token is
//! cancelled: `main` passes the signal token, tests pass their own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shared_proto::bus::Bus;
use shared_proto::mail::MailJob;
use shared_proto::service::{Fairness, StreamService, StreamSpec};
use tokio_util::sync::CancellationToken;

use crate::handler::{MailHandler, RetryPolicy};
use crate::settings::Settings;
use crate::smtp::Smtp;
use crate::store::MailLog;

/// How long to wait, once stopping, for sends already under way. Shorter than
/// a send may take at worst; a send cut off leaves its entry pending, to be
/// claimed by another replica.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Application {
    service: StreamService,
    handler: Arc<MailHandler>,
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
        let spec = StreamSpec {
            role: "mailer".into(),
            stream: names.mail_stream(),
            group: names.mail_group(),
            // Beside the jobs the mailer itself gave up sending.
            dead_letters: names.mail_dead_letters(),
            // Mail jobs have no user to be fair between.
            fairness: Fairness::None,
            drain_timeout: DRAIN_TIMEOUT,
        };
        let ready = {
            let log = log.clone();
            shared_proto::observability::readiness(move || {
                let log = log.clone();
                async move { log.ping().await }
            })
        };
        let service = StreamService::start(
            &spec,
            bus.clone(),
            &settings.bus,
            &settings.http,
            ready,
            shutdown.clone(),
        )
        .await?;
        let policy = RetryPolicy::from_settings(&settings.mailer);
        let handler = Arc::new(MailHandler::new(smtp, log, bus, policy, shutdown));
        Ok(Application { service, handler })
    }

    /// Sends mail until the shutdown token is cancelled, then waits (up to
    /// [`DRAIN_TIMEOUT`]) for the sends in hand.
    pub async fn run_until_stopped(self) {
        self.service.run::<MailJob, _>(self.handler).await;
    }
}
