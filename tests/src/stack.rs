//! A whole Switchyard deployment for one test: infrastructure and services as
//! real processes on free loopback ports, in one temporary directory.
//!
//! Build one with [`Stack::builder`]. Dropping the [`Stack`] kills every
//! process. If the test panicked, the temporary directory (logs included) is
//! kept and its paths are printed; set `SWITCHYARD_KEEP_TMP=1` to keep it
//! always.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::join_all;
use tempfile::TempDir;

use switchyard_launcher::infra::{self, Launch, Placement};
use switchyard_launcher::ports::free_port;
use switchyard_launcher::probe::Probe;
use switchyard_launcher::process::ManagedProcess;

use crate::mail::MailDev;
use crate::services::{self, AUTH, CHAT, DATABASE, Endpoints, GATEWAY, MAILER, Overrides};

/// How long any process may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`Stack::stop_service`] lets a process shut down on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Component names accepted by [`Stack::kill_service`] and friends besides the
/// service binaries.
pub use switchyard_launcher::infra::{FERRETDB, MAILDEV, REDIS};

/// What to start. The default is what account scenarios need: one gateway,
/// one `auth-service`, one `mailer`; `chat-service` is opt-in.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct StackBuilder {
    gateways: usize,
    auth: usize,
    chat: usize,
    mailer: usize,
    overrides: Overrides,
    /// FerretDB's port, when the test must know it before the stack starts.
    ferretdb_port: Option<u16>,
}

impl Default for StackBuilder {
    fn default() -> Self {
        Self {
            gateways: 1,
            auth: 1,
            chat: 0,
            mailer: 1,
            overrides: Overrides::default(),
            ferretdb_port: None,
        }
    }
}

impl StackBuilder {
    /// Number of gateway replicas (`gw-0`, `gw-1`, ...).
    pub fn gateways(mut self, replicas: usize) -> Self {
        self.gateways = replicas;
        self
    }

    /// Number of `auth-service` replicas.
    pub fn auth_replicas(mut self, replicas: usize) -> Self {
        self.auth = replicas;
        self
    }

    /// One `chat-service`, or none.
    pub fn chat(self, enabled: bool) -> Self {
        self.chat_replicas(usize::from(enabled))
    }

    /// Number of `chat-service` replicas.
    pub fn chat_replicas(mut self, replicas: usize) -> Self {
        self.chat = replicas;
        self
    }

    /// One `mailer`, or none.
    pub fn mailer(self, enabled: bool) -> Self {
        self.mailer_replicas(usize::from(enabled))
    }

    /// Number of `mailer` replicas.
    pub fn mailer_replicas(mut self, replicas: usize) -> Self {
        self.mailer = replicas;
        self
    }

    /// Redis, FerretDB and MailDev only; no Switchyard process.
    pub fn infrastructure_only(self) -> Self {
        self.gateways(0).auth_replicas(0).chat(false).mailer(false)
    }

    /// Sets an environment variable for every service, over the defaults,
    /// e.g. `.env("SWITCHYARD__AUTH__CODE_TTL_SECS", "2")`.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.all.push((key.into(), value.into()));
        self
    }

    /// Raises the gateways' per-connection and per-user limits far above
    /// what a test sends: for scenarios that send requests back to back,
    /// where a `RATE_LIMITED` answer would say nothing about what they test.
    pub fn generous_limits(mut self) -> Self {
        let mut limits = vec![
            ("SWITCHYARD__GATEWAY__RATE_PER_SEC".to_owned(), "1000"),
            ("SWITCHYARD__GATEWAY__RATE_BURST".to_owned(), "1000"),
        ];
        for class in ["SEND", "READ", "SEARCH", "ACCOUNT"] {
            for field in ["PER_SEC", "BURST"] {
                limits.push((
                    format!("SWITCHYARD__GATEWAY__USER_LIMITS__{class}__{field}"),
                    "1000",
                ));
            }
        }
        for (key, value) in limits {
            self = self.service_env(GATEWAY, key, value);
        }
        self
    }

    /// Runs FerretDB on `port` instead of a free port picked at start, so
    /// that something in front of it (see `crate::stalling_database`) can be
    /// set up first.
    pub fn ferretdb_port(mut self, port: u16) -> Self {
        self.ferretdb_port = Some(port);
        self
    }

    /// Sets an environment variable for one binary (`gateway`,
    /// `auth-service`, `chat-service` or `mailer`), over everything else.
    pub fn service_env(
        mut self,
        binary: impl Into<String>,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.overrides
            .per_binary
            .push((binary.into(), key.into(), value.into()));
        self
    }

    /// Starts the infrastructure, waits for it, then starts the services and
    /// waits for them (gateways until `/readyz` answers 200).
    ///
    /// # Panics
    /// If a binary is missing or anything fails to become ready within 20 s;
    /// the message says what and quotes its log.
    pub async fn start(mut self) -> Stack {
        if self.chat == 0 {
            // Nobody answers the question a gateway asks chat-service for a
            // login: logins are answered without waiting for it.
            let wait = "SWITCHYARD__GATEWAY__LOGIN_SETUP_MS";
            let setting = (GATEWAY.to_owned(), wait.to_owned(), "0".to_owned());
            self.overrides.per_binary.insert(0, setting);
        }
        let dir = WorkDir::new();
        let logs = dir.subdir("logs");

        let redis_port = free_port();
        let mongo_port = self.ferretdb_port.unwrap_or_else(free_port);
        let smtp_port = free_port();
        let web_port = free_port();

        let mut redis = start(infra::redis(
            &dir.placement("redis", &logs),
            redis_port,
            None,
        ));
        let mut ferretdb = start(infra::ferretdb(
            &dir.placement("ferretdb", &logs),
            mongo_port,
        ));
        let mut maildev = start(infra::maildev(
            &dir.placement("maildev", &logs),
            smtp_port,
            web_port,
        ));
        tokio::join!(
            redis.wait_ready(),
            ferretdb.wait_ready(),
            maildev.wait_ready()
        );
        let mut components = vec![redis, ferretdb, maildev];

        let wiring = Endpoints {
            redis_url: format!("redis://127.0.0.1:{redis_port}"),
            mongo_uri: format!("mongodb://127.0.0.1:{mongo_port}"),
            smtp_port,
        };
        let mongo = mongo_client(&wiring.mongo_uri).await;

        let first_service = components.len();
        let mut files_ports = Vec::with_capacity(self.chat);
        for (binary, replicas) in [(AUTH, self.auth), (CHAT, self.chat), (MAILER, self.mailer)] {
            for replica in 0..replicas {
                let name = services::replica_name(binary, replica);
                let at = dir.placement(&name, &logs);
                let launch = if binary == CHAT {
                    let port = free_port();
                    files_ports.push(port);
                    services::chat(&at, &wiring, &self.overrides, replica, port)
                } else {
                    services::backend(&at, &wiring, &self.overrides, binary, replica)
                };
                components.push(start(launch));
            }
        }
        let mut gateway_ports = Vec::with_capacity(self.gateways);
        for replica in 0..self.gateways {
            let port = free_port();
            gateway_ports.push(port);
            let at = dir.placement(&services::replica_name(GATEWAY, replica), &logs);
            components.push(start(services::gateway(
                &at,
                &wiring,
                &self.overrides,
                replica,
                port,
            )));
        }
        join_all(
            components[first_service..]
                .iter_mut()
                .map(Component::wait_ready),
        )
        .await;

        Stack {
            components,
            maildev: MailDev::new(smtp_port, web_port),
            mongo,
            wiring,
            overrides: self.overrides,
            gateway_ports,
            files_ports,
            logs,
            dir,
        }
    }
}

/// A running deployment; see the module documentation.
pub struct Stack {
    // Declared before `dir` so that processes go before their directory.
    components: Vec<Component>,
    maildev: MailDev,
    mongo: mongodb::Client,
    wiring: Endpoints,
    /// Kept for replicas started later ([`Stack::add_gateway`]).
    overrides: Overrides,
    gateway_ports: Vec<u16>,
    /// Where each `chat-service` replica serves `/files`.
    files_ports: Vec<u16>,
    logs: PathBuf,
    dir: WorkDir,
}

impl Stack {
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// How many gateway replicas were started.
    pub fn gateway_count(&self) -> usize {
        self.gateway_ports.len()
    }

    /// WebSocket URL of gateway `i`, e.g. `ws://127.0.0.1:41234/`.
    pub fn gateway_url(&self, i: usize) -> String {
        format!("ws://127.0.0.1:{}/", self.gateway_port(i))
    }

    /// HTTP base URL of gateway `i`, e.g. `http://127.0.0.1:41234`, for
    /// `/healthz` and `/readyz`.
    pub fn gateway_http(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port(i))
    }

    /// Where `chat-service` replica `i` serves `/files`, e.g.
    /// `http://127.0.0.1:41235` (the front door routes `/files` to these).
    pub fn files_http(&self, i: usize) -> String {
        let port = self.files_ports.get(i).unwrap_or_else(|| {
            panic!(
                "chat-service {i} does not exist; this stack has {} chat-service(s)",
                self.files_ports.len()
            )
        });
        format!("http://127.0.0.1:{port}")
    }

    /// The loopback addresses every `chat-service` serves `/files` on.
    pub fn files_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.files_ports
            .iter()
            .map(|&p| infra::loopback(p))
            .collect()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn redis_url(&self) -> &str {
        &self.wiring.redis_url
    }

    /// A new connection to this stack's Redis.
    ///
    /// # Panics
    /// If Redis cannot be reached.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let url = self.redis_url();
        redis::Client::open(url)
            .unwrap_or_else(|e| panic!("{url} is not a Redis URL: {e}"))
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("connecting to Redis at {url}: {e}"))
    }

    /// Deletes the Redis keys matching `pattern` (as Redis lost them) and
    /// says how many there were.
    ///
    /// # Panics
    /// If Redis cannot be reached.
    pub async fn forget_redis_keys(&self, pattern: &str) -> usize {
        let mut redis = self.redis().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut redis)
            .await
            .expect("KEYS");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut redis)
                .await
                .expect("DEL");
        }
        keys.len()
    }

    /// The sum of a service's metric `name` over the series whose labels
    /// contain `labels` (e.g. `command="find"`), read from its `/metrics` at
    /// `http` (the address it was given to listen on).
    ///
    /// # Panics
    /// If the service does not answer.
    pub async fn metric(http: &str, name: &str, labels: &str) -> f64 {
        let metrics = reqwest::get(format!("http://{http}/metrics"))
            .await
            .unwrap_or_else(|e| panic!("{http} serves /metrics: {e}"))
            .text()
            .await
            .expect("metrics text");
        metrics
            .lines()
            .filter(|line| line.starts_with(name))
            .filter(|line| line[name.len()..].starts_with([' ', '{']))
            .filter(|line| line.contains(labels))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `mongodb://127.0.0.1:<port>` (FerretDB).
    pub fn mongo_uri(&self) -> &str {
        &self.wiring.mongo_uri
    }

    /// The `switchyard` database the services use, to check what they stored.
    pub fn mongo(&self) -> mongodb::Database {
        self.mongo.database(DATABASE)
    }

    /// The SMTP catcher the mailer sends to.
    pub fn maildev(&self) -> &MailDev {
        &self.maildev
    }

    /// The temporary directory holding every component's files and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Log file of a component: `redis`, `ferretdb`, `maildev` (replica 0),
    /// or a service binary and its replica.
    pub fn log_path(&self, name: &str, replica: usize) -> PathBuf {
        self.component(name, replica)
            .process
            .log_path()
            .to_path_buf()
    }

    /// The last `lines` lines of a component's log.
    pub fn log_tail(&self, name: &str, replica: usize, lines: usize) -> String {
        self.component(name, replica).process.log_tail(lines)
    }

    /// How many lines of a component's log contain `needle`, e.g.
    /// `"action handled"` to see how much work a replica did.
    pub fn log_count(&self, name: &str, replica: usize, needle: &str) -> usize {
        let path = self.log_path(name, replica);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("reading the log {}: {e}", path.display()));
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits until at least `count` lines of a component's log contain
    /// `needle`, checking every 20 ms.
    ///
    /// # Panics
    /// If that has not happened within `limit`; the message quotes the log's end.
    pub async fn wait_for_log(
        &self,
        name: &str,
        replica: usize,
        needle: &str,
        count: usize,
        limit: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let seen = self.log_count(name, replica, needle);
            if seen >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {name} replica {replica} has {seen} line(s) with {needle:?} after {limit:?}, \
                 expected {count}. Last lines:\n{}",
                self.log_path(name, replica).display(),
                self.log_tail(name, replica, 40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every component with its log file, in start order.
    pub fn log_paths(&self) -> Vec<(String, PathBuf)> {
        self.components
            .iter()
            .map(|c| {
                (
                    c.process.name().to_owned(),
                    c.process.log_path().to_path_buf(),
                )
            })
            .collect()
    }

    /// Whether a component is alive right now.
    pub fn is_running(&mut self, name: &str, replica: usize) -> bool {
        self.component_mut(name, replica).process.is_running()
    }

    /// Kills a component with SIGKILL, as a crash would, and waits until it is gone.
    pub async fn kill_service(&mut self, name: &str, replica: usize) {
        self.component_mut(name, replica).process.kill().await;
    }

    /// Freezes a component with SIGSTOP, as a stalled machine or a long
    /// pause would: it keeps its sockets but answers nothing.
    pub fn pause_service(&mut self, name: &str, replica: usize) {
        self.component_mut(name, replica).process.signal("STOP");
    }

    /// Lets a component paused with [`pause_service`](Self::pause_service) run again.
    pub fn resume_service(&mut self, name: &str, replica: usize) {
        self.component_mut(name, replica).process.signal("CONT");
    }

    /// Stops a component with SIGTERM, letting it shut down gracefully for up
    /// to 10 s before it is killed; returns once it is gone.
    pub async fn stop_service(&mut self, name: &str, replica: usize) {
        self.component_mut(name, replica)
            .process
            .terminate(STOP_GRACE)
            .await;
    }

    /// Starts a stopped or killed component again with the same ports,
    /// directories and settings, and waits until it is ready. Redis and
    /// MailDev come back empty; FerretDB keeps its data.
    ///
    /// # Panics
    /// If it is still running, or does not become ready.
    pub async fn start_service(&mut self, name: &str, replica: usize) {
        let component = self.component_mut(name, replica);
        component.process.restart();
        component.wait_ready().await;
    }

    /// Waits until a running component passes its readiness check again
    /// (a gateway: `/readyz` answers 200, which needs its Redis subscription
    /// back), e.g. after something it depends on was restarted.
    ///
    /// # Panics
    /// If it is not ready within 20 s or exits meanwhile.
    pub async fn wait_ready(&mut self, name: &str, replica: usize) {
        self.component_mut(name, replica).wait_ready().await;
    }

    /// The HTTP status `GET /healthz` of gateway `i` answers, or `None` if
    /// nothing answers at all.
    pub async fn gateway_health(&self, i: usize) -> Option<u16> {
        let url = format!("{}/healthz", self.gateway_http(i));
        switchyard_launcher::probe::http_client()
            .get(&url)
            .send()
            .await
            .ok()
            .map(|response| response.status().as_u16())
    }

    fn gateway_port(&self, i: usize) -> u16 {
        *self.gateway_ports.get(i).unwrap_or_else(|| {
            panic!(
                "gateway {i} does not exist; this stack has {} gateway(s)",
                self.gateway_ports.len()
            )
        })
    }

    fn component(&self, name: &str, replica: usize) -> &Component {
        let wanted = component_name(name, replica);
        self.components
            .iter()
            .find(|c| c.process.name() == wanted)
            .unwrap_or_else(|| panic!("{}", self.unknown_component(&wanted)))
    }

    fn component_mut(&mut self, name: &str, replica: usize) -> &mut Component {
        let wanted = component_name(name, replica);
        match self
            .components
            .iter()
            .position(|c| c.process.name() == wanted)
        {
            Some(i) => &mut self.components[i],
            None => panic!("{}", self.unknown_component(&wanted)),
        }
    }

    fn unknown_component(&self, wanted: &str) -> String {
        let known: Vec<&str> = self.components.iter().map(|c| c.process.name()).collect();
        format!(
            "this stack has no component {wanted}; it has: {} \
             (infrastructure is named redis, ferretdb, maildev with replica 0)",
            known.join(", ")
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut report = format!("switchyard stack logs (in {}):\n", self.logs.display());
            for component in &mut self.components {
                let process = &mut component.process;
                let state = match process.exit_status() {
                    // A process that died on its own is often why the test failed.
                    Some(status) => format!(" (had exited: {status})"),
                    None => String::new(),
                };
                report.push_str(&format!(
                    "  {}{state}: {}\n",
                    process.name(),
                    process.log_path().display()
                ));
            }
            eprint!("{report}");
        }
        for component in &mut self.components {
            component.process.start_kill();
        }
        // `components` drop next, then `dir` (removed unless kept).
    }
}

/// A started process and how to tell it is ready.
struct Component {
    process: ManagedProcess,
    probe: Probe,
}

impl Component {
    async fn wait_ready(&mut self) {
        self.process.wait_ready(&self.probe, READY_TIMEOUT).await;
    }
}

fn start(launch: Launch) -> Component {
    Component {
        process: ManagedProcess::spawn(launch.spec),
        probe: launch.probe,
    }
}

/// Infrastructure has one instance; its replica number must be 0.
fn component_name(name: &str, replica: usize) -> String {
    match name {
        REDIS | FERRETDB | MAILDEV => {
            assert_eq!(replica, 0, "there is only one {name}; use replica 0");
            name.to_owned()
        }
        _ => services::replica_name(name, replica),
    }
}

async fn mongo_client(uri: &str) -> mongodb::Client {
    let mut options = mongodb::options::ClientOptions::parse(uri)
        .await
        .unwrap_or_else(|e| panic!("{uri} is not a MongoDB URI: {e}"));
    // Fail a test quickly rather than after the driver's 30 s default.
    options.server_selection_timeout = Some(Duration::from_secs(10));
    options.app_name = Some("switchyard-tests".to_owned());
    mongodb::Client::with_options(options)
        .unwrap_or_else(|e| panic!("building a MongoDB client for {uri}: {e}"))
}

/// The stack's temporary directory, kept if the test panicked.
struct WorkDir {
    dir: TempDir,
}

impl WorkDir {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-")
            .tempdir()
            .expect("creating a temporary directory for the test stack");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates `<dir>/<name>` and returns its path.
    fn subdir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        path
    }

    /// A fresh directory `<dir>/<name>` for a component, logging into `logs`.
    fn placement(&self, name: &str, logs: &Path) -> Placement {
        Placement {
            dir: self.subdir(name),
            logs: logs.to_path_buf(),
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let keep_always = std::env::var_os("SWITCHYARD_KEEP_TMP").is_some_and(|v| v == "1");
        if std::thread::panicking() || keep_always {
            self.dir.disable_cleanup(true);
            eprintln!(
                "switchyard stack files kept in {}",
                self.dir.path().display()
            );
        }
    }
}

/// Growing a running stack, as a deployment scales out.
impl Stack {
    /// Starts one more gateway replica (`gw-<n>`, on a new free port) wired and
    /// configured like the others, waits until its `/readyz` answers 200, and
    /// returns its index for [`gateway_url`](Self::gateway_url) and friends.
    ///
    /// # Panics
    /// If it does not become ready within 20 s.
    pub async fn add_gateway(&mut self) -> usize {
        let replica = self.gateway_ports.len();
        let port = free_port();
        let at = self
            .dir
            .placement(&services::replica_name(GATEWAY, replica), &self.logs);
        let mut component = start(services::gateway(
            &at,
            &self.wiring,
            &self.overrides,
            replica,
            port,
        ));
        component.wait_ready().await;
        self.components.push(component);
        self.gateway_ports.push(port);
        replica
    }

    /// The loopback address gateway `i` listens on.
    pub fn gateway_addr(&self, i: usize) -> std::net::SocketAddr {
        infra::loopback(self.gateway_port(i))
    }
}
