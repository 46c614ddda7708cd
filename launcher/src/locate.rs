//! Where the binaries a stack runs are found.
//!
//! Infrastructure (Redis, FerretDB, MailDev) comes from an environment
//! variable naming the binary, then from the place `./stack install` puts it,
//! then from `PATH`. The Switchyard binaries come from `SWITCHYARD_BIN_DIR`, or
//! else from the Cargo target directory the running executable was built in.
//! Anything missing is a panic that says how to get it: tests never skip.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

const INSTALL_HINT: &str = "Install the infrastructure with `./stack install`";

/// The `redis-server` binary: `$SWITCHYARD_REDIS_BIN`, else `redis-server` on `PATH`.
pub fn redis_server() -> PathBuf {
    infrastructure("Redis", "SWITCHYARD_REDIS_BIN", &[], "redis-server")
}

/// The `ferretdb` binary: `$SWITCHYARD_FERRETDB_BIN`, else
/// `$HOME/.cache/switchyard/bin/ferretdb`, else `ferretdb` on `PATH`.
pub fn ferretdb() -> PathBuf {
    let cached = cache_dir().map(|dir| dir.join("bin").join("ferretdb"));
    infrastructure(
        "FerretDB",
        "SWITCHYARD_FERRETDB_BIN",
        cached.as_slice(),
        "ferretdb",
    )
}

/// The `maildev` launcher: `$SWITCHYARD_MAILDEV_BIN`, else
/// `$HOME/.cache/switchyard/maildev/node_modules/.bin/maildev`, else `maildev` on `PATH`.
pub fn maildev() -> PathBuf {
    let cached = cache_dir().map(|dir| {
        dir.join("maildev")
            .join("node_modules")
            .join(".bin")
            .join("maildev")
    });
    infrastructure(
        "MailDev",
        "SWITCHYARD_MAILDEV_BIN",
        cached.as_slice(),
        "maildev",
    )
}

/// A Switchyard binary (`gateway`, `auth-service`, `chat-service`, `mailer`)
/// from [`service_bin_dir`].
///
/// # Panics
/// If the binary is not there, saying how to build it.
pub fn service(name: &str) -> PathBuf {
    service_in(&service_bin_dir(), name)
}

/// A Switchyard binary from `dir`.
///
/// # Panics
/// If the binary is not there, saying how to build it.
pub fn service_in(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "the `{name}` binary is missing from {}: build them with `cargo build --workspace --bins` \
         (or point SWITCHYARD_BIN_DIR at the directory that holds them)",
        dir.display()
    );
    path
}

/// `$SWITCHYARD_BIN_DIR`, else the profile directory of the target directory
/// the running executable (a test, or `switchyard-launch`) lives in.
pub fn service_bin_dir() -> PathBuf {
    if let Some(dir) = env::var_os("SWITCHYARD_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = env::current_exe()
        .expect("the path of the running executable is needed to find the service binaries");
    bin_dir_for_exe(&exe)
}

/// Cargo puts test executables in `<target>/<profile>/deps/` and binaries in
/// `<target>/<profile>/`; an executable anywhere else is taken to sit beside them.
fn bin_dir_for_exe(exe: &Path) -> PathBuf {
    let dir = exe.parent().unwrap_or(Path::new("."));
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// `$HOME/.cache/switchyard`, where `./stack install` puts what it builds.
fn cache_dir() -> Option<PathBuf> {
    env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("switchyard"))
}

fn infrastructure(what: &str, var: &str, defaults: &[PathBuf], command: &str) -> PathBuf {
    if let Some(value) = env::var_os(var).filter(|v| !v.is_empty()) {
        return resolve(&value).unwrap_or_else(|| {
            panic!(
                "{var}={} does not name an executable file. {INSTALL_HINT}, or fix {var}.",
                PathBuf::from(&value).display()
            )
        });
    }
    if let Some(found) = defaults.iter().find(|path| path.is_file()) {
        return found.clone();
    }
    if let Some(found) = on_path(command) {
        return found;
    }
    let looked_at: Vec<String> = defaults
        .iter()
        .map(|path| path.display().to_string())
        .chain([format!("`{command}` on PATH")])
        .collect();
    panic!(
        "{what} is needed but was not found (looked at {}). \
         {INSTALL_HINT}, or set {var} to the binary.",
        looked_at.join(", ")
    )
}

/// A path with a `/` is taken as is; a bare name is looked up on `PATH`.
fn resolve(value: &OsString) -> Option<PathBuf> {
    let path = PathBuf::from(value);
    if path.components().count() > 1 {
        path.is_file().then_some(path)
    } else {
        on_path(value)
    }
}

fn on_path(command: impl AsRef<Path>) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(command.as_ref()))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::bin_dir_for_exe;
    use std::path::Path;

    #[test]
    fn test_executables_in_deps_find_binaries_one_level_up() {
        let exe = Path::new("/t/debug/deps/infrastructure-0123abcd");
        assert_eq!(bin_dir_for_exe(exe), Path::new("/t/debug"));
    }

    #[test]
    fn other_executables_find_binaries_beside_them() {
        let exe = Path::new("/opt/switchyard/e2e");
        assert_eq!(bin_dir_for_exe(exe), Path::new("/opt/switchyard"));
    }
}
