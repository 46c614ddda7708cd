//! Free loopback ports for the processes a test starts.
//!
//! Ports are taken from below the kernel's ephemeral range (which starts at
//! 32768 by default), from a random starting point, and checked by binding
//! them. The kernel hands ephemeral ports to every outgoing connection — and
//! a test stack opens many — so a port picked from that range can be taken
//! by some client between the check and the child's own bind. Below it, only
//! another listener could take it. A port is never handed out twice within
//! one test binary, so stacks started by tests running in parallel do not
//! pick the same port.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Where listening ports are picked: below the ephemeral range, above the
/// ports services conventionally use.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// Ports already returned by [`free_port`] in this process.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that no earlier
/// call in this process returned.
///
/// The probing listener is closed before returning so that a child process
/// can bind the port; if another process takes it in between, the child's
/// readiness check fails loudly.
///
/// # Panics
/// If no port in the range can be bound (the loopback interface is down).
pub fn free_port() -> u16 {
    let span = PORT_RANGE.end - PORT_RANGE.start;
    // A random starting point, so that test binaries running one after
    // another (or side by side) do not walk the same ports.
    let start = (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u16;
    for step in 0..span {
        let port = PORT_RANGE.start + (start + step) % span;
        if handed_out()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&port)
        {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out()
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {PORT_RANGE:?}; is the loopback interface up?")
}

#[cfg(test)]
mod tests {
    use super::{PORT_RANGE, free_port};

    #[test]
    fn ports_are_never_handed_out_twice() {
        let mut ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 50);
        assert!(ports.iter().all(|p| PORT_RANGE.contains(p)));
    }
}
