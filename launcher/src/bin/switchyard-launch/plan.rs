//! The deployment a [`Layout`] describes: its components' names, ports and
//! directories, and which infrastructure the caller provides instead.

use std::path::PathBuf;

use switchyard_launcher::detached::PidFiles;
use switchyard_launcher::infra::{FERRETDB, MAILDEV, Placement, REDIS};
use switchyard_launcher::services::{AUTH, CHAT, MAILER, Wiring};

use crate::cli::Layout;

/// The front door's component name.
pub const FRONT_DOOR: &str = "nginx";

/// Infrastructure in start order; stopped in reverse.
pub const INFRA: [&str; 3] = [REDIS, FERRETDB, MAILDEV];

/// Infrastructure the caller points at elsewhere, through the environment
/// variables the services read.
#[derive(Debug, Clone, Default)]
pub struct External {
    pub redis: bool,
    pub mongodb: bool,
    /// `MONGODB_URI`, which the services do not read themselves.
    pub mongodb_uri: Option<String>,
    pub smtp: bool,
}

impl External {
    pub fn from_env() -> Self {
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mongodb_uri = set("MONGODB_URI");
        Self {
            redis: set("SWITCHYARD__REDIS__URL").is_some(),
            mongodb: mongodb_uri.is_some() || set("SWITCHYARD__MONGODB__URI").is_some(),
            mongodb_uri,
            smtp: set("SWITCHYARD__SMTP__HOST").is_some(),
        }
    }

    /// Whether the infrastructure component `name` is external.
    pub fn has(&self, name: &str) -> bool {
        match name {
            REDIS => self.redis,
            FERRETDB => self.mongodb,
            MAILDEV => self.smtp,
            _ => false,
        }
    }

    /// The environment variable naming an external component, for `status`.
    pub fn variable(name: &str) -> &'static str {
        match name {
            REDIS => "SWITCHYARD__REDIS__URL",
            FERRETDB => "SWITCHYARD__MONGODB__URI",
            _ => "SWITCHYARD__SMTP__HOST",
        }
    }
}

/// Paths and names derived from a layout.
pub struct Plan<'a> {
    pub layout: &'a Layout,
}

impl<'a> Plan<'a> {
    pub fn new(layout: &'a Layout) -> Self {
        Self { layout }
    }

    pub fn pids(&self) -> PidFiles {
        PidFiles::new(self.layout.dir.join("pids"))
    }

    pub fn logs(&self) -> PathBuf {
        self.layout.dir.join("logs")
    }

    /// The marker `status` reads to say a component is external (no
    /// address: it may hold credentials).
    pub fn external_marker(&self, name: &str) -> PathBuf {
        self.layout.dir.join(format!("external-{name}"))
    }

    /// A component's own directory, created, and the log directory.
    pub fn placement(&self, name: &str) -> std::io::Result<Placement> {
        let dir = self.layout.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(self.logs())?;
        Ok(Placement {
            dir: std::path::absolute(dir)?,
            logs: std::path::absolute(self.logs())?,
        })
    }

    pub fn gateway_name(port: u16) -> String {
        format!("gateway-{port}")
    }

    /// The file port of each chat-service replica, in order.
    pub fn files_ports(&self) -> Vec<u16> {
        let l = self.layout;
        (0..l.chat_replicas)
            .filter_map(|i| u16::try_from(i).ok())
            .map(|i| l.files_port.saturating_add(i))
            .collect()
    }

    /// The file port of the chat-service replica named `name`, if it is one.
    pub fn files_port_of(&self, name: &str) -> Option<u16> {
        self.backends()
            .into_iter()
            .filter(|(binary, _)| *binary == CHAT)
            .map(|(_, replica)| replica)
            .zip(self.files_ports())
            .find(|(replica, _)| replica == name)
            .map(|(_, port)| port)
    }

    /// Each back-end replica as (binary, name): one replica goes by the
    /// binary's name, several by `<binary>-1`, `<binary>-2`, ...
    pub fn backends(&self) -> Vec<(&'static str, String)> {
        let l = self.layout;
        let mut all = Vec::new();
        for (binary, replicas) in [
            (AUTH, l.auth_replicas),
            (CHAT, l.chat_replicas),
            (MAILER, l.mailer_replicas),
        ] {
            for i in 1..=replicas {
                let name = if replicas == 1 {
                    binary.to_owned()
                } else {
                    format!("{binary}-{i}")
                };
                all.push((binary, name));
            }
        }
        all
    }

    /// The services in start order: gateways, then the back ends.
    pub fn services(&self) -> Vec<String> {
        let gateways = self
            .layout
            .gateway_ports
            .iter()
            .map(|&p| Self::gateway_name(p));
        gateways
            .chain(self.backends().into_iter().map(|(_, name)| name))
            .collect()
    }

    /// The main port of an infrastructure component.
    pub fn infra_port(&self, name: &str) -> u16 {
        match name {
            REDIS => self.layout.redis_port,
            FERRETDB => self.layout.ferretdb_port,
            _ => self.layout.smtp_port,
        }
    }

    /// Where the services find the infrastructure: what this layout starts,
    /// or nothing where the environment names an external server.
    pub fn wiring(&self, external: &External) -> Wiring {
        let l = self.layout;
        let mongo_uri = match (&external.mongodb_uri, external.mongodb) {
            (Some(uri), _) => Some(uri.clone()),
            (None, true) => None,
            (None, false) => Some(format!("mongodb://127.0.0.1:{}", l.ferretdb_port)),
        };
        Wiring {
            redis_url: (!external.redis).then(|| format!("redis://127.0.0.1:{}", l.redis_port)),
            mongo_uri,
            smtp: (!external.smtp).then(|| ("127.0.0.1".to_owned(), l.smtp_port)),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn layout(args: &[&str]) -> Layout {
        let mut all = vec!["switchyard-launch"];
        all.extend_from_slice(args);
        all.push("status");
        Cli::parse_from(all).layout
    }

    #[test]
    fn the_default_layout_is_the_local_stack() {
        let layout = layout(&[]);
        let plan = Plan::new(&layout);
        assert_eq!(
            plan.services(),
            [
                "gateway-8000",
                "gateway-8001",
                "auth-service-1",
                "auth-service-2",
                "chat-service",
                "mailer"
            ]
        );
        assert_eq!(plan.infra_port(REDIS), 6379);
        assert_eq!(plan.infra_port(FERRETDB), 27017);
        assert_eq!(plan.infra_port(MAILDEV), 1025);
        assert_eq!(plan.files_ports(), [8090]);
    }

    #[test]
    fn each_chat_service_serves_files_on_its_own_port() {
        let layout = layout(&["--chat-replicas", "3", "--files-port", "9100"]);
        let plan = Plan::new(&layout);
        assert_eq!(plan.files_ports(), [9100, 9101, 9102]);
        assert_eq!(plan.files_port_of("chat-service-2"), Some(9101));
        assert_eq!(plan.files_port_of("auth-service-1"), None);
    }

    #[test]
    fn external_servers_are_left_to_the_environment() {
        let layout = layout(&["--redis-port", "7000", "--gateway-port", "9000,9001"]);
        let plan = Plan::new(&layout);
        let external = External {
            mongodb: true,
            mongodb_uri: Some("mongodb://db.internal".to_owned()),
            smtp: true,
            ..External::default()
        };
        let wiring = plan.wiring(&external);
        assert_eq!(wiring.redis_url.as_deref(), Some("redis://127.0.0.1:7000"));
        assert_eq!(wiring.mongo_uri.as_deref(), Some("mongodb://db.internal"));
        assert_eq!(wiring.smtp, None);
        assert_eq!(plan.services()[..2], ["gateway-9000", "gateway-9001"]);
    }
}
