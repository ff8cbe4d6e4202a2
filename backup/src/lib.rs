//! cutover-backup: [`DumpBackups`], cutover's backup engine for applications on
//! PostgreSQL, MySQL and MariaDB.
//!
//! It implements `cutover_core`'s [`Backups`](cutover_core::Backups) interface with the
//! databases' own tools (`pg_dump`/`pg_restore`/`psql`, `mysqldump`/`mysql` and MariaDB's
//! names), run on this machine or inside the deployment through
//! [`Driver::exec`](cutover_core::Driver::exec); dumps stream through zstd and SHA-256
//! into a [`Store`] (a local directory, or S3-compatible object storage with the `s3`
//! feature), beside a [`Manifest`] and a [`Fingerprint`] of the data computed by the
//! server. See `docs/architecture.md`, section "Backups", for the design.

mod database;
mod dumps;
mod fingerprint;
mod floats;
pub mod manifest;
mod my_swap;
mod pg_list;
mod pg_swap;
mod pipeline;
mod restorable;
mod restore;
#[cfg(feature = "s3")]
mod s3;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use database::{Database, ToolSite, run_local};
pub use dumps::DumpBackups;
pub use manifest::{DatabaseEngine, Fingerprint, Manifest};
pub use restore::{CheckpointHook, Checkpoints, Replacement, replacement};
#[cfg(feature = "s3")]
pub use s3::{S3Credentials, S3Store};
pub use store::{LocalStore, S3Settings, Store, UNFINISHED_MIN_AGE, Unfinished};
