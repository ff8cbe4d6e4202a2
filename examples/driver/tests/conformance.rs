//! The core's Driver conformance suite against the in-memory driver, as any third-party
//! driver runs it: one fresh deployment per case.

use std::sync::Arc;

use cutover_core::testkit::Fixture;
use cutover_core::testkit::conformance::ArchiveSpot;
use cutover_core::{Driver, ExecTarget};
use cutover_example_driver::{MemoryConfig, MemoryDriver};

async fn deployment() -> (Arc<dyn Driver>, Fixture) {
    let fixture = Fixture {
        old: "registry.example.com/shop/web:1.0.0".parse().unwrap(),
        new: "registry.example.com/shop/web:1.1.0".parse().unwrap(),
        missing: "registry.example.com/shop/web:0.0.404".parse().unwrap(),
        replicas: 2,
        // The driver has no `exec`: the suite checks that it says so with the typed error.
        exec_at: ExecTarget::AnyInstance,
        echo: vec!["echo".into(), "conformance".into()],
        // Nor `archive`: the suite checks the typed error for it too.
        archive: ArchiveSpot::Unavailable("the in-memory driver stores no files"),
    };
    let config = MemoryConfig::new(
        fixture.old.clone(),
        fixture.replicas,
        vec![fixture.new.clone()],
    );
    (Arc::new(MemoryDriver::new(config)), fixture)
}

cutover_core::conformance_tests!(deployment().await);
