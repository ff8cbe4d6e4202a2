//! Test support for drivers and embedders (feature `testkit`).
//!
//! - [`FakeDriver`]: an in-memory deployment and database with fault injection on every
//!   method, recording what tests need to check the invariants; with the `engine`
//!   feature, `FakeBackups` is the backup engine of its database.
//! - [`conformance`]: the Driver conformance suite; [`crate::conformance_tests!`] turns it
//!   into one named test per case for any driver.
//! - `dump_engine` (with `engine`): an engine over a real driver with the dump backup engine and a
//!   SQLite journal in a directory, for a driver's end-to-end tests.

pub mod conformance;
mod fake;
#[cfg(feature = "engine")]
pub mod journal;
#[cfg(feature = "engine")]
mod local;

pub use conformance::Fixture;
#[cfg(feature = "engine")]
pub use fake::FakeBackups;
pub use fake::{FakeConfig, FakeData, FakeDriver, Fault, FaultKind, Method, registry_digest};
#[cfg(feature = "engine")]
pub use local::{EngineRun, dump_engine};
