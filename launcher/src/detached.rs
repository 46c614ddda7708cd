//! Processes that outlive the command that started them, as `./stack up`'s
//! do: each runs in its own process group, writes to its log, and is known
//! by a pid file `<pids>/<name>.pid` holding its pid and a word of its
//! command line, so that a recycled pid is never mistaken for ours.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, getpgid, kill_process, kill_process_group, test_kill_process};

use crate::spec::{Inherit, ProcessSpec};

/// How often a stopping process is checked.
const POLL: Duration = Duration::from_millis(200);

/// The directory of pid files.
#[derive(Debug, Clone)]
pub struct PidFiles {
    dir: PathBuf,
}

impl PidFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Whether any pid file was ever written here.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pid"))
    }

    /// The pid of the component `name`, if it is running.
    pub fn running(&self, name: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.path(name)).ok()?;
        let mut lines = text.lines();
        let pid: i32 = lines.next()?.trim().parse().ok()?;
        let word = lines.next().unwrap_or_default().trim();
        is_running(pid, word).then_some(pid)
    }

    /// Records that `name` runs as `pid`, whose command line contains `word`.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn record(&self, name: &str, pid: u32, word: &str) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.path(name), format!("{pid}\n{word}\n"))
    }

    /// Forgets `name`.
    pub fn forget(&self, name: &str) {
        // Already gone is as good as removed.
        let _ = std::fs::remove_file(self.path(name));
    }
}

/// Starts `spec` in a new process group (so that stopping it reaches every
/// process it starts, as NGINX's workers) with the caller's environment.
/// The caller should keep the [`Child`] while waiting for readiness: it
/// tells an exited process from a live one even before it is reaped.
///
/// # Errors
/// If the log cannot be opened or the program cannot be started.
pub fn spawn(spec: &ProcessSpec, pids: &PidFiles) -> io::Result<Child> {
    let mut command = spec.command(Inherit::Everything)?;
    command.process_group(0);
    let child = command.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("starting {} ({}): {e}", spec.name, spec.program.display()),
        )
    })?;
    pids.record(&spec.name, child.id(), &spec.match_word())?;
    Ok(child)
}

/// Stops the named components: SIGTERM to each (to its whole process group
/// when it leads one), then, for any still running after `grace`, SIGKILL.
/// Calls `stopped` with each name that was running.
pub fn stop_all(pids: &PidFiles, names: &[String], grace: Duration, stopped: &mut dyn FnMut(&str)) {
    let mut running = Vec::new();
    for name in names {
        match pids.running(name) {
            Some(pid) => {
                signal(pid, Signal::TERM);
                running.push(name.as_str());
            }
            None => pids.forget(name),
        }
    }
    let deadline = Instant::now() + grace;
    for name in running {
        while let Some(pid) = pids.running(name) {
            if Instant::now() >= deadline {
                eprintln!(
                    "switchyard-launch: {name} (pid {pid}) ignored SIGTERM for {}s; sending SIGKILL",
                    grace.as_secs()
                );
                signal(pid, Signal::KILL);
                std::thread::sleep(POLL);
                break;
            }
            std::thread::sleep(POLL);
        }
        pids.forget(name);
        stopped(name);
    }
}

/// Sends `signal` to the process group `pid` leads, or to `pid` alone.
fn signal(pid: i32, signal: Signal) {
    let Some(pid) = Pid::from_raw(pid) else {
        return;
    };
    // Failures mean the process is already gone, which is the goal.
    if getpgid(Some(pid)).is_ok_and(|group| group == pid) {
        let _ = kill_process_group(pid, signal);
    } else {
        let _ = kill_process(pid, signal);
    }
}

/// Alive, not a zombie, and `word` in its command line.
fn is_running(pid: i32, word: &str) -> bool {
    let Some(raw) = Pid::from_raw(pid) else {
        return false;
    };
    if test_kill_process(raw).is_err() {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) {
        // The state follows the parenthesised command name, which may itself hold spaces.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if state == Some("Z") {
            return false;
        }
    }
    if word.is_empty() {
        return true;
    }
    match std::fs::read(proc_dir.join("cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .contains(word),
        // No /proc to read: trust the pid.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_names_a_live_process_only_with_its_word() {
        let dir = std::env::temp_dir().join(format!("launcher-pids-{}", std::process::id()));
        let pids = PidFiles::new(dir.clone());
        let me = std::process::id();
        let exe = std::env::current_exe().expect("the test's own path");
        let word = exe
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        pids.record("me", me, &word).expect("writing a pid file");
        assert_eq!(pids.running("me"), i32::try_from(me).ok());
        pids.record("other", me, "no-such-program-word")
            .expect("writing a pid file");
        assert_eq!(pids.running("other"), None, "a recycled pid is not ours");
        pids.forget("me");
        assert_eq!(pids.running("me"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
