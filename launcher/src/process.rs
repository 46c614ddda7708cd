//! One child process of a test: how it is started, where its output goes and
//! how it is stopped.
//!
//! A [`ManagedProcess`] can be stopped and started again with the same
//! command line, ports and directories, which is how tests simulate a crash
//! or an outage. Its stdout and stderr are appended to one log file, with a
//! header line at every start. Dropping it kills the process.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::probe::{NotReady, Probe, wait_until_ready};
use crate::spec::{Inherit, ProcessSpec, log_tail};

/// How long a killed process may take to be reaped before that is a failure.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// Log lines quoted in a failure message.
const TAIL_LINES: usize = 40;

/// A child process started from a [`ProcessSpec`]; killed on drop.
#[derive(Debug)]
pub struct ManagedProcess {
    spec: ProcessSpec,
    child: Option<Child>,
}

impl ManagedProcess {
    /// Starts the process.
    ///
    /// # Panics
    /// If it cannot be spawned (binary not executable, directory missing).
    pub fn spawn(spec: ProcessSpec) -> Self {
        let mut process = Self { spec, child: None };
        process.start();
        process
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn log_path(&self) -> &Path {
        &self.spec.log_path
    }

    /// The operating system id, while a child exists (running or not yet reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process is alive right now.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none() && self.child.is_some()
    }

    /// How the process ended, if it was started and has ended on its own.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child
            .try_wait()
            .unwrap_or_else(|e| panic!("checking whether {} is alive: {e}", self.spec.name))
    }

    /// Starts the process again after [`kill`](Self::kill) or
    /// [`terminate`](Self::terminate), with the same command line.
    ///
    /// # Panics
    /// If it is still running: a test that starts a running service has a bug.
    pub fn restart(&mut self) {
        assert!(
            !self.is_running(),
            "{} is already running; stop or kill it before starting it again",
            self.spec.name
        );
        self.child = None;
        self.start();
    }

    /// Sends SIGKILL and waits for the process to be reaped. Does nothing if it
    /// is not running.
    pub async fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Fails only if the process has already exited, which is what we want.
        let _ = child.start_kill();
        match tokio::time::timeout(REAP_TIMEOUT, child.wait()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("waiting for killed {} to exit: {e}", self.spec.name),
            Err(_) => panic!(
                "{} did not exit within {REAP_TIMEOUT:?} of SIGKILL",
                self.spec.name
            ),
        }
    }

    /// Sends SIGKILL without waiting; for teardown, where nothing may block.
    pub fn start_kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // Fails only if the process has already exited.
            let _ = child.start_kill();
        }
    }

    /// Sends SIGTERM, lets the process shut down gracefully for up to `grace`,
    /// then kills it. Does nothing if it is not running.
    pub async fn terminate(&mut self, grace: Duration) {
        let Some(pid) = self.running_pid() else {
            self.child = None;
            return;
        };
        // The `kill` utility keeps this crate free of unsafe signal code.
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!("running `kill -TERM {pid}` to stop {}: {e}", self.spec.name)
            });
        if sent.success() {
            if let Some(child) = self.child.as_mut() {
                if tokio::time::timeout(grace, child.wait()).await.is_ok() {
                    self.child = None;
                    return;
                }
            }
        }
        self.kill().await;
    }

    /// The last `lines` lines of the log file, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.spec.log_path, lines)
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...) with the `kill` utility.
    ///
    /// # Panics
    /// If the process is not running or the signal cannot be sent.
    pub fn signal(&mut self, signal: &str) {
        let pid = self.running_pid().unwrap_or_else(|| {
            panic!("{} is not running; cannot send SIG{signal}", self.spec.name)
        });
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("running `kill -{signal} {pid}`: {e}"));
        assert!(status.success(), "`kill -{signal} {pid}` failed: {status}");
    }

    fn running_pid(&mut self) -> Option<u32> {
        if self.is_running() { self.pid() } else { None }
    }

    fn start(&mut self) {
        let spec = &self.spec;
        let command = spec
            .command(Inherit::NoSwitchyardSettings)
            .unwrap_or_else(|e| panic!("preparing to start {}: {e}", spec.name));
        let child = Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start {} ({}): {e}",
                    spec.name,
                    spec.program.display()
                )
            });
        self.child = Some(child);
    }

    /// Waits until `probe` holds for this process, for at most `limit`.
    ///
    /// # Panics
    /// If the process exits first or the deadline passes; the message names
    /// the process, the probe, the last probe error and the end of the log.
    pub async fn wait_ready(&mut self, probe: &Probe, limit: Duration) {
        let outcome = {
            let mut exited = || self.exit_status().map(|status| status.to_string());
            wait_until_ready(probe, limit, &mut exited).await
        };
        let excerpt = || {
            format!(
                "Last lines of {}:\n{}",
                self.log_path().display(),
                self.log_tail(TAIL_LINES)
            )
        };
        match outcome {
            Ok(()) => {}
            Err(NotReady::Exited(status)) => panic!(
                "{} exited ({status}) before it was ready ({probe}).\n{}",
                self.name(),
                excerpt()
            ),
            Err(NotReady::TimedOut(last_error)) => panic!(
                "{} was not ready after {limit:?} ({probe}); last error: {last_error}.\n{}",
                self.name(),
                excerpt()
            ),
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        // `kill_on_drop` covers this too; being explicit costs nothing and
        // does not depend on the runtime still being alive.
        self.start_kill();
    }
}
