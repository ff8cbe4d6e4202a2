//! Test support for drivers and embedders (feature `testkit`).
//!
//! - [`FakeDriver`]: an in-memory deployment and database with fault injection on every
//!   method, recording what tests need to check the invariants; with the `engine`
//!   feature, `FakeBackups` is the backup engine of its database.
//! - [`conformance`]: the Driver conformance suite; [`crate::conformance_tests!`] turns it
//!   into one named test per case for any driver.
//!
//! An engine over a real driver with the dump backup engine, for a driver's end-to-end
//! tests, is `cutover-backup`'s `testkit` (feature `testkit` of that crate).

pub mod conformance;
mod fake;
#[cfg(feature = "engine")]
pub mod journal;

pub use conformance::Fixture;
#[cfg(feature = "engine")]
pub use fake::FakeBackups;
pub use fake::{FakeConfig, FakeData, FakeDriver, Fault, FaultKind, Method, registry_digest};
