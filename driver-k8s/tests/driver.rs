//! Kubernetes-specific behaviour beyond the conformance suite, on the API emulator:
//! exec's environment travels on stdin (never in the command), a Helm-managed target is
//! named in the driver's description and snapshot, and bad settings fail clearly.

use std::time::Duration;

use cutover_core::{Driver, DriverExt, ErrorKind, ExecIo, ExecTarget};
use cutover_driver_k8s::{KubernetesConfig, KubernetesDriver, connect};
use cutover_kube_emulator::{Emulator, EmulatorConfig, HistoryEvent};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::json;

struct Setup {
    emulator: Emulator,
    dir: tempfile::TempDir,
}

/// An emulator with a Deployment `w` (container `c`, an image the emulator runs nothing
/// for, so its exec runs host binaries), annotated as a Helm release when `helm`.
async fn setup(helm: bool) -> Setup {
    let emulator = Emulator::start(EmulatorConfig {
        ready_delay: Duration::from_millis(50),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), emulator.kubeconfig("ns")).unwrap();
    let file = kube::config::Kubeconfig::read_from(dir.path().join("kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let annotations = if helm {
        json!({"meta.helm.sh/release-name": "apidog"})
    } else {
        json!({})
    };
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "w", "annotations": annotations},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}},
            "template": {"metadata": {"labels": {"app": "w"}},
                "spec": {"containers": [{"name": "c", "image": "tools:1",
                    "env": [{"name": "SECRET_IN_TEMPLATE", "value": "s3cr3t-template"}]}]}}},
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client, "ns")
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    Setup { emulator, dir }
}

async fn driver(
    s: &Setup,
    tweak: impl FnOnce(&mut KubernetesConfig),
) -> cutover_core::Result<KubernetesDriver> {
    let mut config = KubernetesConfig::deployment("w");
    config.kubeconfig = Some(s.dir.path().join("kubeconfig"));
    tweak(&mut config);
    connect(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_env_values_travel_on_stdin_not_in_the_command() {
    let s = setup(false).await;
    let d = driver(&s, |_| {}).await.unwrap();
    d.scale(1).await.unwrap();
    let (reader, writer) = tokio::io::duplex(4096);
    let io = ExecIo {
        env: vec![("PGPASSWORD".into(), "hunter2-very-secret".into())],
        stdout: Some(Box::pin(writer)),
        ..ExecIo::default()
    };
    let argv: Vec<String> = vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo \"pw=$PGPASSWORD\"".into(),
    ];
    let collect = async move {
        let mut out = Vec::new();
        let mut reader = reader;
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut out)
            .await
            .unwrap();
        out
    };
    let (status, out) = tokio::join!(d.exec(&ExecTarget::AnyInstance, &argv, io), collect);
    let status = status.unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        "pw=hunter2-very-secret"
    );
    let commands: Vec<_> = s
        .emulator
        .history()
        .into_iter()
        .filter_map(|e| match e {
            HistoryEvent::Exec { command, .. } => Some(command),
            _ => None,
        })
        .collect();
    assert!(!commands.is_empty(), "the exec reached the API");
    for command in commands {
        assert!(
            !command.join(" ").contains("hunter2"),
            "a secret is in an exec command: {command:?}"
        );
    }
    // A non-zero exit is a status, not an error.
    let (status, _) = d
        .exec_output(
            &ExecTarget::AnyInstance,
            &["/bin/sh".into(), "-c".into(), "exit 7".into()],
        )
        .await
        .unwrap();
    assert_eq!(status.code, Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_release_is_named_and_snapshots_hold_no_env_values() {
    let s = setup(true).await;
    let d = driver(&s, |_| {}).await.unwrap();
    let target = d.info().target;
    assert!(
        target.contains("Helm release apidog") && target.contains("helm upgrade"),
        "{target}"
    );
    let snap = d.snapshot().await.unwrap();
    assert_eq!(snap.data["helm"], "apidog");
    let text = serde_json::to_string(&snap).unwrap();
    assert!(
        !text.contains("s3cr3t-template"),
        "the snapshot holds an env value: {text}"
    );
    assert!(
        text.contains("SECRET_IN_TEMPLATE"),
        "the snapshot keeps the env name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_fail_with_what_to_change() {
    let s = setup(false).await;
    let e = driver(&s, |c| c.container = Some("nope".into()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}", e.report());
    assert!(e.report().contains("has only c"), "{}", e.report());
    let e = driver(&s, |c| c.deployment = Some("missing".into()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{}", e.report());
    let e = driver(&s, |c| c.statefulset = Some("w".into()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}", e.report());
    let e = driver(&s, |c| c.deployment = Some("Bad_Name".into()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}", e.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_round_trips_through_tar_where_the_image_has_it() {
    let s = setup(false).await;
    driver(&s, |_| {}).await.unwrap().scale(1).await.unwrap();
    // Connected while a pod runs: the probe finds the (host's) tar.
    let d = driver(&s, |_| {}).await.unwrap();
    assert!(d.capabilities().archive, "tar was not detected");
    let from = tempfile::tempdir().unwrap();
    std::fs::create_dir(from.path().join("sub")).unwrap();
    std::fs::write(from.path().join("sub/a.txt"), "alpha").unwrap();
    std::fs::write(from.path().join("b.txt"), "beta").unwrap();
    let to = tempfile::tempdir().unwrap();
    std::fs::write(to.path().join("stale.txt"), "gone after unarchive").unwrap();

    let tar = d
        .archive(&ExecTarget::AnyInstance, from.path().to_str().unwrap())
        .await
        .unwrap();
    d.unarchive(&ExecTarget::AnyInstance, to.path().to_str().unwrap(), tar)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(to.path().join("sub/a.txt")).unwrap(),
        "alpha"
    );
    assert_eq!(
        std::fs::read_to_string(to.path().join("b.txt")).unwrap(),
        "beta"
    );
    assert!(
        !to.path().join("stale.txt").exists(),
        "unarchive left an entry the archive does not have"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tar_makes_the_archive_stream_fail() {
    let s = setup(false).await;
    driver(&s, |_| {}).await.unwrap().scale(1).await.unwrap();
    let d = driver(&s, |_| {}).await.unwrap();
    let mut tar = d
        .archive(&ExecTarget::AnyInstance, "/nonexistent/cutover-path")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut tar, &mut out).await;
    assert!(read.is_err(), "a failed tar read as a whole archive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_while_held_and_released_by_unlock() {
    let s = setup(false).await;
    let d = driver(&s, |c| c.lease_seconds = Some(3)).await.unwrap();
    let holder = cutover_core::Holder {
        run: "run-1".into(),
        host: "here".into(),
        pid: 42,
    };
    d.lock(&holder).await.unwrap();
    let lease = || {
        s.emulator
            .object("leases", "ns", &d.lease_name())
            .expect("the Lease")
    };
    let first = lease();
    assert_eq!(first["spec"]["holderIdentity"], "run-1");
    assert_eq!(first["spec"]["leaseDurationSeconds"], 3);
    assert_eq!(first["metadata"]["annotations"]["cutover.io/pid"], "42");
    // Renewed in the background (every second here), without another lock call.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lease()["spec"]["renewTime"] == first["spec"]["renewTime"] {
        assert!(
            std::time::Instant::now() < deadline,
            "the Lease was never renewed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.unlock(&holder).await.unwrap();
    assert!(
        lease()["spec"]["holderIdentity"].is_null(),
        "unlock released it"
    );
    let other = cutover_core::Holder {
        run: "run-2".into(),
        ..holder
    };
    d.lock(&other)
        .await
        .expect("another run takes a released Lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_past_its_progress_deadline_fails_scale() {
    // Old pods of an image the emulator runs nothing for (Ready at once); the new image is
    // the specimen without any database configuration, so its pods crash-loop and never
    // become Ready: the rolling update cannot take an old pod away.
    let env = cutover_tests::TestEnv::get();
    let emulator = Emulator::start(EmulatorConfig {
        specimen_repository: Some(env.specimen_image().to_string()),
        specimen_bin: Some(env.specimen_bin().to_path_buf()),
        specimen_tags: env
            .specimen_versions()
            .iter()
            .map(|v| v.to_string())
            .collect(),
        ready_delay: Duration::from_millis(50),
    })
    .await
    .unwrap();
    emulator
        .create(
            "deployments",
            "ns",
            json!({
                "metadata": {"name": "w"},
                "spec": {"replicas": 2, "progressDeadlineSeconds": 2,
                    "selector": {"matchLabels": {"app": "w"}},
                    "template": {"metadata": {"labels": {"app": "w"}},
                        "spec": {"containers": [{"name": "c", "image": "tools:1"}]}}},
            }),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), emulator.kubeconfig("ns")).unwrap();
    let mut config = KubernetesConfig::deployment("w");
    config.kubeconfig = Some(dir.path().join("kubeconfig"));
    let d = connect(config).await.unwrap();
    d.scale(2).await.unwrap();

    let new: cutover_core::ImageRef = env.specimen_tag("1.0.0").parse().unwrap();
    d.set_image(&new).await.unwrap();
    let e = d
        .scale(2)
        .await
        .expect_err("a rollout that cannot progress");
    assert!(
        e.report().contains("progress deadline"),
        "not the ProgressDeadlineExceeded failure: {}",
        e.report()
    );
}
