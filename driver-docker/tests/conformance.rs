//! The core's Driver conformance suite against a real specimen deployment: two
//! containers of 1.0.0 on a scratch MariaDB database, one deployment per case.

mod common;

use common::Deployment;

async fn deployment() -> (Deployment, cutover_core::testkit::Fixture) {
    let d = Deployment::start("1.0.0", 2, &[]).await;
    let f = d.fixture(2);
    (d, f)
}

cutover_core::conformance_tests!(deployment().await);
