//! cutover-core: the state machine, the [`Driver`] contract, the journal, the backup
//! interface and the engine behind cutover.
//!
//! cutover upgrades a containerised application that keeps its state in a SQL database
//! and rolls it back — data included — when the upgrade goes wrong. This crate holds
//! everything that is the same on every backend:
//!
//! - [`machine`]: the pure state machine of upgrade, rollback, backup and restore runs;
//! - [`Driver`]: the contract a backend implements (Docker, Kubernetes, SSH, third parties);
//! - [`Engine`]: performs the machine's effects, journals each step, waits for health;
//! - [`journal`]: the durable record of runs and the per-target lock;
//! - [`Backups`]: the interface of the backup engines;
//! - [`event`]: the versioned event stream that the CLI and embedders render.
//!
//! With the `testkit` feature, `testkit` provides an in-memory `FakeDriver` and the
//! conformance suite that every driver must pass.

mod aftermath;
pub mod backup;
pub mod check;
pub mod driver;
pub mod engine;
pub mod error;
pub mod event;
pub mod evidence;
pub mod health;
pub mod image;
pub mod journal;
pub mod machine;
pub mod preview;
mod queries;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use backup::{BackupId, BackupRef, BackupScope, BackupSummary, Backups};
pub use check::Check;
pub use driver::{
    ByteSink, ByteStream, Capabilities, Driver, DriverExt, DriverInfo, ExecIo, ExecTarget,
    ExitStatus, Holder, Instance, Observed, Pulled, SharedDriver, Snapshot,
};
pub use engine::{Class, DEFAULT_CALL_TIMEOUT, Engine, Finished, Resume, Settings};
pub use error::{Error, ErrorKind, Failure, InstanceLogs, Result};
pub use event::{EVENT_SCHEMA, Event, EventKind, EventSink, Unit};
pub use health::HealthCheck;
pub use image::{ImageRef, Version};
pub use journal::{Journal, SqliteJournal};
pub use machine::{BackupMode, Outcome, Output, Plan, Report, RunKind, Step};
