//! The front door: NGINX (or HAProxy) on one loopback port in front of some
//! gateways, running the configuration checked in under `deploy/`, rendered
//! for those addresses by `deploy/front-door/render` — the renderer
//! docker-compose uses too. It runs out of its own directory (configuration,
//! pid file, temporary files), so it needs no root and leaves a system NGINX
//! alone.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::infra::{Launch, loopback};
use crate::probe::Probe;
use crate::spec::ProcessSpec;

/// Which proxy stands at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontDoorKind {
    /// `deploy/nginx/switchyard.conf`; reloaded with `nginx -s reload`.
    Nginx,
    /// `deploy/haproxy/haproxy.cfg` in master-worker mode; reloaded softly
    /// with SIGUSR2 to the master.
    Haproxy,
}

impl FrontDoorKind {
    /// The proxy's program name, also the front door's component name.
    pub fn name(self) -> &'static str {
        match self {
            FrontDoorKind::Nginx => "nginx",
            FrontDoorKind::Haproxy => "haproxy",
        }
    }
}

/// The proxy, found as [`system_binary`] finds it.
///
/// # Errors
/// If it is not installed.
pub fn program(kind: FrontDoorKind) -> Result<PathBuf, String> {
    system_binary(kind.name()).ok_or_else(|| {
        format!(
            "{} is not installed; `./stack install` installs it",
            kind.name()
        )
    })
}

/// Renders the configuration for `port`, `gateways` and the chat-services'
/// file ports `files` (none: the checked-in address stays) into `dir` and
/// returns the file the proxy is started with. `root` is the repository,
/// where `deploy/` is.
///
/// # Errors
/// If the renderer fails or a file cannot be written.
pub fn write_config(
    root: &Path,
    kind: FrontDoorKind,
    dir: &Path,
    port: u16,
    gateways: &[SocketAddr],
    files: &[SocketAddr],
) -> Result<PathBuf, String> {
    let mut args = vec![kind.name().to_owned(), loopback(port).to_string()];
    args.extend(gateways.iter().map(ToString::to_string));
    if !files.is_empty() {
        args.push("--files".to_owned());
        args.extend(files.iter().map(ToString::to_string));
    }
    let rendered = render(root, &args)?;
    match kind {
        FrontDoorKind::Nginx => {
            let site = dir.join("switchyard.conf");
            write(&site, &rendered)?;
            let main = render(
                root,
                &[
                    "nginx-main".to_owned(),
                    dir.display().to_string(),
                    site.display().to_string(),
                ],
            )?;
            let config = dir.join("nginx.conf");
            write(&config, &main)?;
            Ok(config)
        }
        FrontDoorKind::Haproxy => {
            let config = dir.join("haproxy.cfg");
            write(&config, &rendered)?;
            Ok(config)
        }
    }
}

/// `nginx -t` or `haproxy -c`: a configuration the proxy would refuse fails
/// here with the proxy's own words, not later as a silent failed start or reload.
///
/// # Errors
/// The proxy's complaint.
pub fn check_config(
    kind: FrontDoorKind,
    program: &Path,
    dir: &Path,
    config: &Path,
) -> Result<(), String> {
    let mut command = std::process::Command::new(program);
    match kind {
        FrontDoorKind::Nginx => command
            .arg("-t")
            .arg("-p")
            .arg(dir)
            .args(["-e", "stderr", "-c"])
            .arg(config),
        FrontDoorKind::Haproxy => command.arg("-c").arg("-f").arg(config),
    };
    let out = command
        .output()
        .map_err(|e| format!("running {}: {e}", program.display()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} refuses {}:\n{}{}",
        kind.name(),
        config.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The proxy running `config` out of `dir` in the foreground, named `name`,
/// listening on `port`. Ready when `/healthz` answers 200 through it, which
/// needs a gateway behind it.
pub fn front_door(
    kind: FrontDoorKind,
    program: PathBuf,
    name: &str,
    dir: &Path,
    config: &Path,
    log_path: PathBuf,
    port: u16,
) -> Launch {
    let args: Vec<OsString> = match kind {
        FrontDoorKind::Nginx => vec![
            "-p".into(),
            dir.into(),
            "-e".into(),
            "stderr".into(),
            "-c".into(),
            config.into(),
        ],
        // Master-worker mode in the foreground: the master is the process
        // started, and SIGUSR2 to it is a soft reload.
        FrontDoorKind::Haproxy => vec!["-W".into(), "-db".into(), "-f".into(), config.into()],
    };
    let spec = ProcessSpec {
        name: name.to_owned(),
        program,
        args,
        env: Vec::new(),
        cwd: dir.to_path_buf(),
        log_path,
    };
    Launch {
        spec,
        probe: Probe::HttpOk(format!("http://{}/healthz", loopback(port))),
    }
}

/// `deploy/front-door/render ARGS...`.
fn render(root: &Path, args: &[String]) -> Result<String, String> {
    let script = root.join("deploy/front-door/render");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed: {}",
            script.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{} printed non-UTF-8", script.display()))
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A system binary such as `nginx`: on `PATH`, or in the sbin directories a
/// non-root `PATH` may lack.
pub fn system_binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
