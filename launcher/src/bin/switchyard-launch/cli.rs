//! The command line: what to start, where, on which ports.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Starts, stops and reports the components of a Switchyard deployment on
/// this machine: Redis, FerretDB, MailDev, the services and the NGINX front
/// door. The defaults are the ports `./stack up` uses.
#[derive(Debug, Parser)]
#[command(name = "switchyard-launch")]
pub struct Cli {
    #[command(flatten)]
    pub layout: Layout,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Starts what is not running yet and waits until it is ready.
    Up(Up),
    /// Stops everything with a pid file: the front door, then the services,
    /// then the infrastructure.
    Down,
    /// One line per component: running or stopped, and where it listens.
    Status,
    /// The settings (`KEY=VALUE` lines) that point a service started by hand
    /// at this deployment's infrastructure.
    PrintEnv,
    /// Prints the pid of each named component; fails if one is not running.
    Pid { names: Vec<String> },
    /// Stops the named components.
    Stop { names: Vec<String> },
}

/// Where the deployment lives and what it is made of.
#[derive(Debug, Clone, Args)]
pub struct Layout {
    /// State directory: pid files in `pids/`, logs in `logs/`, each
    /// component's files in a directory of its own.
    #[arg(long, global = true, default_value = ".stack")]
    pub dir: PathBuf,
    #[arg(long, global = true, default_value_t = 6379)]
    pub redis_port: u16,
    #[arg(long, global = true, default_value_t = 27017)]
    pub ferretdb_port: u16,
    #[arg(long, global = true, default_value_t = 1025)]
    pub smtp_port: u16,
    #[arg(long, global = true, default_value_t = 1080)]
    pub maildev_web_port: u16,
    /// One gateway per port, named `gateway-<port>`.
    #[arg(
        long = "gateway-port",
        global = true,
        value_delimiter = ',',
        default_values_t = [8000, 8001]
    )]
    pub gateway_ports: Vec<u16>,
    #[arg(long, global = true, default_value_t = 2)]
    pub auth_replicas: usize,
    #[arg(long, global = true, default_value_t = 1)]
    pub chat_replicas: usize,
    #[arg(long, global = true, default_value_t = 1)]
    pub mailer_replicas: usize,
    /// Where the first chat-service serves `/files`; further replicas take the
    /// ports after it.
    #[arg(long, global = true, default_value_t = 8090)]
    pub files_port: u16,
    /// Where NGINX, in front of the gateways, listens.
    #[arg(long, global = true, default_value_t = 8080)]
    pub front_door_port: u16,
    /// How long a stopping component gets before SIGKILL, in seconds.
    #[arg(long, global = true, default_value_t = 10)]
    pub stop_timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct Up {
    /// Start only these parts (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// A setting for every service, over the defaults (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
    pub env: Vec<(String, String)>,
    /// Redis's connection limit, when its default of 10,000 is too low.
    #[arg(long)]
    pub redis_max_clients: Option<u32>,
    /// The Switchyard binaries (default: `$SWITCHYARD_BIN_DIR`, else beside this program).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// The repository, for `deploy/` (default: the one this program was built from).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// How long infrastructure may take to answer, in seconds.
    #[arg(long, default_value_t = 30)]
    pub port_timeout: u64,
    /// How long a gateway or the front door may take to be ready, in seconds.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout: u64,
}

/// A part of the deployment, for `up --only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    Redis,
    Ferretdb,
    Maildev,
    /// `auth-service`, `chat-service` and `mailer`.
    Backends,
    Gateways,
    FrontDoor,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}
