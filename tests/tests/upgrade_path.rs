//! The specimen migrates 1.0.0 → 1.1.0 → 1.2.0 keeping every item, on both engines, and an
//! old release refuses the newer schema (why an image-only rollback is not enough).

use std::time::Duration;

use cutover_tests::{Engine, ScratchDatabase, SpecimenProcess};

const START: Duration = Duration::from_secs(60);

/// Text that needs 4-byte UTF-8 (utf8mb4 on MariaDB), quotes and an empty body.
const ITEMS: [(&str, &str); 5] = [
    ("Grüße", "Ünïcödé in the Latin-1 range"),
    ("emoji 🎉", "𝄞 musical symbol, 🐘 and 🐬"),
    ("漢字", "CJK text — with an em dash"),
    ("O'Brien \"quoted\"", "back\\slash; semi;colon"),
    ("empty", ""),
];

async fn upgrade_keeps_every_item(engine: Engine) {
    let db = ScratchDatabase::create(engine).await;

    let mut v100 = SpecimenProcess::start("1.0.0", &db, &[]);
    v100.wait_healthy(START).await;
    for (name, body) in ITEMS {
        v100.client().create_item(name, body).await;
    }
    let original = v100.client().items().await;
    assert_eq!(original.count, ITEMS.len());
    let names: Vec<&str> = original.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ITEMS.map(|(n, _)| n),
        "text must round-trip unchanged"
    );
    assert_eq!(v100.stop().await, 0);

    let mut v110 = SpecimenProcess::start("1.1.0", &db, &[]);
    v110.wait_healthy(START).await;
    assert_eq!(v110.client().items().await, original);
    assert_eq!(v110.client().version().await["schema"], "1.1.0");
    assert!(db.has_column("items", "name_folded").await);
    assert_eq!(
        db.count("item_audit").await,
        ITEMS.len() as i64,
        "one audit row per item"
    );
    v110.client().create_item("added by 1.1.0", "body").await;
    let after_110 = v110.client().items().await;
    assert_eq!(after_110.count, ITEMS.len() + 1);
    assert_ne!(
        after_110.checksum, original.checksum,
        "the checksum covers every item"
    );
    assert_eq!(v110.stop().await, 0);

    let mut v120 = SpecimenProcess::start("1.2.0", &db, &[]);
    v120.wait_healthy(START).await;
    assert_eq!(v120.client().items().await, after_110);
    assert!(db.has_column("items", "body_bytes").await);
    let unmeasured = db
        .rows("SELECT id FROM items WHERE body_bytes IS NULL")
        .await;
    assert!(unmeasured.is_empty(), "1.2.0 rewrote every row");
    assert_eq!(v120.stop().await, 0);

    let runs = db.migration_runs().await;
    let versions: Vec<&str> = runs.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(versions, ["1.0.0", "1.1.0", "1.2.0"], "{runs:#?}");
    assert!(
        runs.iter()
            .all(|r| r.outcome == "ok" && r.finished_us.is_some()),
        "{runs:#?}"
    );
    assert!(
        !runs[0].overlaps(&runs[1]) && !runs[1].overlaps(&runs[2]),
        "{runs:#?}"
    );
    assert_eq!(db.applied_versions().await, ["1.0.0", "1.1.0", "1.2.0"]);

    // Going back to the old image alone fails on the migrated schema.
    let mut old = SpecimenProcess::start("1.0.0", &db, &[]);
    assert_eq!(old.wait_exit(START).await, 4, "{}", old.logs());
    assert!(
        old.logs().contains("newer than this release"),
        "{}",
        old.logs()
    );
}

#[tokio::test]
async fn upgrade_keeps_every_item_on_postgres() {
    upgrade_keeps_every_item(Engine::Postgres).await;
}

#[tokio::test]
async fn upgrade_keeps_every_item_on_mariadb() {
    upgrade_keeps_every_item(Engine::MariaDb).await;
}
