//! A real front door in front of a stack's gateways, and clients that live
//! behind it the way browser tabs do.
//!
//! [`FrontDoor`] runs the system's NGINX or HAProxy on a free loopback port
//! with the configuration checked in under `deploy/`, rendered for this
//! stack's gateways by `deploy/front-door/render` — the same files and the
//! same renderer `./stack up` and docker-compose use, so the test proves
//! them. It can be pointed at another set of gateways while it runs, the way
//! an operator adds a replica: render, check, reload.
//!
//! [`Tab`] is one connection of a logged-in user that sends chat messages one
//! after another and survives a gateway going away: when its connection
//! closes (a draining gateway says 1012), it reconnects through the front
//! door, resumes its session with `FASTLOGIN` and sends the message that was
//! not acknowledged again, with the same `clientMsgId`. Everything it saw is
//! in its [`TabReport`].
//!
//! [`established_connections`] counts the TCP connections a gateway holds,
//! which is how a test sees where the front door sent its clients.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub use switchyard_launcher::front_door::FrontDoorKind;
use switchyard_launcher::front_door::{self as door, front_door};
use switchyard_launcher::ports::free_port;
use switchyard_launcher::probe::http_client;
use switchyard_launcher::process::ManagedProcess;

use crate::stack::Stack;

/// How long the front door may take to start, or to apply a reload.
const FRONT_DOOR_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a stopping front door gets before it is killed.
const FRONT_DOOR_STOP_GRACE: Duration = Duration::from_secs(5);

/// How long one WebSocket upgrade may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a [`Tab`] waits for the reply to one request. Longer than the
/// gateway's action timeout (10 s), so its `TIMEOUT` answer is what arrives.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a [`Tab`] keeps trying to get back in after losing its connection.
const RECONNECT_BUDGET: Duration = Duration::from_secs(20);

/// A line the proxy logs each time a configuration has been loaded and is
/// serving: counting them tells a reload has taken effect.
fn loaded_marker(kind: FrontDoorKind) -> &'static str {
    match kind {
        FrontDoorKind::Nginx => "start worker process ",
        FrontDoorKind::Haproxy => "Loading success.",
    }
}

/// NGINX or HAProxy in front of some of a stack's gateways; stopped on drop.
#[derive(Debug)]
pub struct FrontDoor {
    kind: FrontDoorKind,
    port: u16,
    dir: PathBuf,
    program: PathBuf,
    process: ManagedProcess,
    gateways: Vec<usize>,
}

impl FrontDoor {
    /// Starts the front door on a free loopback port, in front of the
    /// stack's gateways with the given indices, and waits until `/healthz`
    /// answers 200 through it.
    ///
    /// # Panics
    /// If the proxy is not installed (`./stack install` installs both), its
    /// configuration is refused, or it does not come up in time.
    pub async fn start(kind: FrontDoorKind, stack: &Stack, gateways: &[usize]) -> Self {
        Self::launch(kind, stack, gateways, free_port(), kind.name().to_owned()).await
    }

    /// [`FrontDoor::start`] on a port chosen beforehand, for a test whose
    /// gateways must know the door's address (a browser's `Origin`) before
    /// it runs. Each such door has its own directory and log, named after
    /// its port, so several can front one stack.
    ///
    /// # Panics
    /// As [`FrontDoor::start`].
    pub async fn start_at(
        kind: FrontDoorKind,
        stack: &Stack,
        gateways: &[usize],
        port: u16,
    ) -> Self {
        let label = format!("{}-{port}", kind.name());
        Self::launch(kind, stack, gateways, port, label).await
    }

    async fn launch(
        kind: FrontDoorKind,
        stack: &Stack,
        gateways: &[usize],
        port: u16,
        label: String,
    ) -> Self {
        let program = door::program(kind).unwrap_or_else(|e| panic!("{e} (this test needs it)"));
        let dir = stack.dir().join(format!("front-door-{label}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let config = write_config(kind, &dir, port, stack, gateways);
        check_config(kind, &program, &dir, &config);
        let name = format!("front-door-{label}");
        let log_path = stack.dir().join("logs").join(format!("{label}.log"));
        let launch = front_door(kind, program.clone(), &name, &dir, &config, log_path, port);
        let process = ManagedProcess::spawn(launch.spec);
        let mut door = Self {
            kind,
            port,
            dir,
            program,
            process,
            gateways: gateways.to_vec(),
        };
        door.wait_loaded(1).await;
        door.wait_healthy().await;
        door
    }

    pub fn kind(&self) -> FrontDoorKind {
        self.kind
    }

    /// Where clients connect, e.g. `ws://127.0.0.1:41234/`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The front door's HTTP base, e.g. `http://127.0.0.1:41234`, for `/files`.
    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The indices of the gateways behind the door.
    pub fn gateways(&self) -> &[usize] {
        &self.gateways
    }

    /// Points the door at another set of gateways while it runs: renders the
    /// configuration, has the proxy check it, reloads (NGINX: `-s reload`;
    /// HAProxy: SIGUSR2, a soft reload), and waits until the new
    /// configuration serves. Connections already open stay where they are.
    ///
    /// # Panics
    /// If the new configuration is refused or the reload does not happen.
    pub async fn set_gateways(&mut self, stack: &Stack, gateways: &[usize]) {
        let config = write_config(self.kind, &self.dir, self.port, stack, gateways);
        check_config(self.kind, &self.program, &self.dir, &config);
        let loaded = self.loaded_count();
        match self.kind {
            FrontDoorKind::Nginx => {
                let out = std::process::Command::new(&self.program)
                    .arg("-p")
                    .arg(&self.dir)
                    .args(["-e", "stderr", "-c"])
                    .arg(&config)
                    .args(["-s", "reload"])
                    .output()
                    .unwrap_or_else(|e| panic!("running nginx -s reload: {e}"));
                assert!(
                    out.status.success(),
                    "nginx -s reload failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            FrontDoorKind::Haproxy => self.signal("-USR2"),
        }
        self.gateways = gateways.to_vec();
        self.wait_loaded(loaded + 1).await;
        self.wait_healthy().await;
    }

    /// The last lines of the proxy's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .process
            .pid()
            .unwrap_or_else(|| panic!("the {} front door is not running", self.kind.name()));
        // The `kill` utility keeps this crate free of unsafe signal code.
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("running kill {signal} {pid}: {e}"));
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    fn loaded_count(&self) -> usize {
        let log = std::fs::read(self.process.log_path()).unwrap_or_default();
        String::from_utf8_lossy(&log)
            .matches(loaded_marker(self.kind))
            .count()
    }

    async fn wait_loaded(&mut self, count: usize) {
        let deadline = Instant::now() + FRONT_DOOR_TIMEOUT;
        while self.loaded_count() < count {
            assert!(
                self.process.is_running(),
                "the {} front door exited. Last lines of {}:\n{}",
                self.kind.name(),
                self.process.log_path().display(),
                self.log_tail(30)
            );
            assert!(
                Instant::now() < deadline,
                "the {} front door did not log {:?} {count} time(s) within {FRONT_DOOR_TIMEOUT:?}. Last lines:\n{}",
                self.kind.name(),
                loaded_marker(self.kind),
                self.log_tail(30)
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_healthy(&mut self) {
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        let http = http_client();
        let deadline = Instant::now() + FRONT_DOOR_TIMEOUT;
        loop {
            let answer = http.get(&url).send().await;
            if matches!(&answer, Ok(response) if response.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "GET {url} through the {} front door did not answer 200 within {FRONT_DOOR_TIMEOUT:?} \
                 (last answer: {answer:?}). Last lines of its log:\n{}",
                self.kind.name(),
                self.log_tail(30)
            );
            sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        // SIGTERM first: the NGINX master stops its workers before exiting,
        // whereas a SIGKILLed master would leave them serving the port. The
        // process's own drop then kills whatever is left.
        if self.process.is_running() {
            if let Some(pid) = self.process.pid() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let deadline = std::time::Instant::now() + FRONT_DOOR_STOP_GRACE;
                while self.process.is_running() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// Renders the configuration for `gateways` (and the stack's chat-services,
/// for `/files`) into `dir` and returns the file the proxy is started with.
fn write_config(
    kind: FrontDoorKind,
    dir: &Path,
    port: u16,
    stack: &Stack,
    gateways: &[usize],
) -> PathBuf {
    let addresses: Vec<_> = gateways.iter().map(|&i| stack.gateway_addr(i)).collect();
    let files = stack.files_addrs();
    door::write_config(&repository_root(), kind, dir, port, &addresses, &files)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `nginx -t` or `haproxy -c`: a configuration the proxy would refuse fails
/// here with the proxy's own words, not later as a silent failed reload.
fn check_config(kind: FrontDoorKind, program: &Path, dir: &Path, config: &Path) {
    door::check_config(kind, program, dir, config).unwrap_or_else(|e| panic!("{e}"));
}

/// The workspace root, where `deploy/` is.
pub(crate) fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// Makes sure this process, and every process it starts from now on (they
/// inherit the limit), may hold `needed` open files: raises the soft
/// `RLIMIT_NOFILE` to `needed` if it is lower.
///
/// # Panics
/// If the hard limit is lower than `needed` (raise `ulimit -Hn`), or raising
/// the soft limit fails.
pub fn allow_open_files(needed: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is "unlimited".
    if limit.current.is_none_or(|soft| soft >= needed) {
        return;
    }
    assert!(
        limit.maximum.is_none_or(|hard| hard >= needed),
        "this test needs {needed} open files, but the hard limit is {:?}; raise `ulimit -Hn`",
        limit.maximum
    );
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(needed),
            maximum: limit.maximum,
        },
    )
    .unwrap_or_else(|e| panic!("raising the soft open-file limit to {needed}: {e}"));
}

/// How many established TCP connections 127.0.0.1:`port` holds right now
/// (the server side of each), read from `/proc/net/tcp`.
///
/// # Panics
/// If `/proc/net/tcp` cannot be read (not Linux).
pub fn established_connections(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp")
        .expect("reading /proc/net/tcp to see which gateway holds which connections");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st (01 = ESTABLISHED), ...
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"01")
        })
        .count()
}

/// [`established_connections`] for each of the stack's gateways with the
/// given indices, as the least of a few samples, so a health check's
/// short-lived connection is not counted as a client.
pub async fn connections_per_gateway(stack: &Stack, gateways: &[usize]) -> BTreeMap<usize, usize> {
    let mut least: BTreeMap<usize, usize> = BTreeMap::new();
    for sample in 0..3 {
        if sample > 0 {
            sleep(Duration::from_millis(50)).await;
        }
        for &i in gateways {
            let now = established_connections(stack.gateway_addr(i).port());
            least
                .entry(i)
                .and_modify(|n| *n = (*n).min(now))
                .or_insert(now);
        }
    }
    least
}

// ---------------------------------------------------------------------------------------------------
// Tabs
// ---------------------------------------------------------------------------------------------------

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Who a [`Tab`] is and what it does.
#[derive(Debug, Clone)]
pub struct TabConfig {
    /// Names the tab in `clientMsgId`s, `requestId`s and messages, e.g. `ana-2`.
    pub label: String,
    /// The front door's URL.
    pub url: String,
    pub email: String,
    /// The session token `FASTLOGIN` resumes.
    pub token: String,
    /// The user it writes to (a friend).
    pub to_user_id: String,
    /// Pause after each acknowledged message.
    pub pace: Duration,
    /// Most messages it sends, however long it is left running.
    pub max_messages: usize,
    /// It panics if still running this long after it started.
    pub time_limit: Duration,
}

/// A `MESSAGE_SENT` a tab received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub client_msg_id: String,
    pub message_id: String,
    pub conversation_id: String,
    pub seq: i64,
}

/// Everything a tab saw, for the test's checks.
#[derive(Debug, Clone, Default)]
pub struct TabReport {
    pub label: String,
    /// Every `MESSAGE_SENT`, in order; a message is acknowledged once.
    pub acks: Vec<Ack>,
    /// `messageId`s of the `NEW_MESSAGE` events from the other user.
    pub received: Vec<String>,
    /// The close code of every connection the server ended (`None`: closed
    /// or reset without a close frame).
    pub closes: Vec<Option<u16>>,
    /// Connections opened after the first one.
    pub reconnects: usize,
    /// Times a message went out again: after its connection closed, its
    /// reply did not come, or the answer was an error worth retrying.
    pub resends: usize,
    /// The error replies that led to a resend.
    pub errors: Vec<Value>,
}

/// What the test can see of a running tab.
#[derive(Debug, Default)]
pub struct TabProgress {
    acked: AtomicUsize,
    closes: AtomicUsize,
    connected: AtomicBool,
    stop: AtomicBool,
}

impl TabProgress {
    /// Messages acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Connections the server has closed so far.
    pub fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }

    /// Whether it holds a logged-in connection right now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

/// A running [`Tab`].
#[derive(Debug)]
pub struct TabHandle {
    pub label: String,
    pub progress: Arc<TabProgress>,
    task: JoinHandle<TabReport>,
}

impl TabHandle {
    /// Whether the tab has ended: it panicked, or sent `max_messages`.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks the tab to stop once its current message is acknowledged and
    /// returns what it saw.
    ///
    /// # Panics
    /// If the tab panicked (the message says why).
    pub async fn finish(self) -> TabReport {
        self.progress.stop.store(true, Ordering::SeqCst);
        match self.task.await {
            Ok(report) => report,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("tab {} was cancelled: {e}", self.label),
        }
    }
}

/// One connection of a logged-in user that sends messages and rides out
/// gateway drains; see the module documentation.
#[derive(Debug)]
pub struct Tab {
    config: TabConfig,
    progress: Arc<TabProgress>,
    report: TabReport,
    socket: Option<Socket>,
    /// Logged-in connections so far.
    sessions: usize,
    requests: u64,
}

/// What waiting for one reply produced.
enum Outcome {
    Reply(Value),
    Closed(Option<u16>),
    TimedOut,
}

impl Tab {
    /// Starts the tab on its own task: connects through the front door,
    /// logs in with `FASTLOGIN`, and sends messages until
    /// [`TabHandle::finish`] or `max_messages`.
    pub fn spawn(config: TabConfig) -> TabHandle {
        let progress = Arc::new(TabProgress::default());
        let label = config.label.clone();
        let tab = Tab {
            report: TabReport {
                label: label.clone(),
                ..TabReport::default()
            },
            config,
            progress: progress.clone(),
            socket: None,
            sessions: 0,
            requests: 0,
        };
        TabHandle {
            label,
            progress,
            task: tokio::spawn(tab.run()),
        }
    }

    async fn run(mut self) -> TabReport {
        let started = Instant::now();
        let mut sent = 0usize;
        let mut pending: Option<(String, String)> = None;
        loop {
            assert!(
                started.elapsed() < self.config.time_limit,
                "tab {} was still running after {:?}: {} acknowledged, report so far: {:?}",
                self.config.label,
                self.config.time_limit,
                self.report.acks.len(),
                self.report
            );
            if self.socket.is_none() {
                self.connect_and_resume().await;
            }
            if pending.is_none() {
                if self.progress.stop.load(Ordering::SeqCst) || sent >= self.config.max_messages {
                    break;
                }
                sent += 1;
                pending = Some((
                    format!("{}-m{sent}", self.config.label),
                    format!("{} says hello #{sent}", self.config.label),
                ));
            }
            let (client_msg_id, text) = pending.clone().expect("a message is pending here");
            let request = json!({
                "action": "SEND_MESSAGE",
                "to": {"userId": self.config.to_user_id},
                "text": text,
                "clientMsgId": client_msg_id,
            });
            match self.request(request).await {
                Outcome::Reply(reply) if reply["rocketStatus"] == "MESSAGE_SENT" => {
                    let ack = Ack {
                        client_msg_id: field(&reply, "clientMsgId"),
                        message_id: field(&reply, "messageId"),
                        conversation_id: field(&reply, "conversationId"),
                        seq: reply["seq"]
                            .as_i64()
                            .unwrap_or_else(|| panic!("MESSAGE_SENT without a seq: {reply}")),
                    };
                    assert_eq!(
                        ack.client_msg_id, client_msg_id,
                        "MESSAGE_SENT for another message"
                    );
                    self.report.acks.push(ack);
                    self.progress.acked.fetch_add(1, Ordering::SeqCst);
                    pending = None;
                    self.listen(self.config.pace).await;
                }
                Outcome::Reply(reply) => {
                    // TIMEOUT, SERVICE_UNAVAILABLE, RATE_LIMITED...: the message
                    // may or may not be stored; the same clientMsgId makes
                    // sending it again safe either way.
                    let status = reply["rocketStatus"].as_str().unwrap_or_default();
                    assert!(
                        matches!(
                            status,
                            "TIMEOUT" | "SERVICE_UNAVAILABLE" | "RATE_LIMITED" | "CONFLICT"
                        ),
                        "tab {}: SEND_MESSAGE refused: {reply}",
                        self.config.label
                    );
                    self.report.errors.push(reply);
                    self.report.resends += 1;
                    sleep(Duration::from_millis(200)).await;
                }
                Outcome::Closed(code) => {
                    self.lost(code);
                    self.report.resends += 1;
                }
                Outcome::TimedOut => {
                    // No answer at all: start over on a fresh connection.
                    self.drop_socket().await;
                    self.report.resends += 1;
                }
            }
        }
        self.drop_socket().await;
        self.report
    }

    /// Connects through the front door and resumes the session, retrying
    /// while gateways come and go.
    async fn connect_and_resume(&mut self) {
        let deadline = Instant::now() + RECONNECT_BUDGET;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            assert!(
                Instant::now() < deadline,
                "tab {} could not get back in through {} within {RECONNECT_BUDGET:?} ({attempts} attempts)",
                self.config.label,
                self.config.url
            );
            if attempts > 1 {
                sleep(Duration::from_millis(150)).await;
            }
            let Ok(Ok((socket, _))) =
                timeout(CONNECT_TIMEOUT, connect_async(&self.config.url)).await
            else {
                continue;
            };
            self.socket = Some(socket);
            let login = json!({
                "action": "FASTLOGIN",
                "userLoginData": {"email": self.config.email, "token": self.config.token},
            });
            match self.request(login).await {
                Outcome::Reply(reply) if reply["rocketStatus"] == "USER_LOGGED" => {
                    if self.sessions > 0 {
                        self.report.reconnects += 1;
                    }
                    self.sessions += 1;
                    self.progress.connected.store(true, Ordering::SeqCst);
                    return;
                }
                Outcome::Reply(reply) => {
                    let status = reply["rocketStatus"].as_str().unwrap_or_default();
                    assert!(
                        matches!(status, "TIMEOUT" | "SERVICE_UNAVAILABLE" | "RATE_LIMITED"),
                        "tab {}: FASTLOGIN refused: {reply}",
                        self.config.label
                    );
                    self.drop_socket().await;
                }
                Outcome::Closed(code) => self.lost(code),
                Outcome::TimedOut => self.drop_socket().await,
            }
        }
    }

    /// Sends `request` with a fresh `requestId` and waits for the frame that
    /// echoes it, noting the events that arrive meanwhile.
    async fn request(&mut self, mut request: Value) -> Outcome {
        self.requests += 1;
        let id = format!("{}-r{}", self.config.label, self.requests);
        request["requestId"] = Value::String(id.clone());
        let Some(socket) = self.socket.as_mut() else {
            return Outcome::Closed(None);
        };
        if socket
            .send(Message::text(request.to_string()))
            .await
            .is_err()
        {
            return Outcome::Closed(None);
        }
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            match self.read(deadline).await {
                Some(Ok(frame)) if frame["requestId"].as_str() == Some(id.as_str()) => {
                    return Outcome::Reply(frame);
                }
                Some(Ok(frame)) => self.note_event(&frame),
                Some(Err(code)) => return Outcome::Closed(code),
                None => return Outcome::TimedOut,
            }
        }
    }

    /// Reads events for `period` (the pause between messages).
    async fn listen(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        while self.socket.is_some() {
            match self.read(deadline).await {
                Some(Ok(frame)) => self.note_event(&frame),
                Some(Err(code)) => self.lost(code),
                None => return,
            }
        }
    }

    /// One JSON frame (`Ok`), the end of the connection with its close code
    /// (`Err`), or `None` at the deadline.
    async fn read(&mut self, deadline: Instant) -> Option<Result<Value, Option<u16>>> {
        let socket = self.socket.as_mut()?;
        loop {
            let message = match timeout_at(deadline, socket.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(Err(None)),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    let frame = serde_json::from_str(text.as_str()).unwrap_or_else(|e| {
                        panic!("a text frame that is not JSON ({e}): {}", text.as_str())
                    });
                    return Some(Ok(frame));
                }
                Message::Close(frame) => {
                    return Some(Err(frame.map(|f| u16::from(f.code))));
                }
                Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    fn note_event(&mut self, frame: &Value) {
        if frame["rocketStatus"] == "NEW_MESSAGE" && frame["senderId"] == self.config.to_user_id {
            self.report.received.push(field(frame, "messageId"));
        }
    }

    /// The server ended the connection.
    fn lost(&mut self, code: Option<u16>) {
        self.socket = None;
        self.progress.connected.store(false, Ordering::SeqCst);
        self.progress.closes.fetch_add(1, Ordering::SeqCst);
        self.report.closes.push(code);
    }

    async fn drop_socket(&mut self) {
        self.progress.connected.store(false, Ordering::SeqCst);
        if let Some(mut socket) = self.socket.take() {
            // Best effort: the other side may be gone already.
            let _ = timeout(Duration::from_secs(1), socket.close(None)).await;
        }
    }
}

fn field(frame: &Value, name: &str) -> String {
    frame[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing from {frame}"))
        .to_owned()
}
