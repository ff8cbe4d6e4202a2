//! The core's Driver conformance suite against the Kubernetes driver on the API emulator:
//! a Deployment of two specimen 1.0.0 pods on a scratch PostgreSQL database, one emulator
//! per case.

mod common;

use common::Cluster;

async fn cluster() -> (Cluster, cutover_core::testkit::Fixture) {
    let c = Cluster::start("1.0.0", 2, &[]).await;
    let f = c.fixture(2);
    (c, f)
}

cutover_core::conformance_tests!(cluster().await);
