//! A `-broken` release applies part of its migration and exits non-zero, leaving a
//! half-migrated schema that starting the fixed release does not repair.

use std::time::Duration;

use cutover_tests::{Engine, ScratchDatabase, SpecimenProcess};

const START: Duration = Duration::from_secs(60);
const ITEMS: i64 = 3;

async fn broken_release_leaves_a_half_migrated_schema(engine: Engine) {
    let db = ScratchDatabase::create(engine).await;
    let mut v100 = SpecimenProcess::start("1.0.0", &db, &[]);
    v100.wait_healthy(START).await;
    for n in 0..ITEMS {
        v100.client()
            .create_item(&format!("Item {n}"), "body")
            .await;
    }
    let before = v100.client().items().await;
    assert_eq!(v100.stop().await, 0);

    let mut broken = SpecimenProcess::start("1.1.0-broken", &db, &[]);
    assert_eq!(broken.wait_exit(START).await, 3, "{}", broken.logs());
    assert!(
        broken.logs().contains("event=migration_failed"),
        "{}",
        broken.logs()
    );

    // Half-migrated: the new column and the audit copy exist, the rewrite and the
    // version record do not.
    assert!(db.has_column("items", "name_folded").await);
    assert_eq!(db.count("item_audit").await, ITEMS);
    let unfolded = db
        .rows("SELECT id FROM items WHERE name_folded IS NULL")
        .await;
    assert_eq!(unfolded.len() as i64, ITEMS);
    assert_eq!(db.applied_versions().await, ["1.0.0"]);
    let last = db.migration_runs().await.pop().unwrap();
    assert_eq!(
        (last.version.as_str(), last.outcome.as_str()),
        ("1.1.0", "failed")
    );

    // The fixed release migrates on top and doubles the audit: only a restore repairs it.
    let mut fixed = SpecimenProcess::start("1.1.0", &db, &[]);
    fixed.wait_healthy(START).await;
    assert_eq!(db.count("item_audit").await, 2 * ITEMS);
    assert_eq!(fixed.client().items().await, before);
    assert_eq!(fixed.stop().await, 0);

    // 1.2.0-broken on the 1.1.0 schema: column added, version not recorded.
    let mut broken = SpecimenProcess::start("1.2.0-broken", &db, &[]);
    assert_eq!(broken.wait_exit(START).await, 3, "{}", broken.logs());
    assert!(db.has_column("items", "body_bytes").await);
    assert!(!db.applied_versions().await.contains(&"1.2.0".to_owned()));
}

#[tokio::test]
async fn broken_release_leaves_a_half_migrated_schema_on_postgres() {
    broken_release_leaves_a_half_migrated_schema(Engine::Postgres).await;
}

#[tokio::test]
async fn broken_release_leaves_a_half_migrated_schema_on_mariadb() {
    broken_release_leaves_a_half_migrated_schema(Engine::MariaDb).await;
}
