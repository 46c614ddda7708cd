//! Memory and CPU of the servers under test, read from `/proc`.
//!
//! Memory is the resident set (`VmRSS` of `/proc/<pid>/status`); CPU is user
//! plus system time (`utime + stime` of `/proc/<pid>/stat`). The servers'
//! pids are given, or found as the processes listening on the targets' ports,
//! which cannot mistake another stack's gateway (same name, other port) for
//! ours.

use std::collections::HashSet;
use std::fs;

use anyhow::{Context, bail};
use serde::Serialize;

/// Clock ticks per second of `utime`/`stime`. Linux exports these in
/// USER_HZ, which is 100 on every architecture it supports for user space.
const TICKS_PER_SEC: f64 = 100.0;

/// Resident memory of a process in bytes, `None` if it is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU seconds (user + system) a process has used, `None` if it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields are counted after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state), so utime (14) and stime (15) are 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// Memory and CPU of a set of processes at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// Sums over `pids`; processes that are gone count as zero.
pub fn sample(pids: &[u32]) -> Sample {
    pids.iter().fold(Sample::default(), |acc, &pid| Sample {
        rss_bytes: acc.rss_bytes + rss_bytes(pid).unwrap_or(0),
        cpu_seconds: acc.cpu_seconds + cpu_seconds(pid).unwrap_or(0.0),
    })
}

/// CPU seconds of one process, for the watched helpers (Redis, services).
pub fn cpu_of(pid: u32) -> f64 {
    cpu_seconds(pid).unwrap_or(0.0)
}

/// Processes whose command name (`/proc/<pid>/comm`) is `name`.
pub fn pids_named(name: &str) -> Vec<u32> {
    // comm holds at most 15 bytes of the name.
    let wanted: String = name.chars().take(15).collect();
    proc_pids()
        .into_iter()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == wanted)
        })
        .collect()
}

/// The processes holding a socket that listens on TCP `port`.
pub fn pids_listening_on(port: u16) -> anyhow::Result<Vec<u32>> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        bail!("nothing listens on TCP port {port}");
    }
    let mut pids = Vec::new();
    for pid in proc_pids() {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            fs::read_link(fd.path())
                .is_ok_and(|link| inodes.contains(link.to_string_lossy().as_ref()))
        });
        if holds {
            pids.push(pid);
        }
    }
    if pids.is_empty() {
        bail!(
            "port {port} listens, but its process is not visible (run as the same user, or pass --gateway-pids)"
        );
    }
    Ok(pids)
}

/// Parses `1,2,3`.
pub fn parse_pids(raw: &str) -> anyhow::Result<Vec<u32>> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().with_context(|| format!("{p:?} is not a pid")))
        .collect()
}

fn proc_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu() {
        let me = std::process::id();
        assert!(rss_bytes(me).expect("own status") > 0);
        assert!(cpu_seconds(me).expect("own stat") >= 0.0);
        assert!(rss_bytes(u32::MAX).is_none());
    }

    #[test]
    fn a_listening_socket_leads_to_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let pids = pids_listening_on(port).expect("found");
        assert_eq!(pids, vec![std::process::id()]);
    }
}
