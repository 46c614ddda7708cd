//! Where clients connect and from which local addresses.
//!
//! Only loopback addresses are accepted, for targets and sources alike: the
//! load generator is a bench tool for one machine, not a way to load someone
//! else's server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use anyhow::{Context, bail};

/// One WebSocket endpoint, e.g. `ws://127.0.0.1:8000/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// The request path with its query, `None` when the URL named none (the
    /// protocol's usual path is used then).
    pub path: Option<String>,
}

impl Target {
    /// The URL for a connection, with `default_path` when none was given.
    pub fn url(&self, default_path: &str) -> String {
        let path = self.path.as_deref().unwrap_or(default_path);
        format!("ws://{}{}", self.addr, path)
    }
}

impl FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(raw: &str) -> anyhow::Result<Self> {
        let rest = raw.strip_prefix("ws://").with_context(|| {
            format!("target {raw:?} must start with ws:// (TLS is not supported)")
        })?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .with_context(|| format!("target {raw:?} needs a port, e.g. ws://127.0.0.1:8000/"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse().with_context(|| {
                format!("target host {host:?} must be an IP address or localhost")
            })?
        };
        if !ip.is_loopback() {
            bail!("target {raw:?} is not a loopback address; only loopback targets are allowed");
        }
        let port: u16 = port
            .parse()
            .with_context(|| format!("target port {port:?} is not a number"))?;
        let path = path.map(|p| {
            if p.starts_with('/') {
                p.to_owned()
            } else {
                format!("/{p}")
            }
        });
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            path,
        })
    }
}

/// Local addresses client sockets are bound to, in turn.
///
/// A socket bound before `connect` takes its port from the source address's
/// ephemeral range (about 28k ports), so tens of thousands of connections
/// need several 127.0.0.x sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIps(pub Vec<IpAddr>);

impl FromStr for SourceIps {
    type Err = anyhow::Error;

    /// `127.0.0.1-127.0.0.20` (a range of the last octet), or a comma list.
    fn from_str(raw: &str) -> anyhow::Result<Self> {
        let mut ips = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((from, to)) = part.split_once('-') {
                let from: Ipv4Addr = from
                    .trim()
                    .parse()
                    .with_context(|| format!("{from:?} is not an IPv4 address"))?;
                let to: Ipv4Addr = to
                    .trim()
                    .parse()
                    .with_context(|| format!("{to:?} is not an IPv4 address"))?;
                let (a, b) = (from.octets(), to.octets());
                if a[..3] != b[..3] || a[3] > b[3] {
                    bail!("source range {part:?} must vary only the last octet, low to high");
                }
                ips.extend(
                    (a[3]..=b[3]).map(|last| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], last))),
                );
            } else {
                ips.push(
                    part.parse()
                        .with_context(|| format!("{part:?} is not an IP address"))?,
                );
            }
        }
        if ips.is_empty() {
            bail!("no source address given");
        }
        if let Some(ip) = ips.iter().find(|ip| !ip.is_loopback()) {
            bail!("source address {ip} is not a loopback address");
        }
        Ok(SourceIps(ips))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_a_path() {
        let t: Target = "ws://127.0.0.1:8000".parse().expect("valid");
        assert_eq!(
            t.url("/connection/websocket"),
            "ws://127.0.0.1:8000/connection/websocket"
        );
        let t: Target = "ws://localhost:9/ws".parse().expect("valid");
        assert_eq!(t.url("/"), "ws://127.0.0.1:9/ws");
        assert!(
            "ws://10.0.0.1:80/".parse::<Target>().is_err(),
            "not loopback"
        );
        assert!("http://127.0.0.1:80/".parse::<Target>().is_err());
        assert!("ws://127.0.0.1/".parse::<Target>().is_err(), "no port");
    }

    #[test]
    fn source_ranges_expand_the_last_octet() {
        let s: SourceIps = "127.0.0.1-127.0.0.3".parse().expect("valid");
        assert_eq!(s.0.len(), 3);
        assert_eq!(s.0[2], "127.0.0.3".parse::<IpAddr>().expect("ip"));
        assert!("127.0.0.5-127.0.0.1".parse::<SourceIps>().is_err());
        assert!("192.168.0.1".parse::<SourceIps>().is_err());
    }
}
