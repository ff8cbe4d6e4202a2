//! A specimen Deployment on the Kubernetes API emulator, for the Kubernetes driver's
//! tests: the emulator runs each pod as a specimen process against a scratch PostgreSQL
//! database, plus a `toolbox` pod (an image the emulator runs nothing for, whose exec runs
//! host binaries) for exec tests.

#![allow(dead_code)]

use std::ops::Deref;
use std::time::{Duration, Instant};

use cutover_core::testkit::Fixture;
use cutover_core::testkit::conformance::ArchiveSpot;
use cutover_core::{Driver, ExecTarget, ImageRef};
use cutover_driver_k8s::{KubernetesConfig, KubernetesDriver, WorkloadKind, connect};
use cutover_kube_emulator::{Emulator, EmulatorConfig};
use cutover_tests::{Engine, ScratchDatabase, TestEnv, unique_name};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

pub const NAMESPACE: &str = "cutover-test";
pub const HEALTHY: Duration = Duration::from_secs(60);

pub fn image(version: &str) -> ImageRef {
    TestEnv::get().specimen_tag(version).parse().unwrap()
}

/// The emulator, the database and a driver for the Deployment `name`.
pub struct Cluster {
    pub emulator: Emulator,
    pub db: ScratchDatabase,
    pub name: String,
    pub dir: tempfile::TempDir,
    pub driver: KubernetesDriver,
}

pub fn emulator_config() -> EmulatorConfig {
    let env = TestEnv::get();
    EmulatorConfig {
        specimen_repository: Some(env.specimen_image().to_string()),
        specimen_bin: Some(env.specimen_bin().to_path_buf()),
        specimen_tags: env
            .specimen_versions()
            .iter()
            .map(|v| v.to_string())
            .collect(),
        ..EmulatorConfig::default()
    }
}

/// The Deployment manifest of the specimen, Apidog-style.
pub fn manifest(name: &str, image: &str, replicas: u32, env: &[(String, String)]) -> Deployment {
    let env: Vec<_> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app", "image": image, "env": env,
                    // What a real kubelet probes; the emulator probes /health on the
                    // pod's own port by itself.
                    "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 1},
                }]},
            },
        },
    }))
    .unwrap()
}

impl Cluster {
    /// A Deployment of `replicas` pods of `version`, with `extra` environment, all Ready.
    pub async fn start(version: &str, replicas: u32, extra: &[(&str, &str)]) -> Self {
        Self::start_kind(WorkloadKind::Deployment, version, replicas, extra).await
    }

    /// The same as a StatefulSet (`Parallel` pod management, `RollingUpdate`).
    pub async fn start_kind(
        kind: WorkloadKind,
        version: &str,
        replicas: u32,
        extra: &[(&str, &str)],
    ) -> Self {
        let emulator = Emulator::start(emulator_config())
            .await
            .expect("starting the emulator");
        let db = ScratchDatabase::create(Engine::Postgres).await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, emulator.kubeconfig(NAMESPACE)).unwrap();
        let name = unique_name("web").replace('_', "-").to_lowercase();
        let mut env = db.app_env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));

        let client = client(&kubeconfig).await;
        let deployment = manifest(&name, &image(version).to_string(), replicas, &env);
        match kind {
            WorkloadKind::Deployment => {
                Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
                    .create(&PostParams::default(), &deployment)
                    .await
                    .expect("creating the deployment");
            }
            WorkloadKind::StatefulSet => {
                let mut value = serde_json::to_value(&deployment).unwrap();
                value["kind"] = json!("StatefulSet");
                let spec = value["spec"].as_object_mut().unwrap();
                spec.remove("strategy");
                spec.insert("serviceName".into(), json!(name));
                spec.insert("podManagementPolicy".into(), json!("Parallel"));
                spec.insert("updateStrategy".into(), json!({"type": "RollingUpdate"}));
                let set: StatefulSet = serde_json::from_value(value).unwrap();
                Api::<StatefulSet>::namespaced(client.clone(), NAMESPACE)
                    .create(&PostParams::default(), &set)
                    .await
                    .expect("creating the statefulset");
            }
        }
        let toolbox: Pod = serde_json::from_value(json!({
            "metadata": {"name": "toolbox"},
            "spec": {"containers": [{"name": "toolbox", "image": "toolbox:1"}]},
        }))
        .unwrap();
        Api::<Pod>::namespaced(client, NAMESPACE)
            .create(&PostParams::default(), &toolbox)
            .await
            .expect("creating the toolbox pod");

        let mut config = KubernetesConfig::deployment(&name);
        if kind == WorkloadKind::StatefulSet {
            config.deployment = None;
            config.statefulset = Some(name.clone());
        }
        config.kubeconfig = Some(kubeconfig);
        config.container = Some("app".into());
        config.rollout_timeout_secs = Some(120);
        let driver = connect(config).await.expect("connecting to the emulator");
        let cluster = Cluster {
            emulator,
            db,
            name,
            dir,
            driver,
        };
        cluster.wait_ready(version, replicas as usize).await;
        cluster
    }

    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Another driver on the same Deployment (a second cutover process).
    pub async fn second_driver(&self) -> KubernetesDriver {
        let mut config = KubernetesConfig::deployment(&self.name);
        config.kubeconfig = Some(self.kubeconfig());
        config.container = Some("app".into());
        connect(config).await.expect("connecting a second driver")
    }

    /// The conformance fixture. `new` is 1.0.0-unhealthy, which keeps the 1.0.0 schema:
    /// after 1.1.0 had migrated, 1.0.0 would refuse to start (exit 4, an image-only
    /// rollback), and the suite restores images without restoring the database.
    ///
    /// No archive directory: the workload's pods run the specimen image, `FROM scratch`,
    /// without the `tar` the driver's archive runs in them, so the driver reports no
    /// `archive` capability and the case checks its typed unsupported errors.
    /// `conformance_archive.rs` runs the archive case on a workload whose image has tar.
    pub fn fixture(&self, replicas: u32) -> Fixture {
        Fixture {
            old: image("1.0.0"),
            new: image("1.0.0-unhealthy"),
            missing: image("0.0.0-missing"),
            replicas,
            exec_at: ExecTarget::Named("toolbox".into()),
            echo: vec!["/usr/bin/echo".into(), "conformance".into()],
            archive: ArchiveSpot::Unavailable(
                "the specimen image has no tar, so the driver has no archive capability",
            ),
        }
    }

    /// Waits until `n` pods of `version` are Ready (by the driver's own observation).
    pub async fn wait_ready(&self, version: &str, n: usize) {
        let deadline = Instant::now() + HEALTHY;
        loop {
            let o = self.driver.observe().await.expect("observe");
            if o.ready_of(&image(version)) >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {} pods of {version} ready after {HEALTHY:?}: {:?}\nhistory: {:?}",
                o.ready_of(&image(version)),
                o.instances,
                self.emulator.history()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

impl Deref for Cluster {
    type Target = KubernetesDriver;
    fn deref(&self) -> &KubernetesDriver {
        &self.driver
    }
}
