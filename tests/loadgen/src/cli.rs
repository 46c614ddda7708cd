//! The command line.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::protocol::Kind;
use crate::target::{SourceIps, Target};

/// Load generator for WebSocket chat servers: this product (Switchyard),
/// Centrifugo, and the bare broadcast ceiling, with the same scenarios for
/// each.
///
/// It opens many client connections from one process, drives a scenario,
/// and writes a report (report.json, report.md) and plots (latency.svg,
/// throughput.svg) to --out. Latencies come from HDR histograms; server
/// memory and CPU are read from /proc for the processes listening on the
/// targets' ports (or --gateway-pids).
///
/// Example: loadgen fanout --target ws://127.0.0.1:8000/ --connections 1000
/// --group-size 50 --rate 200 --duration 20 --out out/fanout
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Cli {
    /// What to do.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// WebSocket endpoints, ws://HOST:PORT[/PATH] (loopback only); several,
    /// comma-separated or repeated, share the connections round-robin.
    #[arg(long, value_delimiter = ',', default_value = "ws://127.0.0.1:8000/")]
    pub target: Vec<Target>,

    /// The server's protocol.
    #[arg(long, value_enum, default_value_t = Kind::Switchyard)]
    pub protocol: Kind,

    /// Connections (idle, storm, direct, fanout) or accounts (accounts).
    #[arg(long, default_value_t = 100)]
    pub connections: usize,

    /// Messages per second in total (direct, fanout; default 100), new
    /// connections or sign-ups per second (idle, storm, accounts; default:
    /// as fast as --concurrency allows).
    #[arg(long)]
    pub rate: Option<f64>,

    /// Seconds to hold idle connections, or to send messages.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Members per room in fanout.
    #[arg(long, default_value_t = 10)]
    pub group_size: usize,

    /// Distinct users the connections of idle and storm log in as (direct and
    /// fanout use one user per connection).
    #[arg(long, default_value_t = 100)]
    pub users: usize,

    /// Connection handshakes (or sign-ups) in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,

    /// Local addresses to connect from, e.g. 127.0.0.1-127.0.0.20: each holds
    /// about 28k ephemeral ports, so more connections need more addresses.
    #[arg(long, default_value = "127.0.0.1")]
    pub source_ips: SourceIps,

    /// Pids of the servers whose memory and CPU are measured, comma-separated.
    /// Default: the processes listening on the targets' ports.
    #[arg(long)]
    pub gateway_pids: Option<String>,

    /// Find the servers by process name instead (e.g. gateway, centrifugo).
    #[arg(long, conflicts_with = "gateway_pids")]
    pub gateway_name: Option<String>,

    /// Other processes whose CPU time to report, NAME=PID, comma-separated
    /// (e.g. redis=1234,chat=1250).
    #[arg(long, value_delimiter = ',')]
    pub watch: Vec<String>,

    /// Where the report and plots go.
    #[arg(long, default_value = "loadgen-report")]
    pub out: PathBuf,

    /// Hard cap on the whole run in seconds (default: duration + 600). No new
    /// phase starts after it, and the process exits shortly after.
    #[arg(long)]
    pub max_runtime: Option<f64>,

    /// Seconds to wait for late deliveries after the last send.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,

    /// Seconds a connection may take to be established.
    #[arg(long, default_value_t = 30.0)]
    pub connect_timeout: f64,

    /// Exit with status 1 if the run recorded any error.
    #[arg(long)]
    pub fail_on_errors: bool,

    /// A name unique to this run, used in e-mail addresses, group names and
    /// channels (default: derived from the time).
    #[arg(long)]
    pub run_id: Option<String>,

    /// switchyard: MailDev's web API, where confirmation codes are read.
    #[arg(long, default_value = "http://127.0.0.1:1080")]
    pub maildev: String,

    /// switchyard: keep signed-up users in this file and reuse them in later
    /// runs against the same database (Argon2 makes sign-up slow on purpose).
    #[arg(long)]
    pub accounts_file: Option<PathBuf>,

    /// switchyard: the password of the users the load generator signs up.
    #[arg(long, default_value = "Loadgen-Password-9")]
    pub password: String,

    /// switchyard: sign-ups in flight at once while preparing users.
    #[arg(long, default_value_t = 16)]
    pub signup_concurrency: usize,

    /// direct, fanout: find the capacity instead of sending at one rate. The
    /// rate starts at --rate and rises step by step (times --step-factor,
    /// plus --step-increment) up to --max-rate, each step lasting --step-secs,
    /// until a step fails: p99 delivery latency over --p99-limit-ms, any
    /// message refused (BUSY included), unanswered or undelivered, or any
    /// error. Then one step at --overload-factor times the highest rate held,
    /// followed at once by --recovery-secs at --recovery-factor times it.
    #[arg(long)]
    pub capacity: bool,

    /// capacity: each step's rate is the previous one's times this...
    #[arg(long, default_value_t = 1.5)]
    pub step_factor: f64,

    /// capacity: ...plus this (msg/s).
    #[arg(long, default_value_t = 0.0)]
    pub step_increment: f64,

    /// capacity: seconds per step.
    #[arg(long, default_value_t = 10.0)]
    pub step_secs: f64,

    /// capacity: the highest rate tried (msg/s).
    #[arg(long, default_value_t = 5000.0)]
    pub max_rate: f64,

    /// capacity: the p99 delivery latency a step may reach and still hold.
    #[arg(long, default_value_t = 100.0)]
    pub p99_limit_ms: f64,

    /// capacity: the overload step's rate, as a multiple of the rate held.
    #[arg(long, default_value_t = 3.0)]
    pub overload_factor: f64,

    /// capacity: the recovery step's rate, as a fraction of the rate held.
    #[arg(long, default_value_t = 0.5)]
    pub recovery_factor: f64,

    /// capacity: seconds of the recovery step after the overload step.
    #[arg(long, default_value_t = 10.0)]
    pub recovery_secs: f64,

    /// centrifugo: the HMAC secret its tokens are signed with
    /// (token_hmac_secret_key in its configuration).
    #[arg(long, default_value = "loadgen-secret")]
    pub centrifugo_secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Hold N idle logged-in connections for --duration; memory per connection.
    Idle,
    /// Open N connections as fast as allowed and log in; connect and login latency.
    Storm,
    /// One-to-one chat between pairs of friends at --rate msg/s in total.
    Direct,
    /// Group chat in rooms of --group-size at --rate msg/s; deliveries/s.
    Fanout,
    /// Sign-up storm: register, code from MailDev, confirm, log in (switchyard).
    Accounts,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Storm => "storm",
            Scenario::Direct => "direct",
            Scenario::Fanout => "fanout",
            Scenario::Accounts => "accounts",
        }
    }

    /// The rate used when --rate is not given (the first step's, with --capacity).
    pub fn default_rate(self) -> f64 {
        match self {
            Scenario::Direct | Scenario::Fanout => 100.0,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn several_targets_and_a_source_range_parse() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "fanout",
            "--target",
            "ws://127.0.0.1:1/,ws://127.0.0.1:2/",
            "--source-ips",
            "127.0.0.1-127.0.0.4",
            "--protocol",
            "centrifugo",
        ])
        .expect("valid");
        assert_eq!(cli.target.len(), 2);
        assert_eq!(cli.source_ips.0.len(), 4);
        assert_eq!(cli.protocol, Kind::Centrifugo);
    }

    #[test]
    fn a_capacity_run_parses() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "direct",
            "--capacity",
            "--rate",
            "5",
            "--step-increment",
            "5",
            "--step-factor",
            "1",
            "--max-rate",
            "20",
        ])
        .expect("valid");
        assert!(cli.capacity);
        assert_eq!(cli.max_rate, 20.0);
    }
}
