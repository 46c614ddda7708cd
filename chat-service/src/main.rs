use clap::Parser;
use shared_proto::settings::ConfigArgs;

/// The chat service: profiles, friends, one-to-one and group conversations,
/// groups run by their admins, taken from the chat stream.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: chat_service::Settings =
        shared_proto::settings::load(cli.config.config.as_deref())?;
    shared_proto::telemetry::init(&settings.log);
    let shutdown = shared_proto::shutdown::on_signal();
    chat_service::startup::run_until_stopped(settings, shutdown).await
}
