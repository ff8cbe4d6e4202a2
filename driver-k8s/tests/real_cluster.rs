//! The upgrade of `engine.rs` against a real cluster. Ignored unless asked for:
//!
//! ```sh
//! CUTOVER_TEST_KUBECONFIG=~/.kube/config \
//! CUTOVER_TEST_K8S_IMAGE=registry.example.com/cutover/specimen \
//! CUTOVER_TEST_K8S_DATABASE_URL=postgres://user:password@10.0.0.5:5432/specimen \
//!   cargo nextest run -p cutover-driver-k8s --test real_cluster --run-ignored all
//! ```
//!
//! - `CUTOVER_TEST_K8S_IMAGE`: the specimen images (`scripts/testenv` builds them; push
//!   tags `1.0.0` and `1.1.0` where the cluster can pull them);
//! - `CUTOVER_TEST_K8S_DATABASE_URL`: an empty PostgreSQL database that both the pods and
//!   this machine reach at that address (`pg_dump` runs here);
//! - `CUTOVER_TEST_K8S_NAMESPACE` (default `default`): where the test Deployment goes.
//!
//! A missing variable fails the test with a message naming it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover_backup::testkit::dump_engine;
use cutover_backup::{Database, DatabaseEngine, ToolSite};
use cutover_core::{BackupMode, Driver, ImageRef, Outcome, Plan};
use cutover_driver_k8s::{KubernetesConfig, connect};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, PostParams};

fn var(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| {
        panic!("{key} is not set: the real-cluster test needs it (see the top of driver-k8s/tests/real_cluster.rs and the README)")
    })
}

/// Deletes the test Deployment when the test ends, passed or not.
struct Cleanup(Api<Deployment>, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (api, name) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move { api.delete(&name, &DeleteParams::default()).await })
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: set CUTOVER_TEST_KUBECONFIG (see the README)"]
async fn upgrade_with_three_replicas_on_a_real_cluster() {
    let kubeconfig = std::path::PathBuf::from(var("CUTOVER_TEST_KUBECONFIG"));
    let repository = var("CUTOVER_TEST_K8S_IMAGE");
    let database_url = var("CUTOVER_TEST_K8S_DATABASE_URL");
    let namespace =
        std::env::var("CUTOVER_TEST_K8S_NAMESPACE").unwrap_or_else(|_| "default".into());
    let image = |v: &str| -> ImageRef { format!("{repository}:{v}").parse().unwrap() };
    let name = cutover_tests::unique_name("cutover-e2e")
        .replace('_', "-")
        .to_lowercase();

    let client = common::client(&kubeconfig).await;
    let deployments: Api<Deployment> = Api::namespaced(client, &namespace);
    let manifest = common::manifest(
        &name,
        &image("1.0.0").to_string(),
        3,
        &[("DATABASE_URL".to_string(), database_url.clone())],
    );
    deployments
        .create(&PostParams::default(), &manifest)
        .await
        .expect("creating the test deployment");
    let _cleanup = Cleanup(deployments.clone(), name.clone());

    let mut config = KubernetesConfig::deployment(&name);
    config.kubeconfig = Some(kubeconfig);
    config.namespace = Some(namespace);
    config.container = Some("app".into());
    let driver = connect(config).await.expect("connecting to the cluster");
    let deadline = Instant::now() + Duration::from_secs(300);
    while driver.observe().await.unwrap().ready_of(&image("1.0.0")) < 3 {
        assert!(
            Instant::now() < deadline,
            "1.0.0 not ready on the cluster after 5 minutes"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let (scheme, rest) = database_url.split_once("://").unwrap();
    let (user_info, host_path) = rest.rsplit_once('@').unwrap();
    let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
    let database = Database::new(
        DatabaseEngine::Postgres,
        &format!("{scheme}://{user}@{host_path}"),
        Some(password.to_string()),
        ToolSite::Local,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = dump_engine(
        Arc::new(driver.clone()),
        database,
        &name,
        Duration::from_secs(300),
        dir.path(),
    )
    .await
    .unwrap();
    let done = engine
        .start(Plan::Upgrade {
            to: image("1.1.0"),
            backup: BackupMode::Offline,
            replicas: None,
            allow_downgrade: false,
            hooks: Default::default(),
        })
        .await
        .expect("the journal works");
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);

    let o = driver.observe().await.unwrap();
    assert_eq!(o.image, image("1.1.0"));
    assert_eq!(o.replicas, 3);
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let runs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM specimen_migrations WHERE version = '1.1.0'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(runs, 1, "exactly one migration run of 1.1.0");
}
