//! A third-party cutover driver, written against the driver contract alone
//! (`cutover-core` without default features): an in-memory deployment with a definition
//! (image and replicas), instances, a registry to pull from, instances kept aside for
//! rollback, a backend-side lock and instance logs.
//!
//! It is the smallest honest implementation of every promise [`cutover_core::Driver`]
//! documents, and it passes the conformance suite (`tests/conformance.rs`). The guide for
//! driver authors is `docs/drivers.md`.
//!
//! ```
//! use cutover_core::Driver;
//! use cutover_example_driver::{MemoryConfig, MemoryDriver};
//!
//! # async fn demo() -> cutover_core::Result<()> {
//! let old = "registry.example.com/shop/web:1.0.0".parse()?;
//! let new = "registry.example.com/shop/web:1.1.0".parse()?;
//! let driver = MemoryDriver::new(MemoryConfig::new(old, 2, vec![new]));
//! assert_eq!(driver.observe().await?.running(), 2);
//! # Ok(()) }
//! ```

mod driver;
mod state;

pub use driver::{KIND, MemoryConfig, MemoryDriver};
