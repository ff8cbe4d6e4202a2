//! The core's Driver conformance suite against a real specimen deployment: two
//! containers of 1.0.0, one deployment per case. They wait for a database they never
//! reach, so switching versions without restoring data (as the suite does) leaves no
//! release crash-looping on another's schema.

mod common;

use common::Deployment;

async fn deployment() -> (Deployment, cutover_core::testkit::Fixture) {
    let d = Deployment::start_without_database("1.0.0", 2).await;
    let f = d.fixture(2);
    (d, f)
}

cutover_core::conformance_tests!(deployment().await);
