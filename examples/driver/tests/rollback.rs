//! What the conformance suite cannot see from `observe` alone: restore brings back the
//! same containers, and restart policies follow the contract of `scale` and `release`.

use cutover_core::{Driver, EventSink, ImageRef};
use cutover_example_driver::{MemoryConfig, MemoryDriver};

fn image(tag: &str) -> ImageRef {
    format!("registry.example.com/shop/web:{tag}")
        .parse()
        .unwrap()
}

/// An upgrade as the core drives it, up to the running new release.
async fn upgraded(d: &MemoryDriver) -> cutover_core::Snapshot {
    d.pull(&image("1.1.0"), &EventSink::discard())
        .await
        .unwrap();
    let snapshot = d.snapshot().await.unwrap();
    d.scale(0).await.unwrap();
    d.set_image(&image("1.1.0")).await.unwrap();
    d.scale(2).await.unwrap();
    snapshot
}

#[tokio::test]
async fn restore_brings_back_the_stopped_containers_themselves() {
    let d = MemoryDriver::new(MemoryConfig::new(image("1.0.0"), 2, vec![image("1.1.0")]));
    let before = d.observe().await.unwrap().instances;
    let snapshot = upgraded(&d).await;
    assert_eq!(d.kept_aside(), vec!["app-1", "app-2"]);

    d.restore(&snapshot).await.unwrap();
    let after = d.observe().await.unwrap().instances;
    assert_eq!(after, before, "not the same containers (uid) running again");
    assert!(d.kept_aside().is_empty());
}

#[tokio::test]
async fn a_new_release_restarts_on_its_own_only_after_release() {
    let d = MemoryDriver::new(MemoryConfig::new(image("1.0.0"), 1, vec![image("1.1.0")]));
    assert_eq!(d.restarts("app-1"), Some(true));
    let snapshot = upgraded(&d).await;
    let new: Vec<String> = d
        .observe()
        .await
        .unwrap()
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(new.iter().all(|id| d.restarts(id) == Some(false)));

    d.release(&snapshot).await.unwrap();
    assert!(
        d.kept_aside().is_empty(),
        "release keeps the old containers"
    );
    assert!(new.iter().all(|id| d.restarts(id) == Some(true)));
    let ids: Vec<String> = d
        .observe()
        .await
        .unwrap()
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, new, "release replaced current containers");
}

#[tokio::test]
async fn set_image_needs_a_pulled_image_and_restore_another_driver_s_snapshot_is_refused() {
    let d = MemoryDriver::new(MemoryConfig::new(image("1.0.0"), 1, vec![image("1.1.0")]));
    let e = d.set_image(&image("1.1.0")).await.unwrap_err();
    assert_eq!(
        e.kind(),
        cutover_core::ErrorKind::NotFound,
        "{}",
        e.report()
    );

    let mut foreign = d.snapshot().await.unwrap();
    foreign.driver = "docker".into();
    let e = d.restore(&foreign).await.unwrap_err();
    assert_eq!(
        e.kind(),
        cutover_core::ErrorKind::InvalidInput,
        "{}",
        e.report()
    );
}
