//! A small deployment for the smoke tests: Redis, FerretDB, MailDev and the
//! Switchyard binaries as child processes on free loopback ports, killed on
//! drop. Binaries are found as the end-to-end tests find them: the service
//! binaries in `SWITCHYARD_BIN_DIR` or beside this test's target directory,
//! the infrastructure from `SWITCHYARD_REDIS_BIN`, `SWITCHYARD_FERRETDB_BIN`,
//! `SWITCHYARD_MAILDEV_BIN` or where `./stack install` puts it. Nothing is
//! skipped: a missing binary fails with what to do about it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_WAIT: Duration = Duration::from_secs(30);

/// A child process killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

fn home_cache() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/switchyard")
}

fn infra(var: &str, default: PathBuf, what: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map_or(default, PathBuf::from);
    let resolved = if path.components().count() > 1 {
        Some(path.clone())
    } else {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(&path))
                .find(|c| c.is_file())
        })
    };
    match resolved {
        Some(p) if p.is_file() => p,
        _ => panic!(
            "{what} is needed but {} was not found; run `./stack install`, or set {var}",
            path.display()
        ),
    }
}

/// Where the service binaries are: `SWITCHYARD_BIN_DIR`, else the profile
/// directory this test executable was built into.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWITCHYARD_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().expect("the test executable has a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

fn service(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the services with `cargo build --workspace --bins` (or set SWITCHYARD_BIN_DIR)",
        path.display()
    );
    path
}

fn spawn(
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    dir: &Path,
) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("creating a log file");
    let err = out.try_clone().expect("sharing the log file");
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHYARD_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
    Proc {
        name: name.to_owned(),
        child,
        log,
    }
}

fn wait_for(proc: &mut Proc, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY_WAIT;
    while !ready() {
        assert!(
            proc.alive(),
            "{} exited before {what}:\n{}",
            proc.name,
            proc.log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "{} not ready ({what}) within {READY_WAIT:?}:\n{}",
            proc.name,
            proc.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// `GET path` on a loopback port answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// The whole product on free ports.
pub struct Stack {
    pub gateway_port: u16,
    pub maildev_web_port: u16,
    pub dir: tempfile::TempDir,
    pub procs: Vec<Proc>,
}

impl Stack {
    pub fn start() -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("loadgen-smoke-")
            .tempdir()
            .expect("a temporary directory");
        let path = dir.path().to_path_buf();
        let redis_bin = infra(
            "SWITCHYARD_REDIS_BIN",
            PathBuf::from("redis-server"),
            "Redis",
        );
        let ferretdb_bin = infra(
            "SWITCHYARD_FERRETDB_BIN",
            home_cache().join("bin/ferretdb"),
            "FerretDB",
        );
        let maildev_bin = infra(
            "SWITCHYARD_MAILDEV_BIN",
            home_cache().join("maildev/node_modules/.bin/maildev"),
            "MailDev",
        );
        let (redis_port, mongo_port, smtp_port, web_port, gateway_port) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let s = |v: &str| v.to_owned();

        let mut redis = spawn(
            "redis",
            &redis_bin,
            &[
                s("--port"),
                redis_port.to_string(),
                s("--bind"),
                s("127.0.0.1"),
                s("--save"),
                s(""),
                s("--appendonly"),
                s("no"),
            ],
            &[],
            &path,
        );
        let ferret_dir = path.join("ferretdb");
        std::fs::create_dir_all(&ferret_dir).expect("creating FerretDB's directory");
        let mut ferretdb = spawn(
            "ferretdb",
            &ferretdb_bin,
            &[
                s("--handler=sqlite"),
                format!("--sqlite-url=file:{}/", ferret_dir.display()),
                format!("--state-dir={}", ferret_dir.display()),
                format!("--listen-addr=127.0.0.1:{mongo_port}"),
                s("--debug-addr=-"),
                s("--telemetry=disable"),
                s("--log-level=warn"),
            ],
            &[],
            &path,
        );
        let mut maildev = spawn(
            "maildev",
            &maildev_bin,
            &[
                s("--smtp"),
                smtp_port.to_string(),
                s("--ip"),
                s("127.0.0.1"),
                s("--web"),
                web_port.to_string(),
                s("--web-ip"),
                s("127.0.0.1"),
            ],
            &[],
            &path,
        );
        wait_for(&mut redis, "listening", || port_open(redis_port));
        wait_for(&mut ferretdb, "listening", || port_open(mongo_port));
        wait_for(&mut maildev, "serving its API", || {
            http_ok(web_port, "/api/healthz") && port_open(smtp_port)
        });

        let env: Vec<(String, String)> = [
            (
                "SWITCHYARD__REDIS__URL",
                format!("redis://127.0.0.1:{redis_port}"),
            ),
            (
                "SWITCHYARD__MONGODB__URI",
                format!("mongodb://127.0.0.1:{mongo_port}"),
            ),
            ("SWITCHYARD__MONGODB__DATABASE", s("switchyard")),
            ("SWITCHYARD__SMTP__HOST", s("127.0.0.1")),
            ("SWITCHYARD__SMTP__PORT", smtp_port.to_string()),
            ("SWITCHYARD__LOG__FILTER", s("warn")),
            ("NO_COLOR", s("1")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut gateway_env = env.clone();
        gateway_env.push((
            s("SWITCHYARD__GATEWAY__LISTEN"),
            format!("127.0.0.1:{gateway_port}"),
        ));
        gateway_env.push((s("SWITCHYARD__GATEWAY__ID"), s("gw-smoke")));
        let mut procs = vec![redis, ferretdb, maildev];
        for name in ["auth-service", "chat-service", "mailer"] {
            procs.push(spawn(name, &service(name), &[], &env, &path));
        }
        let mut gateway = spawn("gateway", &service("gateway"), &[], &gateway_env, &path);
        wait_for(&mut gateway, "/readyz answering 200", || {
            http_ok(gateway_port, "/readyz")
        });
        procs.push(gateway);
        for proc in &mut procs {
            assert!(
                proc.alive(),
                "{} exited during start-up:\n{}",
                proc.name,
                proc.log_tail()
            );
        }
        Stack {
            gateway_port,
            maildev_web_port: web_port,
            dir,
            procs,
        }
    }

    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("--- {} ---\n{}\n", p.name, p.log_tail()))
            .collect()
    }
}

/// `bare-broadcast` on a free port.
pub fn bare_broadcast(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let mut proc = spawn(
        "bare-broadcast",
        Path::new(env!("CARGO_BIN_EXE_bare-broadcast")),
        &[String::from("--listen"), format!("127.0.0.1:{port}")],
        &[],
        dir,
    );
    wait_for(&mut proc, "listening", || port_open(port));
    (proc, port)
}
