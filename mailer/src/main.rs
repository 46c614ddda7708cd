//! The `mailer` binary: settings, logging, then the application until SIGTERM
//! or Ctrl-C.

use clap::Parser;
use mailer::settings::Settings;
use mailer::startup::Application;
use shared_proto::settings::ConfigArgs;
use shared_proto::{shutdown, telemetry};

/// Sends the mail jobs queued on the Switchyard bus over SMTP, once each;
/// jobs that cannot be sent go to the dead-letter stream.
#[derive(Debug, Parser)]
#[command(name = "mailer", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.config.as_deref())?;
    telemetry::init(&settings.log);
    let stop = shutdown::on_signal();
    match Application::build(&settings, stop.clone()).await {
        Ok(application) => application.run_until_stopped().await,
        // Asked to stop before it was up: that is a normal exit.
        Err(_) if stop.is_cancelled() => {}
        Err(err) => return Err(err),
    }
    Ok(())
}
