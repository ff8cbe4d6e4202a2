//! cutover-core: the state machine, the [`Driver`] contract, the journal, the backup
//! interface and the engine behind cutover.
//!
//! cutover upgrades a containerised application that keeps its state in a SQL database
//! and rolls it back — data included — when the upgrade goes wrong. This crate holds
//! everything that is the same on every backend:
//!
//! - [`Driver`]: the contract a backend implements (Docker, Kubernetes, SSH, third parties),
//!   with its [`Error`], image references ([`ImageRef`]) and the versioned [`event`]
//!   stream that the CLI and embedders render;
//! - `machine`: the pure state machine of upgrade, rollback, backup and restore runs;
//! - `Engine`: performs the machine's effects, journals each step, waits for health;
//! - `journal`: the durable record of runs and the per-target lock;
//! - `Backups`: the interface of the backup engines (the dump engine is the
//!   `cutover-backup` crate).
//!
//! # Features
//! - `engine` (default): the machine, the engine, the journal, the backup interface and
//!   the health checks, with their dependencies (sqlx, reqwest). Without it
//!   (`default-features = false`) the crate is the driver contract alone, which is all a
//!   third-party driver needs; see `docs/drivers.md`.
//! - `testkit`: the conformance suite every driver must pass and the in-memory
//!   `FakeDriver`; with `engine` also `FakeBackups`.

#[cfg(feature = "engine")]
mod aftermath;
#[cfg(feature = "engine")]
pub mod backup;
#[cfg(feature = "engine")]
pub mod check;
pub mod driver;
#[cfg(feature = "engine")]
pub mod engine;
pub mod error;
pub mod event;
#[cfg(feature = "engine")]
pub mod evidence;
#[cfg(feature = "engine")]
pub mod health;
pub mod image;
#[cfg(feature = "engine")]
pub mod journal;
#[cfg(feature = "engine")]
pub mod machine;
pub mod run;
#[cfg(feature = "testkit")]
pub mod testkit;

#[cfg(feature = "engine")]
pub use backup::{BackupId, BackupRef, BackupScope, BackupSummary, Backups};
#[cfg(feature = "engine")]
pub use check::Check;
pub use driver::{
    ByteSink, ByteStream, Capabilities, Driver, DriverExt, DriverInfo, ExecIo, ExecTarget,
    ExitStatus, Holder, Instance, Observed, Pulled, SharedDriver, Snapshot,
};
#[cfg(feature = "engine")]
pub use engine::preview;
#[cfg(feature = "engine")]
pub use engine::{
    Class, DEFAULT_CALL_TIMEOUT, DEFAULT_HOOK_TIMEOUT, Engine, Finished, HookCommand, Hooks,
    Resume, Settings,
};
pub use error::{Error, ErrorKind, Failure, InstanceLogs, Result};
pub use event::{EVENT_SCHEMA, Event, EventKind, EventSink, Unit};
#[cfg(feature = "engine")]
pub use health::HealthCheck;
pub use image::{ImageRef, Version};
#[cfg(feature = "engine")]
pub use journal::{Journal, PgJournal, SqliteJournal};
#[cfg(feature = "engine")]
pub use machine::{BackupMode, KeptBackup, Output, Plan, Report, Step};
pub use run::{Outcome, RunKind};
