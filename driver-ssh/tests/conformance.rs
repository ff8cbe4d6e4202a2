//! The core's Driver conformance suite against a real fleet: one 1.0.0 container on each
//! of three SSH test hosts (each with its own Docker engine), one fleet per case. They wait
//! for a database they never reach, so switching versions without restoring data (as the
//! suite does) leaves no release crash-looping on another's schema.

mod common;

use common::Fleet;

async fn fleet() -> (Fleet, cutover_core::testkit::Fixture) {
    let f = Fleet::start_without_database("1.0.0", 1).await;
    let fixture = f.fixture();
    (f, fixture)
}

cutover_core::conformance_tests!(fleet().await);
