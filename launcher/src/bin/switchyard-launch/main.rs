//! `switchyard-launch`: starts and stops a Switchyard deployment on this
//! machine from the component definitions of the `switchyard-launcher`
//! library, the same ones the tests use. `./stack up` and the benchmark call it.

mod cli;
mod control;
mod plan;
mod up;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::plan::Plan;

fn main() -> std::process::ExitCode {
    // The library reports a missing binary by panicking with what to do
    // (the tests' contract); here that is an error message, not a crash report.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unexpected failure");
        eprintln!("switchyard-launch: error: {message}");
    }));
    let cli = Cli::parse();
    let plan = Plan::new(&cli.layout);
    let outcome = match &cli.command {
        Command::Up(opts) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(up::up(&plan, opts))),
        Command::Down => {
            control::down(&plan);
            Ok(())
        }
        Command::Status => {
            control::status(&plan);
            Ok(())
        }
        Command::PrintEnv => {
            control::print_env(&plan);
            Ok(())
        }
        Command::Pid { names } => control::pid(&plan, names),
        Command::Stop { names } => {
            control::stop(&plan, names);
            Ok(())
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-launch: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A progress line on standard error, where `./stack` shows its own.
fn say(line: &str) {
    eprintln!("switchyard-launch: {line}");
}
