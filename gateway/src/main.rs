use clap::Parser;
use shared_proto::settings::ConfigArgs;

/// The WebSocket gateway: holds client connections, checks each frame, puts
/// it on the bus and pushes replies and events back.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: gateway::Settings = shared_proto::settings::load(cli.config.config.as_deref())?;
    shared_proto::telemetry::init(&settings.log);
    let shutdown = shared_proto::shutdown::on_signal();
    gateway::Application::build(settings, shutdown.clone())
        .await?
        .run_until_stopped(shutdown)
        .await
}
