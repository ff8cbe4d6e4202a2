//! Backups of data written outside this project's habits (`cutover_tests::corpus`): for
//! each engine, backup → damage → restore must give back cutover's fingerprint and what
//! the engine's own client sees, and `--restore-test` must agree with both.

use std::sync::Arc;

use cutover_backup::{Database, DatabaseEngine, DumpBackups, LocalStore, ToolSite};
use cutover_core::testkit::{FakeConfig, FakeDriver};
use cutover_core::{BackupScope, Backups, Driver, EventSink, ExecTarget, ImageRef};
use cutover_tests::{Engine, ScratchDatabase};

const APP: &str = "apidog";

fn database(scratch: &ScratchDatabase) -> Database {
    let (url, password) = scratch.credentials();
    let engine = match scratch.engine() {
        Engine::Postgres => DatabaseEngine::Postgres,
        Engine::MariaDb => DatabaseEngine::Mariadb,
    };
    Database::new(engine, &url, Some(password), ToolSite::Local).expect("test database URL")
}

async fn round_trip(engine: Engine) {
    let scratch = ScratchDatabase::create(engine).await;
    // MariaDB: a 7 MiB row, whose hex dump (14 MiB) still fits the default 16 MiB
    // max_allowed_packet; the rows that do not fit are tested in backups.rs.
    scratch.seed_corpus(7 << 20).await;
    let database = database(&scratch);
    let dir = tempfile::tempdir().unwrap();
    let backups = DumpBackups::new(
        database.clone(),
        Arc::new(LocalStore::new(dir.path().join("backups"))),
        vec![],
        ExecTarget::AnyInstance,
    );
    let image: ImageRef = "registry.test/apidog/server:v2.7.80".parse().unwrap();
    let driver = FakeDriver::new(FakeConfig::new(image.clone(), 1, vec![]));
    let fingerprint = || async {
        database
            .connect()
            .await
            .unwrap()
            .fingerprint()
            .await
            .unwrap()
    };

    let before = fingerprint().await;
    let independent = scratch.independent_state();
    let objects = before.objects.as_ref().expect("objects are fingerprinted");
    assert!(objects.len() >= 8, "{engine}: {objects:?}");
    backups.preflight(&driver).await.unwrap();
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

    scratch.damage_corpus().await;
    let damaged = fingerprint().await;
    let found = before.differences(&damaged);
    // Every kind of damage is seen: rows, definitions, counters, dropped and new objects.
    for expected in [
        "kinds (",
        "(definition)",
        "(missing)",
        "(unexpected)",
        "expected",
    ] {
        assert!(
            found.iter().any(|d| d.contains(expected)),
            "{engine}: no difference with {expected:?} in {found:?}"
        );
    }
    assert!(
        !scratch
            .independent_state()
            .differences(&independent)
            .is_empty()
    );

    backups
        .restore(
            &taken.id,
            APP,
            &cutover_core::journal::new_run_id(),
            &driver,
            &EventSink::discard(),
        )
        .await
        .unwrap_or_else(|e| panic!("{engine} restore: {}", e.report()));
    let after = fingerprint().await;
    assert_eq!(before.differences(&after), Vec::<String>::new(), "{engine}");
    assert_eq!(after, before, "{engine}");
    let again = scratch.independent_state();
    assert_eq!(
        independent.differences(&again),
        Vec::<String>::new(),
        "{engine}: the engine's own client sees other data after the restore"
    );

    backups
        .restore_test(&taken.id, APP, &driver, &EventSink::discard())
        .await
        .unwrap_or_else(|e| panic!("{engine} restore-test: {}", e.report()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_survives_backup_damage_and_restore_on_postgres() {
    round_trip(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_survives_backup_damage_and_restore_on_mariadb() {
    round_trip(Engine::MariaDb).await;
}
