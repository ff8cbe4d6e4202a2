//! The Driver conformance suite against the in-memory FakeDriver, through the macro that
//! real drivers use too.

use std::sync::Arc;

use cutover_core::testkit::conformance::ArchiveSpot;
use cutover_core::testkit::{FakeConfig, FakeDriver, Fixture};
use cutover_core::{Capabilities, Driver, ExecTarget};

fn fixture() -> Fixture {
    Fixture {
        old: "registry.test/app:1.0.0".parse().unwrap(),
        new: "registry.test/app:1.1.0".parse().unwrap(),
        missing: "registry.test/app:0.0.404".parse().unwrap(),
        replicas: 2,
        exec_at: ExecTarget::AnyInstance,
        echo: vec!["echo".into(), "conformance".into()],
        archive: ArchiveSpot::Dir {
            at: ExecTarget::AnyInstance,
            path: "/var/lib/app/uploads".into(),
            stale_entries_survive: None,
        },
    }
}

async fn fake() -> (Arc<dyn Driver>, Fixture) {
    let f = fixture();
    let driver = FakeDriver::new(FakeConfig::new(
        f.old.clone(),
        f.replicas,
        vec![f.new.clone()],
    ));
    (Arc::new(driver), f)
}

/// The same driver with no optional capability: the unsupported cases apply.
async fn bare_fake() -> (Arc<dyn Driver>, Fixture) {
    let f = fixture();
    let mut config = FakeConfig::new(f.old.clone(), f.replicas, vec![f.new.clone()]);
    config.capabilities = Capabilities::none();
    (Arc::new(FakeDriver::new(config)), f)
}

mod full {
    use super::*;
    cutover_core::conformance_tests!(fake().await);
}

mod without_capabilities {
    use super::*;
    cutover_core::conformance_tests!(bare_fake().await);
}
