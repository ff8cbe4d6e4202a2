//! The conformance suite's archive case on the Kubernetes driver, where the suite's own
//! fixture cannot run it: its specimen pods are `FROM scratch`, without the `tar` the
//! driver's archive runs in the pod, so there the driver has no `archive` capability and
//! the case checks the typed unsupported errors. Here the workload's image is one the
//! emulator runs nothing for, so exec in its pod runs this machine's binaries, tar
//! included, and the case works in a directory of the test's.

use std::time::Duration;

use cutover_core::testkit::Fixture;
use cutover_core::testkit::conformance::{
    ArchiveSpot, unarchive_holds_exactly_the_archive_s_entries,
};
use cutover_core::{Driver, ExecTarget};
use cutover_driver_k8s::{KubernetesConfig, connect};
use cutover_kube_emulator::{Emulator, EmulatorConfig};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unarchive_holds_exactly_the_archive_s_entries_where_the_pods_have_tar() {
    let emulator = Emulator::start(EmulatorConfig {
        ready_delay: Duration::from_millis(50),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, emulator.kubeconfig("ns")).unwrap();
    let file = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let workload: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "w"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}},
            "template": {"metadata": {"labels": {"app": "w"}},
                "spec": {"containers": [{"name": "c", "image": "tools:1"}]}}},
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client, "ns")
        .create(&PostParams::default(), &workload)
        .await
        .unwrap();
    let mut config = KubernetesConfig::deployment("w");
    config.kubeconfig = Some(kubeconfig.clone());
    let first = connect(config.clone()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while first
        .observe()
        .await
        .unwrap()
        .ready_of(&"tools:1".parse().unwrap())
        < 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the pod never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Connected while the pod runs, as cutover connects to a running workload: the
    // driver's probe finds tar there (the first connection, before any pod, found none).
    let driver = connect(config).await.unwrap();
    assert!(driver.capabilities().archive, "the driver found no tar");

    let archive = dir.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    let fixture = Fixture {
        old: "tools:1".parse().unwrap(),
        new: "tools:2".parse().unwrap(),
        missing: "tools:0".parse().unwrap(),
        replicas: 1,
        exec_at: ExecTarget::AnyInstance,
        echo: vec!["echo".into(), "conformance".into()],
        archive: ArchiveSpot::Dir {
            at: ExecTarget::AnyInstance,
            path: archive.to_str().unwrap().into(),
            stale_entries_survive: None,
        },
    };
    unarchive_holds_exactly_the_archive_s_entries(&driver, &fixture).await;
}
