//! Free loopback ports for the processes a test starts.
//!
//! Every port is found by binding `127.0.0.1:0` and reading what the kernel
//! chose. A port is never handed out twice within one test binary, so stacks
//! started by tests running in parallel do not pick the same port.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Ports already returned by [`free_port`] in this process.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that no earlier
/// call in this process returned.
///
/// The probing listener is closed before returning so that a child process
/// can bind the port. Another process could take it in between; on loopback
/// that is rare, and the readiness check of the child then fails loudly.
///
/// # Panics
/// If no free port can be found (the loopback interface is down or the
/// ephemeral range is exhausted).
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .expect("binding 127.0.0.1:0 to find a free port; is the loopback interface up?");
        let port = listener
            .local_addr()
            .expect("a bound TCP listener always has a local address")
            .port();
        drop(listener);
        let fresh = handed_out()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port);
        if fresh {
            return port;
        }
    }
    panic!(
        "no unused loopback port found after 1000 attempts; the ephemeral port range looks exhausted"
    )
}

#[cfg(test)]
mod tests {
    use super::free_port;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let mut ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 50);
        assert!(ports.iter().all(|&p| p != 0));
    }
}
