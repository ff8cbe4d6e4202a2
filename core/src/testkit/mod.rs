//! Test support for drivers and embedders (feature `testkit`).
//!
//! - [`FakeDriver`] and [`FakeBackups`]: an in-memory deployment and database with fault
//!   injection on every method, recording what tests need to check the invariants.
//! - [`conformance`]: the Driver conformance suite; [`crate::conformance_tests!`] turns it
//!   into one named test per case for any driver.

pub mod conformance;
mod fake;

pub use conformance::Fixture;
pub use fake::{FakeBackups, FakeConfig, FakeData, FakeDriver, Fault, FaultKind, Method};
