use clap::Parser;
use shared_proto::settings::ConfigArgs;

/// The account service: registration with an e-mailed confirmation code,
/// login, session resume and logout, taken from the auth stream.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: auth_service::Settings =
        shared_proto::settings::load(cli.config.config.as_deref())?;
    shared_proto::telemetry::init(&settings.log);
    let shutdown = shared_proto::shutdown::on_signal();
    auth_service::startup::run_until_stopped(settings, shutdown).await
}
