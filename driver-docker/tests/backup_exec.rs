//! The dump backup engine with its tools run inside a container through the Docker
//! driver's `exec` (`[database] exec_in`), against the real PostgreSQL 15 and MariaDB
//! 10.11 of `scripts/testenv up`: backup, destroy, restore, identical fingerprint.
//!
//! The tools container is the specimen image (no shell, no tools of its own) with the
//! host's `/usr`, `/lib`, `/lib64` and `/etc` mounted read-only, on the host network so
//! that it reaches the test databases on loopback — as an operator's database container
//! would bring its own `pg_dump` or `mariadb-dump`.

use std::sync::Arc;

use cutover_backup::{Database, DatabaseEngine, DumpBackups, LocalStore, ToolSite};
use cutover_core::{BackupScope, Backups, Driver, EventSink, ExecTarget, ImageRef};
use cutover_driver_docker::{DockerConfig, connect};
use cutover_tests::{Engine, ScratchDatabase, TestEnv, docker, unique_name};

const APP: &str = "apidog";

/// The tools container, removed on drop.
struct Tools(String);

impl Tools {
    fn start() -> Self {
        let env = TestEnv::get();
        let name = unique_name("ctdx").replace('_', "-");
        let image = env.specimen_tag("1.0.0");
        docker(&["pull", "-q", &image]);
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--label",
            "cutover-test=1",
            "-v",
            "/usr:/usr:ro",
            "-v",
            "/lib:/lib:ro",
            "-v",
            "/lib64:/lib64:ro",
            "-v",
            "/etc:/etc:ro",
            "--entrypoint",
            "/usr/bin/sleep",
            &image,
            "infinity",
        ]);
        Tools(name)
    }
}

impl Drop for Tools {
    fn drop(&mut self) {
        let _ = cutover_tests::docker_command()
            .args(["rm", "-f", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_with_the_tools_run_through_docker_exec_on_both_engines() {
    let tools = Tools::start();
    let driver = connect(DockerConfig {
        host: Some(TestEnv::get().docker_host().to_string()),
        ..DockerConfig::containers(&tools.0)
    })
    .await
    .expect("connecting to the test engine");
    for engine in Engine::ALL {
        let scratch = ScratchDatabase::create(engine).await;
        scratch.seed_varied().await;
        let (url, password) = scratch.credentials();
        let kind = match engine {
            Engine::Postgres => DatabaseEngine::Postgres,
            Engine::MariaDb => DatabaseEngine::Mariadb,
        };
        let site = ToolSite::Exec(ExecTarget::Named(tools.0.clone()));
        let database = Database::new(kind, &url, Some(password), site).unwrap();
        let store = tempfile::tempdir().unwrap();
        let backups = DumpBackups::new(
            database.clone(),
            Arc::new(LocalStore::new(store.path())),
            vec![],
            ExecTarget::AnyInstance,
        );
        let fingerprint = || async { database.connect().await.unwrap().fingerprint().await };
        let before = fingerprint().await.unwrap();

        backups
            .preflight(&driver)
            .await
            .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
        let image: ImageRef = "registry.test/apidog/server:v2.7.80".parse().unwrap();
        let taken = backups
            .backup(
                BackupScope {
                    app: APP,
                    image: &image,
                    snapshot: None,
                    driver: &driver as &dyn Driver,
                },
                &EventSink::discard(),
            )
            .await
            .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));

        scratch.execute("DROP VIEW big_orders").await;
        scratch.execute("DELETE FROM audit").await;
        scratch
            .execute("UPDATE customers SET name = 'gone' WHERE id < 100")
            .await;
        assert_ne!(fingerprint().await.unwrap(), before, "{engine}");

        backups
            .restore(
                &taken.id,
                APP,
                &cutover_core::journal::new_run_id(),
                &driver,
                &EventSink::discard(),
            )
            .await
            .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
        assert_eq!(fingerprint().await.unwrap(), before, "{engine}");
    }

    // A container that does not exist is named in the error, before any dump.
    let missing = Database::new(
        DatabaseEngine::Postgres,
        "postgres://nobody@127.0.0.1:5432/nothing",
        None,
        ToolSite::Exec(ExecTarget::Named(format!("{}-gone", tools.0))),
    )
    .unwrap();
    let err = missing.check_tools(&driver).await.unwrap_err();
    assert!(err.to_string().contains("-gone"), "{}", err.report());
}
