//! What it takes to start one process: program, arguments, environment,
//! working directory and log file. The component definitions produce these;
//! a test's [`ManagedProcess`](crate::process::ManagedProcess) and the
//! command line's detached processes both start them with [`ProcessSpec::command`],
//! so a component runs the same way wherever it is started.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Everything needed to start a process, and to start it again later.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Short name used in messages, log headers and pid files, e.g. `gateway-1`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Set on top of the inherited environment (see [`Inherit`]).
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Standard output and standard error are appended here.
    pub log_path: PathBuf,
}

/// What a started process keeps of the environment of whoever starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inherit {
    /// Everything: `./stack up` passes settings such as an external SMTP
    /// server's credentials to the services through its own environment.
    Everything,
    /// Everything but `SWITCHYARD_*` variables, so that a developer's shell
    /// cannot leak settings into a test.
    NoSwitchyardSettings,
}

impl ProcessSpec {
    /// The program and its arguments as one line, for log headers.
    pub fn command_line(&self) -> String {
        let mut line = self.program.display().to_string();
        for arg in &self.args {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    }

    /// A word of the process's command line (the program's file name), which
    /// tells a live process of ours from an unrelated one that got its pid.
    pub fn match_word(&self) -> String {
        self.program
            .file_name()
            .map_or_else(|| self.name.clone(), |n| n.to_string_lossy().into_owned())
    }

    /// Opens the log (appending), writes the start header to it and returns
    /// the command, its output going to the log and its input from nowhere.
    ///
    /// # Errors
    /// If the log file cannot be opened or written.
    pub fn command(&self, inherit: Inherit) -> io::Result<Command> {
        let mut log = open_log(&self.log_path)?;
        writeln!(log, "{}", start_header(&self.name, &self.command_line()))?;
        let stderr = log.try_clone()?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        if inherit == Inherit::NoSwitchyardSettings {
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("SWITCHYARD_") {
                    command.env_remove(key);
                }
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(command)
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening log {}: {e}", path.display())))
}

/// The line written to a log before each start; [`log_since_start`] finds it.
fn start_header(name: &str, command_line: &str) -> String {
    format!("===== starting {name}: {command_line} =====")
}

/// The last `lines` lines of a log file, or a note saying why there are none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// The last `lines` lines written since the latest start header: a log kept
/// across restarts would otherwise quote an earlier run's failure.
pub fn log_since_start(path: &Path, lines: usize) -> String {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return format!("(could not read {}: {e})", path.display()),
    };
    let all: Vec<&str> = text.lines().collect();
    let start = all
        .iter()
        .rposition(|line| line.starts_with("===== starting "))
        .unwrap_or(0);
    let this_run = &all[start..];
    this_run[this_run.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_of_this_start_leaves_earlier_runs_out() {
        let dir = tempfile_dir();
        let path = dir.join("x.log");
        let text = format!(
            "{}\nold failure\n{}\nnew line\n",
            start_header("x", "x --a"),
            start_header("x", "x --b")
        );
        std::fs::write(&path, text).expect("writing the log");
        let tail = log_since_start(&path, 10);
        assert!(tail.contains("new line") && !tail.contains("old failure"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("launcher-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        dir
    }
}
