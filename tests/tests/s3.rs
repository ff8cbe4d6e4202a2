//! The dump backup engine storing into S3-compatible object storage (`S3Store`, core
//! feature `s3`) served by moto on loopback, with the real PostgreSQL and MariaDB:
//! round trips, a damaged part refused, an interrupted backup never visible, retention,
//! and the sweep of what interrupted backups left.

use std::sync::Arc;

use cutover_backup::{
    Database, DatabaseEngine, DumpBackups, S3Credentials, S3Settings, S3Store, Store, ToolSite,
    UNFINISHED_MIN_AGE,
};
use cutover_core::testkit::{FakeConfig, FakeDriver};
use cutover_core::{BackupScope, Backups, Driver, ErrorKind, EventSink, ExecTarget, ImageRef};
use cutover_tests::{Engine, S3Server, ScratchDatabase};

const APP: &str = "apidog";

fn store(server: &S3Server, prefix: &str) -> S3Store {
    S3Store::with_credentials(
        &format!("s3://{}/{prefix}", server.bucket()),
        &S3Settings {
            endpoint: Some(server.endpoint().to_string()),
            region: Some("us-east-1".into()),
            allow_http: true,
        },
        S3Credentials {
            key_id: "testing".into(),
            secret: "testing-secret".into(),
        },
    )
    .expect("a valid store URL")
}

fn database(scratch: &ScratchDatabase) -> Database {
    let (url, password) = scratch.credentials();
    let engine = match scratch.engine() {
        Engine::Postgres => DatabaseEngine::Postgres,
        Engine::MariaDb => DatabaseEngine::Mariadb,
    };
    Database::new(engine, &url, Some(password), ToolSite::Local).unwrap()
}

async fn backup(
    backups: &DumpBackups,
    driver: &FakeDriver,
) -> cutover_core::Result<cutover_core::BackupRef> {
    let image: ImageRef = "registry.test/apidog/server:v2.7.80".parse().unwrap();
    backups
        .backup(
            BackupScope {
                app: APP,
                image: &image,
                snapshot: None,
                driver: driver as &dyn Driver,
            },
            &EventSink::discard(),
        )
        .await
}

fn fake_driver() -> FakeDriver {
    FakeDriver::new(FakeConfig::new(
        "registry.test/apidog/server:v2.7.80".parse().unwrap(),
        1,
        vec![],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_round_trip_through_an_s3_compatible_store_on_both_engines() {
    let server = S3Server::start().await;
    let driver = fake_driver();
    for engine in Engine::ALL {
        let scratch = ScratchDatabase::create(engine).await;
        scratch.seed_varied().await;
        let database = database(&scratch);
        let s3 = Arc::new(store(&server, &format!("site-a/{engine}")));
        let backups = DumpBackups::new(
            database.clone(),
            s3.clone(),
            vec![],
            ExecTarget::AnyInstance,
        );
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

        let taken = backup(&backups, &driver)
            .await
            .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
        assert_eq!(s3.list().await.unwrap(), vec![taken.id.clone()], "{engine}");
        backups.verify(&taken.id, APP).await.unwrap();

        scratch.execute("DELETE FROM audit").await;
        scratch
            .execute("UPDATE customers SET name = 'gone' WHERE id < 100")
            .await;
        assert_ne!(fingerprint().await, before);
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
        assert_eq!(fingerprint().await, before, "{engine}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_part_is_refused_and_partial_backups_are_never_listed() {
    let server = S3Server::start().await;
    let driver = fake_driver();
    let scratch = ScratchDatabase::create(Engine::Postgres).await;
    scratch.seed_varied().await;
    let database = database(&scratch);
    let s3 = Arc::new(store(&server, "prod"));
    let backups = DumpBackups::new(
        database.clone(),
        s3.clone(),
        vec![],
        ExecTarget::AnyInstance,
    );
    let taken = backup(&backups, &driver).await.unwrap();
    let fingerprint = || async {
        database
            .connect()
            .await
            .unwrap()
            .fingerprint()
            .await
            .unwrap()
    };
    let current = fingerprint().await;

    // Someone overwrites the dump: the checksum refuses it before the database is touched.
    let key = format!("prod/{}/database.zst", taken.id);
    assert!(
        server.keys().await.contains(&key),
        "{:?}",
        server.keys().await
    );
    server.put_object(&key, b"not a dump".to_vec()).await;
    let refused = backups
        .restore(
            &taken.id,
            APP,
            &cutover_core::journal::new_run_id(),
            &driver,
            &EventSink::discard(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Integrity, "{}", refused.report());
    assert_eq!(fingerprint().await, current);

    // Parts without a manifest (a backup killed while uploading) are not a backup.
    server
        .put_object(
            "prod/20260101T000000Z-apidog-abcdef/database.zst",
            vec![1, 2, 3],
        )
        .await;
    assert_eq!(s3.list().await.unwrap(), vec![taken.id.clone()]);
    let orphan: cutover_core::BackupId = "20260101T000000Z-apidog-abcdef".parse().unwrap();
    assert_eq!(
        s3.manifest(&orphan).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(s3.read(&orphan, "database.zst").await.is_err());

    // Retention deletes whole backups, manifest first, and keeps the newest.
    let newer = backup(&backups, &driver).await.unwrap();
    let pruned = backups.prune(APP, 1, &[]).await.unwrap();
    assert_eq!(pruned, vec![taken.id.clone()]);
    assert_eq!(s3.list().await.unwrap(), vec![newer.id.clone()]);
    assert!(
        !server
            .keys()
            .await
            .iter()
            .any(|k| k.contains(taken.id.as_str())),
        "{:?}",
        server.keys().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_deletes_manifest_less_parts_once_old_enough_and_never_a_backup() {
    let server = S3Server::start().await;
    let driver = fake_driver();
    let scratch = ScratchDatabase::create(Engine::Postgres).await;
    scratch
        .execute("CREATE TABLE items (id INT PRIMARY KEY, name TEXT)")
        .await;
    scratch.execute("INSERT INTO items VALUES (1, 'one')").await;
    let s3 = Arc::new(store(&server, "site/a"));
    let backups = DumpBackups::new(
        database(&scratch),
        s3.clone(),
        vec![],
        ExecTarget::AnyInstance,
    );
    let taken = backup(&backups, &driver).await.unwrap();

    // A backup killed mid-upload (two parts, no manifest), one whose deletion stopped
    // after its manifest (referenced by a run that has not ended), and foreign objects.
    let killed = "20260101T000000Z-apidog-abcdef";
    let needed = "20260102T000000Z-apidog-123456";
    for (key, len) in [
        (format!("site/a/{killed}/database.zst"), 300),
        (format!("site/a/{killed}/storage-0.tar.zst"), 200),
        (format!("site/a/{needed}/database.zst"), 100),
        ("site/a/README".to_string(), 10),
        ("site/a/not an id/x".to_string(), 10),
        (format!("site/b/{killed}/database.zst"), 10),
    ] {
        server.put_object(&key, vec![0; len]).await;
    }
    let before = server.keys().await;

    // Just written: the safe default leaves everything, since a backup may be uploading.
    assert_eq!(s3.unfinished(UNFINISHED_MIN_AGE).await.unwrap(), vec![]);
    assert_eq!(backups.sweep(&[]).await.unwrap(), vec![]);
    assert_eq!(server.keys().await, before);

    // moto cannot backdate last-modified, so the test sweeps with no minimum age.
    let found = s3.unfinished(std::time::Duration::ZERO).await.unwrap();
    let names: Vec<_> = found.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, [killed, needed], "{found:?}");
    let swept = backups
        .clone()
        .with_unfinished_min_age(std::time::Duration::ZERO)
        .sweep(&[needed.parse().unwrap()])
        .await
        .unwrap();
    assert_eq!(
        swept,
        [cutover_core::backup::Swept {
            name: killed.into(),
            bytes: 500
        }]
    );
    let after = server.keys().await;
    let gone: Vec<_> = before.iter().filter(|k| !after.contains(k)).collect();
    assert_eq!(
        gone,
        [
            &format!("site/a/{killed}/database.zst"),
            &format!("site/a/{killed}/storage-0.tar.zst")
        ],
        "{after:?}"
    );
    assert_eq!(s3.list().await.unwrap(), vec![taken.id.clone()]);
    backups.verify(&taken.id, APP).await.unwrap();

    // A complete backup is never discarded, even when asked by name.
    let forged = cutover_backup::Unfinished {
        name: taken.id.to_string(),
        id: Some(taken.id.clone()),
        bytes: 0,
        modified: std::time::SystemTime::now(),
    };
    let refused = s3.discard(&forged).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        ErrorKind::InvalidInput,
        "{}",
        refused.report()
    );
    backups.verify(&taken.id, APP).await.unwrap();
}

#[tokio::test]
async fn store_urls_are_checked() {
    for (url, why) in [
        ("s3://", "bucket"),
        ("s3:///prefix", "bucket"),
        ("s3://bucket/a/../b", ".."),
        ("gs://bucket", "s3://"),
    ] {
        let e = S3Store::new(url, &S3Settings::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}");
        assert!(e.to_string().contains(why), "{url}: {e}");
    }
}
