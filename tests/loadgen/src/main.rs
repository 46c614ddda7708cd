use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = loadgen::cli::Cli::parse();
    let out = cli.out.clone();
    let fail_on_errors = cli.fail_on_errors;
    let report = loadgen::run(cli).await?;
    loadgen::print_summary(&report, &out);
    if fail_on_errors && report.error_total > 0 {
        eprintln!(
            "loadgen: {} errors recorded (see the report)",
            report.error_total
        );
        std::process::exit(1);
    }
    Ok(())
}
