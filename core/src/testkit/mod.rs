//! Test support for drivers and embedders (feature `testkit`).
//!
//! - [`FakeDriver`] and [`FakeBackups`]: an in-memory deployment and database with fault
//!   injection on every method, recording what tests need to check the invariants.
//! - [`conformance`]: the Driver conformance suite; [`crate::conformance_tests!`] turns it
//!   into one named test per case for any driver.
//! - [`dump_engine`]: an engine over a real driver with the dump backup engine and a
//!   SQLite journal in a directory, for a driver's end-to-end tests.

pub mod conformance;
mod fake;
mod local;

pub use conformance::Fixture;
pub use fake::{
    FakeBackups, FakeConfig, FakeData, FakeDriver, Fault, FaultKind, Method, registry_digest,
};
pub use local::dump_engine;
