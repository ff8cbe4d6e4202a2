//! The core's Driver conformance suite against a real fleet: one 1.0.0 container on each
//! of three SSH test hosts (each with its own Docker engine), one fleet per case.

mod common;

use common::Fleet;

async fn fleet() -> (Fleet, cutover_core::testkit::Fixture) {
    let f = Fleet::start("1.0.0", 1, &[]).await;
    let fixture = f.fixture();
    (f, fixture)
}

cutover_core::conformance_tests!(fleet().await);
