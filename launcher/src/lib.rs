//! How each component of a Switchyard deployment is started, and how to tell
//! it is ready: Redis, FerretDB, MailDev, the four service binaries and the
//! front door. One definition per component, used by `./stack up` (through
//! the `switchyard-launch` binary), the end-to-end tests, the load
//! generator's tests and the benchmark.
//!
//! Modules, one job each:
//! - [`infra`], [`services`] and [`front_door`]: the component definitions,
//!   each a [`ProcessSpec`](spec::ProcessSpec) and a [`Probe`](probe::Probe).
//! - [`spec`]: a process's command line, environment and log file.
//! - [`probe`]: what "ready" means, and a bounded wait for it.
//! - [`process`]: a child process a test owns, killed on drop.
//! - [`detached`]: processes that outlive their starter, known by pid files.
//! - [`locate`] and [`ports`]: where binaries are found, and free ports.

pub mod detached;
pub mod front_door;
pub mod infra;
pub mod locate;
pub mod ports;
pub mod probe;
pub mod process;
pub mod services;
pub mod spec;
