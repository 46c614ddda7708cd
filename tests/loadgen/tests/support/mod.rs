//! The deployment the smoke tests measure: the end-to-end tests' [`Stack`]
//! (Redis, FerretDB, MailDev and every Switchyard binary on free loopback
//! ports, killed on drop), driven from these synchronous tests through a
//! runtime of its own; and the bare broadcast server, started the same way.
//! Binaries are found as the end-to-end tests find them; nothing is skipped.

use std::path::Path;
use std::time::Duration;

use switchyard_launcher::probe::Probe;
use switchyard_launcher::process::ManagedProcess;
use switchyard_launcher::spec::ProcessSpec;
use switchyard_tests::Stack as Deployment;

/// How long the bare server may take to listen.
const READY_WAIT: Duration = Duration::from_secs(30);

/// Log lines quoted when a run fails.
const TAIL_LINES: usize = 30;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a Tokio runtime")
}

/// The whole product on free ports.
pub struct Stack {
    pub gateway_port: u16,
    pub maildev_web_port: u16,
    // Before `runtime`: the processes go while the runtime that reaps them is there.
    deployment: Deployment,
    _runtime: tokio::runtime::Runtime,
}

impl Stack {
    /// One gateway and one replica of each service, logging warnings only.
    pub fn start() -> Stack {
        let runtime = runtime();
        let deployment = runtime.block_on(
            Deployment::builder()
                .chat(true)
                .env("SWITCHYARD__LOG__FILTER", "warn")
                .start(),
        );
        let gateway_port = deployment.gateway_addr(0).port();
        Stack {
            gateway_port,
            maildev_web_port: deployment.maildev().web_port(),
            deployment,
            _runtime: runtime,
        }
    }

    /// The deployment's temporary directory.
    pub fn dir(&self) -> &Path {
        self.deployment.dir()
    }

    /// The end of every component's log.
    pub fn logs(&self) -> String {
        self.deployment
            .log_paths()
            .iter()
            .map(|(name, path)| {
                format!(
                    "--- {name} ---\n{}\n",
                    switchyard_launcher::spec::log_tail(path, TAIL_LINES)
                )
            })
            .collect()
    }
}

/// A child process killed on drop.
pub struct Proc {
    process: ManagedProcess,
    _runtime: tokio::runtime::Runtime,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.process.pid().expect("the process was started")
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail(TAIL_LINES)
    }
}

/// `bare-broadcast` on a free port.
pub fn bare_broadcast(dir: &Path) -> (Proc, u16) {
    let port = switchyard_launcher::ports::free_port();
    let runtime = runtime();
    let spec = ProcessSpec {
        name: "bare-broadcast".to_owned(),
        program: env!("CARGO_BIN_EXE_bare-broadcast").into(),
        args: vec!["--listen".into(), format!("127.0.0.1:{port}").into()],
        env: Vec::new(),
        cwd: dir.to_path_buf(),
        log_path: dir.join("bare-broadcast.log"),
    };
    let process = runtime.block_on(async {
        let mut process = ManagedProcess::spawn(spec);
        let probe = Probe::Tcp(switchyard_launcher::infra::loopback(port));
        process.wait_ready(&probe, READY_WAIT).await;
        process
    });
    (
        Proc {
            process,
            _runtime: runtime,
        },
        port,
    )
}
