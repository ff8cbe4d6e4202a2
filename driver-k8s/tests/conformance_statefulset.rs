//! The core's Driver conformance suite against the Kubernetes driver on a StatefulSet of
//! the API emulator: two specimen 1.0.0 pods (`Parallel` pod management) on a scratch
//! PostgreSQL database, one emulator per case.

mod common;

use common::Cluster;
use cutover_driver_k8s::WorkloadKind;

async fn cluster() -> (Cluster, cutover_core::testkit::Fixture) {
    let c = Cluster::start_kind(WorkloadKind::StatefulSet, "1.0.0", 2, &[]).await;
    let f = c.fixture(2);
    // The fixture's reason for no archive directory; the archive case then checks the
    // typed unsupported errors (conformance_archive.rs runs it where the pods have tar).
    assert!(
        !cutover_core::Driver::capabilities(&c.driver).archive,
        "the driver found tar in specimen pods: give the fixture an archive directory"
    );
    (c, f)
}

cutover_core::conformance_tests!(cluster().await);
