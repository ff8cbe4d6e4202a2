//! Two 1.1.0 instances started at once on a 1.0.0 database both migrate, as the vendor's
//! application would: the migration record shows the overlap and the data shows the
//! damage. This is what cutover's "one instance migrates alone" must prevent.

use std::time::Duration;

use cutover_tests::{Engine, ScratchDatabase, SpecimenProcess};

const START: Duration = Duration::from_secs(60);
const ITEMS: i64 = 4;

async fn two_instances_migrating_at_once_are_detected(engine: Engine) {
    let db = ScratchDatabase::create(engine).await;
    let mut v100 = SpecimenProcess::start("1.0.0", &db, &[]);
    v100.wait_healthy(START).await;
    for n in 0..ITEMS {
        v100.client()
            .create_item(&format!("item {n}"), "body")
            .await;
    }
    let before = v100.client().items().await;
    assert_eq!(v100.stop().await, 0);

    // The stretch keeps each migration open long enough that both start before either ends.
    let stretch = [("SPECIMEN_MIGRATION_SECONDS", "3")];
    let mut first = SpecimenProcess::start(
        "1.1.0",
        &db,
        &[&stretch[..], &[("SPECIMEN_INSTANCE", "first")]].concat(),
    );
    let mut second = SpecimenProcess::start(
        "1.1.0",
        &db,
        &[&stretch[..], &[("SPECIMEN_INSTANCE", "second")]].concat(),
    );
    first.wait_healthy(START).await;
    second.wait_healthy(START).await;

    let runs: Vec<_> = db
        .migration_runs()
        .await
        .into_iter()
        .filter(|r| r.version == "1.1.0")
        .collect();
    assert_eq!(runs.len(), 2, "both instances migrated: {runs:#?}");
    let mut instances: Vec<&str> = runs.iter().map(|r| r.instance.as_str()).collect();
    instances.sort_unstable();
    assert_eq!(instances, ["first", "second"]);
    assert!(
        runs[0].overlaps(&runs[1]),
        "the two runs overlapped: {runs:#?}"
    );

    // The damage: every item audited twice, the version applied twice.
    assert_eq!(db.count("item_audit").await, 2 * ITEMS);
    let applied = db.applied_versions().await;
    assert_eq!(
        applied.iter().filter(|v| *v == "1.1.0").count(),
        2,
        "{applied:?}"
    );
    // The items themselves survive; only the migration's own data is wrong.
    assert_eq!(first.client().items().await, before);
}

#[tokio::test]
async fn two_instances_migrating_at_once_are_detected_on_postgres() {
    two_instances_migrating_at_once_are_detected(Engine::Postgres).await;
}

#[tokio::test]
async fn two_instances_migrating_at_once_are_detected_on_mariadb() {
    two_instances_migrating_at_once_are_detected(Engine::MariaDb).await;
}
