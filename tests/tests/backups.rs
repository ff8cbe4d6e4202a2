//! The dump backup engine against the real PostgreSQL 15 and MariaDB 10.11 servers of
//! `scripts/testenv up`: round trips of a generated database, refusals that touch nothing,
//! a full store, and passwords kept out of argv and files.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cutover_backup::{Database, DatabaseEngine, DumpBackups, LocalStore, Manifest, ToolSite};
use cutover_core::testkit::{FakeConfig, FakeDriver, Fault, FaultKind, Method};
use cutover_core::{BackupScope, Backups, Driver, ErrorKind, EventSink, ExecTarget, ImageRef};
use cutover_tests::{Engine, ScratchDatabase, TestEnv};

const APP: &str = "apidog";

/// The scratch database as cutover's config would name it.
fn database(scratch: &ScratchDatabase) -> Database {
    let (url, password) = scratch.credentials();
    let engine = match scratch.engine() {
        Engine::Postgres => DatabaseEngine::Postgres,
        Engine::MariaDb => DatabaseEngine::Mariadb,
    };
    Database::new(engine, &url, Some(password), ToolSite::Local).expect("test database URL")
}

struct Fixture {
    scratch: ScratchDatabase,
    database: Database,
    backups: DumpBackups,
    driver: FakeDriver,
    image: ImageRef,
    _store_dir: tempfile::TempDir,
    store_path: std::path::PathBuf,
}

async fn fixture(engine: Engine) -> Fixture {
    let f = empty_fixture(engine).await;
    f.scratch.seed_varied().await;
    f
}

async fn empty_fixture(engine: Engine) -> Fixture {
    fixture_of(ScratchDatabase::create(engine).await)
}

fn fixture_of(scratch: ScratchDatabase) -> Fixture {
    let database = database(&scratch);
    let store_dir = tempfile::tempdir().unwrap();
    let store_path = store_dir.path().join("backups");
    let backups = DumpBackups::new(
        database.clone(),
        Arc::new(LocalStore::new(&store_path)),
        vec![],
        ExecTarget::AnyInstance,
    );
    let image: ImageRef = "registry.test/apidog/server:v2.7.80".parse().unwrap();
    let driver = FakeDriver::new(FakeConfig::new(image.clone(), 1, vec![]));
    Fixture {
        scratch,
        database,
        backups,
        driver,
        image,
        _store_dir: store_dir,
        store_path,
    }
}

impl Fixture {
    /// Backs up and restores as `database` (another account of the same database), into
    /// `store` (else the fixture's).
    fn use_database(&mut self, database: Database, store: Option<&Path>) {
        if let Some(store) = store {
            self.store_path = store.to_path_buf();
        }
        self.database = database;
        self.backups = DumpBackups::new(
            self.database.clone(),
            Arc::new(LocalStore::new(&self.store_path)),
            vec![],
            ExecTarget::AnyInstance,
        );
    }

    /// Backs up and restores as the account at `url` (no password in it) of the same
    /// database.
    fn use_account(&mut self, url: &str, password: String) {
        let engine = match self.scratch.engine() {
            Engine::Postgres => DatabaseEngine::Postgres,
            Engine::MariaDb => DatabaseEngine::Mariadb,
        };
        let database = Database::new(engine, url, Some(password), ToolSite::Local).unwrap();
        self.use_database(database, None);
    }

    async fn backup(&self) -> cutover_core::Result<cutover_core::BackupRef> {
        self.backups
            .backup(
                BackupScope {
                    app: APP,
                    image: &self.image,
                    snapshot: None,
                    driver: &self.driver as &dyn Driver,
                },
                &EventSink::discard(),
            )
            .await
    }

    async fn fingerprint(&self) -> cutover_backup::Fingerprint {
        self.database
            .connect()
            .await
            .unwrap()
            .fingerprint()
            .await
            .unwrap()
    }

    fn manifest(&self, id: &cutover_core::BackupId) -> Manifest {
        let text = std::fs::read(self.store_path.join(id.as_str()).join("manifest.json")).unwrap();
        serde_json::from_slice(&text).unwrap()
    }

    async fn restore(&self, id: &cutover_core::BackupId, app: &str) -> cutover_core::Result<()> {
        self.backups
            .restore(
                id,
                app,
                &cutover_core::journal::new_run_id(),
                &self.driver,
                &EventSink::discard(),
            )
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroyed_database_is_restored_exactly_on_both_engines() {
    for engine in Engine::ALL {
        let f = fixture(engine).await;
        let before = f.fingerprint().await;
        assert!(before.tables.len() >= 4, "{engine}: {before:?}");
        f.backups.preflight(&f.driver).await.unwrap();
        let taken = f
            .backup()
            .await
            .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
        f.backups.verify(&taken.id, APP).await.unwrap();

        // Destroy: drop data and structure, add what a failed migration would leave.
        f.scratch.execute("DROP VIEW big_orders").await;
        f.scratch.execute("DELETE FROM audit").await;
        f.scratch.execute("DROP TABLE audit").await;
        f.scratch
            .execute("UPDATE customers SET name = 'gone' WHERE id < 100")
            .await;
        f.scratch
            .execute("CREATE TABLE half_migrated (id INT)")
            .await;
        assert_ne!(f.fingerprint().await, before);

        f.restore(&taken.id, APP)
            .await
            .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
        assert_eq!(f.fingerprint().await, before, "{engine}");
        assert_eq!(
            f.scratch.count("big_orders").await,
            f.scratch
                .rows("SELECT id FROM orders WHERE total > 500")
                .await
                .len() as i64
        );

        // And into a scratch database beside it, which is then dropped.
        f.backups
            .restore_test(&taken.id, APP, &f.driver, &EventSink::discard())
            .await
            .unwrap_or_else(|e| panic!("{engine} restore-test: {}", e.report()));
    }
}

/// What of a PostgreSQL database the fingerprint does not cover and a restore must still
/// give back: the public schema's owner, privileges and comment, the large objects, the
/// schemas and extensions.
async fn pg_surroundings(scratch: &ScratchDatabase) -> Vec<String> {
    let queries = [
        "SELECT nspowner::regrole::text || ' ' || COALESCE(nspacl::text, 'default') || ' ' || COALESCE(obj_description(oid, 'pg_namespace'), '') FROM pg_namespace WHERE nspname = 'public'",
        "SELECT COALESCE(string_agg(encode(lo_get(oid), 'escape'), ',' ORDER BY oid), '') FROM pg_largeobject_metadata",
        "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
        "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension",
    ];
    let mut out = Vec::new();
    for sql in queries {
        let rows = scratch.rows(sql).await;
        out.push(sqlx::Row::try_get::<String, _>(&rows[0], 0).unwrap());
    }
    out
}

/// Applications set up by the postgres image's defaults connect as the bootstrap
/// superuser `postgres`, whose objects PostgreSQL does not record as owned: `DROP OWNED`
/// refuses them ("required by the database system"), so emptying must not rely on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_bootstrap_superuser_is_restored_with_its_surroundings() {
    let scratch =
        ScratchDatabase::create_on(Engine::Postgres, TestEnv::get().postgres_superuser_url()).await;
    let f = fixture_of(scratch);
    f.scratch.seed_varied().await;
    for sql in [
        "CREATE EXTENSION pgcrypto",
        "CREATE SCHEMA billing",
        "CREATE TABLE billing.invoices (id int PRIMARY KEY, sum bytea DEFAULT digest('x', 'sha256'))",
        "INSERT INTO billing.invoices (id) VALUES (1), (2)",
        "SELECT lo_from_bytea(0, 'a large object')::text",
        // A database that came from PostgreSQL 14 keeps the old default: anyone creates.
        "GRANT CREATE ON SCHEMA public TO PUBLIC",
        "COMMENT ON SCHEMA public IS 'the application''s schema'",
    ] {
        f.scratch.execute(sql).await;
    }
    let before = (f.fingerprint().await, pg_surroundings(&f.scratch).await);
    f.backups.preflight(&f.driver).await.unwrap();
    let taken = f
        .backup()
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));

    // What a failed migration run by the superuser leaves behind. (Privileges are not
    // in a dump: the public schema's are kept as they are, and checked to be.)
    for sql in [
        "DROP SCHEMA billing CASCADE",
        "CREATE SCHEMA half_migrated",
        "CREATE TABLE half_migrated.t (id int)",
        "CREATE TABLE added (id int)",
        "SELECT lo_unlink(oid) FROM pg_largeobject_metadata",
        "SELECT lo_from_bytea(0, 'another one')::text",
        "DROP EXTENSION pgcrypto CASCADE",
        "CREATE EXTENSION hstore",
        "UPDATE customers SET name = 'gone' WHERE id < 100",
    ] {
        f.scratch.execute(sql).await;
    }
    assert_ne!(
        (f.fingerprint().await, pg_surroundings(&f.scratch).await),
        before
    );

    f.restore(&taken.id, APP)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    let after = (f.fingerprint().await, pg_surroundings(&f.scratch).await);
    assert_eq!(after.1, before.1);
    assert_eq!(after.0, before.0);
    f.backups
        .restore_test(&taken.id, APP, &f.driver, &EventSink::discard())
        .await
        .unwrap_or_else(|e| panic!("restore-test: {}", e.report()));
}

/// PostgreSQL 15's standard layout: a DBA owns the database and gives the application's
/// user `CREATE` on schema `public`, with more privileges on `public` (`REVOKE … FROM
/// PUBLIC`, `USAGE` for a reader) and default privileges of its own. The user may not
/// rename the database, so the restore is in place, and the entries it leaves out (the
/// grants on `public` come last in a dump) are chosen from pg_restore's own table of
/// contents: the backup verifies with `--restore-test`, restores exactly, and the layout
/// is as the DBA left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_15_s_standard_layout_is_verified_and_restored() {
    use sqlx::Connection;
    let mut f = fixture(Engine::Postgres).await;
    f.scratch.give_to_dba().await;
    let reader = cutover_tests::unique_name("ct_reader");
    let user: String = sqlx::Row::get(&f.scratch.rows("SELECT current_user::text").await[0], 0);
    let superuser = format!(
        "{}/{}",
        TestEnv::get().postgres_superuser_url(),
        f.scratch.name()
    );
    let mut dba = sqlx::PgConnection::connect(&superuser).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {reader};
         REVOKE ALL ON SCHEMA public FROM PUBLIC;
         GRANT USAGE, CREATE ON SCHEMA public TO {user};
         GRANT USAGE ON SCHEMA public TO {reader};
         ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT SELECT ON TABLES TO {reader};"
    )))
    .execute(&mut dba)
    .await
    .unwrap();
    let how = cutover_backup::replacement(&f.database).await.unwrap();
    assert!(
        matches!(&how, cutover_backup::Replacement::InPlace { why } if why.contains("belongs to postgres")),
        "{how:?}"
    );
    let acl = "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'
               UNION ALL SELECT count(*)::text FROM pg_default_acl";
    let layout = |rows: Vec<sqlx::any::AnyRow>| -> Vec<String> {
        rows.iter().map(|r| sqlx::Row::get(r, 0)).collect()
    };
    let layout_before = layout(f.scratch.rows(acl).await);
    let before = f.fingerprint().await;
    f.backups.preflight(&f.driver).await.unwrap();
    let taken = f
        .backup()
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    f.backups
        .restore_test(&taken.id, APP, &f.driver, &EventSink::discard())
        .await
        .unwrap_or_else(|e| panic!("restore-test: {}", e.report()));

    f.scratch
        .execute("DELETE FROM orders WHERE id % 3 = 0")
        .await;
    f.scratch
        .execute("CREATE TABLE half_migrated (id int)")
        .await;
    assert_ne!(f.fingerprint().await, before);
    f.restore(&taken.id, APP)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    assert_eq!(f.fingerprint().await, before);
    assert_eq!(layout(f.scratch.rows(acl).await), layout_before);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DEFAULT PRIVILEGES FOR ROLE postgres REVOKE SELECT ON TABLES FROM {reader};
         REVOKE ALL ON SCHEMA public FROM {reader}; DROP ROLE {reader}"
    )))
    .execute(&mut dba)
    .await
    .unwrap();
}

/// A database a DBA set up: the application's schema and an extension belong to the
/// superuser, the application's user was granted the schema and owns its tables. Its
/// emptying (`DROP OWNED`) keeps both, and the dump creates the schema and comments on
/// the extension: the restore must leave those out, or it fails every time. A reporting
/// role reads the tables: the restore gives its privileges back, and the default
/// privileges the user and the DBA set stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_and_an_extension_of_another_role_are_kept_and_the_restore_succeeds() {
    use sqlx::Connection;
    let f = fixture_of(ScratchDatabase::create(Engine::Postgres).await);
    let reporting = cutover_tests::unique_name("ct_reporting");
    let user: String = sqlx::Row::get(&f.scratch.rows("SELECT current_user::text").await[0], 0);
    let superuser = format!(
        "{}/{}",
        TestEnv::get().postgres_superuser_url(),
        f.scratch.name()
    );
    let mut dba = sqlx::PgConnection::connect(&superuser).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA app; GRANT ALL ON SCHEMA app TO {user};
         COMMENT ON SCHEMA app IS 'set up by the DBA';
         CREATE EXTENSION pg_trgm; CREATE EXTENSION \"uuid-ossp\";
         CREATE SCHEMA \"user\"; GRANT ALL ON SCHEMA \"user\" TO {user};
         COMMENT ON SCHEMA \"user\" IS 'a keyword, quoted in the dump';
         CREATE ROLE {reporting}; GRANT USAGE ON SCHEMA app TO {reporting};
         ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA app GRANT SELECT ON TABLES TO {reporting};"
    )))
    .execute(&mut dba)
    .await
    .unwrap();
    f.scratch
        .execute(&format!(
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO {reporting}"
        ))
        .await;
    for sql in [
        "CREATE TABLE app.items (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), name text NOT NULL)",
        "CREATE INDEX items_name ON app.items USING gin (name gin_trgm_ops)",
        "INSERT INTO app.items (name) SELECT 'item ' || g FROM generate_series(1, 500) g",
        "CREATE TABLE public.settings (key text PRIMARY KEY, value text)",
        "INSERT INTO settings VALUES ('theme', 'dark')",
        "CREATE TABLE \"user\".profiles (id int PRIMARY KEY)",
        "INSERT INTO \"user\".profiles VALUES (1), (2)",
    ] {
        f.scratch.execute(sql).await;
    }
    let before = f.fingerprint().await;
    f.backups.preflight(&f.driver).await.unwrap();
    let taken = f
        .backup()
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));

    f.scratch
        .execute("DELETE FROM app.items WHERE name LIKE 'item 1%'")
        .await;
    f.scratch
        .execute("CREATE TABLE app.half_migrated (id int)")
        .await;
    f.scratch.execute("DROP TABLE settings").await;
    f.scratch
        .execute(&format!("REVOKE ALL ON app.items FROM {reporting}"))
        .await;
    assert_ne!(f.fingerprint().await, before);

    f.restore(&taken.id, APP)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    assert_eq!(f.fingerprint().await, before);
    // The kept objects are as the DBA left them.
    let owners: Vec<String> = f
        .scratch
        .rows(
            "SELECT n.nspowner::regrole::text || ' ' || obj_description(n.oid, 'pg_namespace') FROM pg_namespace n WHERE nspname = 'app'
             UNION ALL SELECT string_agg(extname || ' ' || extowner::regrole::text, ',' ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql'",
        )
        .await
        .iter()
        .map(|r| sqlx::Row::get(r, 0))
        .collect();
    assert_eq!(
        owners,
        [
            "postgres set up by the DBA",
            "pg_trgm postgres,uuid-ossp postgres"
        ]
    );
    // The reporting role reads the restored tables again; both default privileges stay.
    let privileges: Vec<String> = f
        .scratch
        .rows(&format!(
            "SELECT has_table_privilege('{reporting}', 'app.items', 'SELECT')::text
                    || ' ' || has_table_privilege('{reporting}', 'public.settings', 'SELECT')::text
                    || ' ' || has_schema_privilege('{reporting}', 'app', 'USAGE')::text
             UNION ALL
             SELECT string_agg(d, ',' ORDER BY d) FROM (
                 SELECT defaclrole::regrole::text || ' ' || CASE defaclnamespace WHEN 0 THEN '-' ELSE defaclnamespace::regnamespace::text END AS d
                 FROM pg_default_acl) AS defaults"
        ))
        .await
        .iter()
        .map(|r| sqlx::Row::get(r, 0))
        .collect();
    assert_eq!(
        privileges,
        [
            "true true true".to_string(),
            if user.as_str() < "postgres" {
                format!("{user} -,postgres app")
            } else {
                format!("postgres app,{user} -")
            }
        ]
    );
    f.backups
        .restore_test(&taken.id, APP, &f.driver, &EventSink::discard())
        .await
        .unwrap_or_else(|e| panic!("restore-test: {}", e.report()));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP OWNED BY {reporting}")))
        .execute(&mut dba)
        .await
        .unwrap();
    dba.close().await.unwrap();
    drop(f);
    let mut server = sqlx::PgConnection::connect(&format!(
        "{}/postgres",
        TestEnv::get().postgres_superuser_url()
    ))
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {reporting}")))
        .execute(&mut server)
        .await
        .unwrap();
}

/// A table another role owns could not be replaced by a restore as the application's
/// user: the backup is refused when it is taken, and preflight (so `plan` and `check`)
/// says so before an upgrade stops anything, naming the table, its owner and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_another_role_refuses_the_backup_before_anything_is_stored() {
    use sqlx::Connection;
    let f = fixture_of(ScratchDatabase::create(Engine::Postgres).await);
    let user: String = sqlx::Row::get(&f.scratch.rows("SELECT current_user::text").await[0], 0);
    let superuser = format!(
        "{}/{}",
        TestEnv::get().postgres_superuser_url(),
        f.scratch.name()
    );
    f.scratch
        .execute("CREATE TABLE mine (id int PRIMARY KEY)")
        .await;
    let mut dba = sqlx::PgConnection::connect(&superuser).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE audit (id int); GRANT ALL ON audit TO {user};
         CREATE TYPE level AS ENUM ('low', 'high');"
    )))
    .execute(&mut dba)
    .await
    .unwrap();

    let checks = f.backups.checks(&f.driver).await;
    let ownership = checks.iter().find(|c| c.name == "ownership").unwrap();
    let said = ownership.result.as_ref().unwrap_err().message().to_owned();
    for part in [
        "could not be restored as",
        "table audit (owner postgres)",
        "type level (owner postgres)",
        "REASSIGN OWNED BY",
    ] {
        assert!(said.contains(part), "{part:?} not in {said}");
    }
    let e = f.backups.preflight(&f.driver).await.unwrap_err();
    assert!(e.message().contains("table audit (owner postgres)"), "{e}");
    let e = f.backup().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("table audit (owner postgres)"), "{e}");
    assert!(
        std::fs::read_dir(&f.store_path).map_or(true, |d| d.count() == 0),
        "a refused backup left something in the store"
    );

    // Given to the user, both are backed up and restored.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE audit OWNER TO {user}; ALTER TYPE level OWNER TO {user};"
    )))
    .execute(&mut dba)
    .await
    .unwrap();
    dba.close().await.unwrap();
    f.backups.preflight(&f.driver).await.unwrap();
    let taken = f
        .backup()
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    f.restore(&taken.id, APP)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
}

/// The one part file of a backup's database dump.
fn dump_part(store: &Path, id: &str) -> std::path::PathBuf {
    store.join(id).join("database.zst")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_foreign_backups_are_refused_and_nothing_is_touched() {
    for engine in Engine::ALL {
        let f = fixture(engine).await;
        let taken = f.backup().await.unwrap();
        // A write after the backup: a refused restore must keep it.
        f.scratch
            .execute("INSERT INTO empty_table (id, doc) VALUES (1, '\"after the backup\"')")
            .await;
        let current = f.fingerprint().await;

        let foreign = f.restore(&taken.id, "another-app").await.unwrap_err();
        assert_eq!(
            foreign.kind(),
            ErrorKind::Integrity,
            "{engine}: {}",
            foreign.report()
        );
        assert!(foreign.to_string().contains("another-app"), "{foreign}");
        assert_eq!(
            f.fingerprint().await,
            current,
            "{engine}: touched by a foreign restore"
        );

        let part = dump_part(&f.store_path, taken.id.as_str());
        let pristine = std::fs::read(&part).unwrap();

        let mut corrupted = pristine.clone();
        let middle = corrupted.len() / 2;
        corrupted[middle] ^= 0x55;
        std::fs::write(&part, &corrupted).unwrap();
        let e = f.restore(&taken.id, APP).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{engine}: {}", e.report());
        assert!(e.to_string().contains("damaged"), "{e}");
        assert_eq!(
            f.backups.verify(&taken.id, APP).await.unwrap_err().kind(),
            ErrorKind::Integrity
        );
        assert_eq!(
            f.fingerprint().await,
            current,
            "{engine}: touched by a corrupted restore"
        );

        std::fs::write(&part, &pristine[..pristine.len() / 3]).unwrap();
        let e = f.restore(&taken.id, APP).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{engine}: {}", e.report());
        assert_eq!(
            f.fingerprint().await,
            current,
            "{engine}: touched by a truncated restore"
        );

        std::fs::write(&part, &pristine).unwrap();
        f.backups.verify(&taken.id, APP).await.unwrap();
        let escape = "../../etc".parse::<cutover_core::BackupId>().unwrap_err();
        assert_eq!(escape.kind(), ErrorKind::InvalidInput);
        let missing: cutover_core::BackupId = "20990101T000000Z-apidog-000000".parse().unwrap();
        assert_eq!(
            f.restore(&missing, APP).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(f.fingerprint().await, current);
    }
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount (the end-to-end tests run as root)");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_fails_cleanly_and_leaves_no_partial_backup() {
    let mut f = fixture(Engine::Postgres).await;
    let tmpfs = Tmpfs::mount(256 * 1024);
    let store = tmpfs.0.path().join("backups");
    f.use_database(f.database.clone(), Some(&store));
    let before = f.fingerprint().await;

    let refused = f.backups.preflight(&f.driver).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        ErrorKind::Unavailable,
        "{}",
        refused.report()
    );
    assert!(refused.to_string().contains("free"), "{refused}");

    let failed = f.backup().await.unwrap_err();
    assert!(
        failed.report().to_lowercase().contains("space") || failed.report().contains("No space"),
        "{}",
        failed.report()
    );
    assert!(f.backups.list().await.unwrap().is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "partial backup left: {leftovers:?}");
    assert_eq!(f.fingerprint().await, before, "the database changed");
}

/// The room a backup needs is what the last backup of the database took, not what the
/// server's table statistics say: MariaDB's are many times the data after a bulk load of
/// compressible rows, and must not refuse a backup that fits. A run that writes no backup
/// needs no room at all and no writable store: a restore without a safety backup works
/// from a read-only store, one with it is refused before anything happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_comes_from_earlier_backups_and_a_read_only_store_restores_without_a_safety_backup() {
    let mut f = empty_fixture(Engine::MariaDb).await;
    f.scratch
        .execute("CREATE TABLE bulk (id INT PRIMARY KEY, note VARCHAR(200))")
        .await;
    f.scratch
        .execute("INSERT INTO bulk SELECT seq, REPEAT('x', 150) FROM seq_1_to_200000")
        .await;
    f.scratch.execute("ANALYZE TABLE bulk").await;
    let tmpfs = Tmpfs::mount(4 << 20);
    let store = tmpfs.0.path().join("backups");
    f.use_database(f.database.clone(), Some(&store));
    let room = |checks: &[cutover_core::Check]| -> String {
        let room = checks
            .iter()
            .find(|c| c.name == "backup store room")
            .expect("a room check");
        format!("{:?}", room.result)
    };
    // The statistics say far more than the 4 MiB store holds; that refuses nothing.
    let first = room(&f.backups.checks(&f.driver).await);
    assert!(
        first.starts_with("Ok(") && first.contains("statistics"),
        "{first}"
    );
    let taken = f
        .backup()
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    assert!(taken.bytes < 1 << 20, "{taken:?}");
    let second = room(&f.backups.checks(&f.driver).await);
    assert!(
        second.starts_with("Ok(") && second.contains(&format!("backup {} took", taken.id)),
        "{second}"
    );

    // The store read-only: only what writes no backup goes on.
    f.scratch.execute("DELETE FROM bulk WHERE id > 100").await;
    let status = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(tmpfs.0.path())
        .status()
        .unwrap();
    assert!(status.success());
    let dir = tempfile::tempdir().unwrap();
    let refused = restore_run(&f, &dir.path().join("journal.db"), &taken.id, true).await;
    assert_eq!(
        refused.report.outcome,
        cutover_core::Outcome::Aborted,
        "{}",
        refused.message
    );
    assert!(
        refused.message.contains("cannot be written"),
        "{}",
        refused.message
    );
    assert_eq!(
        f.scratch.count("bulk").await,
        100,
        "a refused restore changed data"
    );
    let restored = restore_run(&f, &dir.path().join("journal-2.db"), &taken.id, false).await;
    assert_eq!(
        restored.report.outcome,
        cutover_core::Outcome::Restored,
        "{}",
        restored.message
    );
    assert_eq!(f.scratch.count("bulk").await, 200_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_reaches_argv_or_the_backup() {
    for engine in Engine::ALL {
        let f = Arc::new(fixture(engine).await);
        let secret = f.scratch.credentials().1;
        assert!(
            secret.len() >= 8,
            "the test password is too short to search for"
        );

        // Watch every process's command line while the dump runs.
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (done, secret) = (done.clone(), secret.clone());
            std::thread::spawn(move || {
                let mut seen_dump = false;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                            continue;
                        };
                        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                        if cmdline.contains("pg_dump") || cmdline.contains("mariadb-dump") {
                            seen_dump = true;
                        }
                        assert!(!cmdline.contains(&secret), "password in argv: {cmdline}");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                seen_dump
            })
        };
        let taken = f.backup().await.unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let saw_the_dump = watcher.join().expect("no password in any command line");
        assert!(
            saw_the_dump,
            "{engine}: the watcher never saw the dump process"
        );

        for entry in std::fs::read_dir(f.store_path.join(taken.id.as_str()))
            .unwrap()
            .flatten()
        {
            let bytes = std::fs::read(entry.path()).unwrap();
            let needle = secret.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{engine}: password in {:?}",
                entry.file_name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_paths_travel_through_the_driver_archive() {
    let f = fixture(Engine::Postgres).await;
    let at = ExecTarget::AnyInstance;
    let backups = DumpBackups::new(
        f.database.clone(),
        Arc::new(LocalStore::new(&f.store_path)),
        vec!["/data/storage".into()],
        at.clone(),
    );
    let put = |bytes: &'static [u8]| {
        let driver = f.driver.clone();
        let at = at.clone();
        async move {
            driver
                .unarchive(&at, "/data/storage", Box::pin(std::io::Cursor::new(bytes)))
                .await
                .unwrap()
        }
    };
    let get = || async {
        let mut out = Vec::new();
        let mut stream = f.driver.archive(&at, "/data/storage").await.unwrap();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut out)
            .await
            .unwrap();
        out
    };
    put(b"uploaded files as they were").await;
    let scope = BackupScope {
        app: APP,
        image: &f.image,
        snapshot: None,
        driver: &f.driver as &dyn Driver,
    };
    let taken = backups.backup(scope, &EventSink::discard()).await.unwrap();
    put(b"overwritten after the backup").await;
    backups
        .restore(
            &taken.id,
            APP,
            &cutover_core::journal::new_run_id(),
            &f.driver,
            &EventSink::discard(),
        )
        .await
        .unwrap();
    assert_eq!(get().await, b"uploaded files as they were");

    // A driver that cannot archive is refused before anything is written.
    let mut bare = FakeConfig::new(f.image.clone(), 1, vec![]);
    bare.capabilities = cutover_core::Capabilities::none();
    let bare = FakeDriver::new(bare);
    let e = backups.preflight(&bare).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{}", e.report());
    assert!(e.to_string().contains("/data/storage"), "{e}");
}

/// A backup whose process dies after the dump was stored but before the manifest: nothing
/// is listed, the safe sweep leaves it (it could be a backup still being written), and once
/// its files are a day old, the sweep deletes it and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_mid_way_stays_invisible_until_swept_once_old() {
    let f = fixture(Engine::Postgres).await;
    let complete = f.backup().await.unwrap();
    let backups = DumpBackups::new(
        f.database.clone(),
        Arc::new(LocalStore::new(&f.store_path)),
        vec!["/data/storage".into()],
        ExecTarget::AnyInstance,
    );
    // The storage archive never comes: the dump is stored, the manifest never written.
    f.driver.inject(Fault {
        method: Method::Archive,
        nth: 1,
        kind: FaultKind::Hang,
    });
    let task = {
        let (backups, driver, image) = (backups.clone(), f.driver.clone(), f.image.clone());
        tokio::spawn(async move {
            let scope = BackupScope {
                app: APP,
                image: &image,
                snapshot: None,
                driver: &driver as &dyn Driver,
            };
            backups.backup(scope, &EventSink::discard()).await
        })
    };
    while !f.driver.call_log().contains(&Method::Archive) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort(); // the process dies
    let _ = task.await;

    let staging: Vec<_> = std::fs::read_dir(&f.store_path)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
        .map(|e| e.path())
        .collect();
    assert_eq!(staging.len(), 1, "{staging:?}");
    let left = &staging[0];
    assert!(left.join("database.zst").is_file(), "the dump was stored");
    let listed: Vec<_> = backups
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(listed, vec![complete.id.clone()]);

    assert_eq!(backups.sweep(&[]).await.unwrap(), vec![]);
    assert!(left.exists(), "too young to sweep");

    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    for entry in std::fs::read_dir(left).unwrap().flatten() {
        let file = std::fs::File::open(entry.path()).unwrap();
        file.set_modified(two_days_ago).unwrap();
    }
    std::fs::File::open(left)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let swept = backups.sweep(&[]).await.unwrap();
    assert_eq!(swept.len(), 1, "{swept:?}");
    assert_eq!(
        swept[0].name,
        left.file_name().unwrap().to_string_lossy(),
        "{swept:?}"
    );
    assert!(swept[0].bytes > 0);
    assert!(!left.exists());
    backups.verify(&complete.id, APP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_and_never_a_protected_backup() {
    let f = fixture(Engine::MariaDb).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(f.backup().await.unwrap().id);
        // Backup ids and creation times have a one-second resolution in their stamp.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // Keep 1, protect the oldest: the two in the middle go.
    let deleted = f.backups.prune(APP, 1, &ids[..1]).await.unwrap();
    assert_eq!(deleted, vec![ids[2].clone(), ids[1].clone()]);
    let left: Vec<_> = f
        .backups
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(left, vec![ids[3].clone(), ids[0].clone()]);
    assert!(
        f.backups
            .prune("another-app", 0, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

/// An online backup while the application keeps writing: the fingerprint is taken on the
/// dump's own snapshot, so it is exact, and restoring gives back exactly that data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_under_writes_has_the_dump_s_exact_fingerprint() {
    for engine in Engine::ALL {
        let f = fixture(engine).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            let pool = f.scratch.pool().clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sqlx::query(
                        "INSERT INTO customers (name) VALUES ('written during the backup')",
                    )
                    .execute(&pool)
                    .await
                    .expect("the application's writes go on during an online backup");
                    n += 1;
                }
                n
            })
        };
        // MariaDB's global read lock waits for every statement on the server, and the
        // tests share one: when another test's long statement outlasts the wait, the
        // backup rightly falls back (and says so). Only then is it tried again.
        let mut attempts = 0;
        let taken = loop {
            attempts += 1;
            let (events, mut rx) = EventSink::channel();
            let taken = f
                .backups
                .backup(
                    BackupScope {
                        app: APP,
                        image: &f.image,
                        snapshot: None,
                        driver: &f.driver as &dyn Driver,
                    },
                    &events,
                )
                .await
                .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
            drop(events);
            let mut unpinned = false;
            while let Some(e) = rx.recv().await {
                if let cutover_core::EventKind::Warning { message } = &e.kind {
                    unpinned |= message.contains("no global read lock");
                }
            }
            if !unpinned || attempts == 3 {
                break taken;
            }
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer.await.unwrap();
        assert!(written > 0, "{engine}: no write happened during the backup");
        let manifest = f.manifest(&taken.id);
        assert!(manifest.fingerprint_exact, "{engine}: {manifest:?}");
        assert_ne!(
            f.fingerprint().await,
            manifest.fingerprint,
            "{engine}: the writes after the dump's snapshot are not in its fingerprint"
        );

        // Counters are not transactional: the one the writes moved is recorded as
        // approximate, its presence compared but not its value.
        let counter = match engine {
            Engine::Postgres => "sequence public.customers_id_seq",
            Engine::MariaDb => "auto_increment customers",
        };
        assert!(
            manifest.fingerprint.approximate.contains(counter),
            "{engine}: {:?}",
            manifest.fingerprint.approximate
        );

        // Restore compares the restored data with the manifest's fingerprint itself.
        f.restore(&taken.id, APP)
            .await
            .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
        let restored = f.fingerprint().await;
        assert_eq!(
            manifest.fingerprint.differences(&restored),
            Vec::<String>::new(),
            "{engine}"
        );
        assert_eq!(restored.tables, manifest.fingerprint.tables, "{engine}");
    }
}

/// A MariaDB user without the RELOAD privilege cannot take the brief global read lock:
/// the backup still works, says why it is slower, and is exact when nothing writes (its
/// FLOAT fix-ups read their own snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_reload_privilege_the_backup_falls_back_and_says_so() {
    let f = fixture(Engine::MariaDb).await;
    f.scratch
        .execute("CREATE TABLE gauges (id INT PRIMARY KEY, f FLOAT)")
        .await;
    f.scratch
        .execute("INSERT INTO gauges SELECT seq, seq / 7e0 FROM seq_1_to_1000")
        .await;
    let user = cutover_tests::unique_name("nr").replace('-', "_");
    let password = format!("pw{}", user.len());
    for host in ["localhost", "127.0.0.1"] {
        f.scratch
            .execute(&format!(
                "CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"
            ))
            .await;
        f.scratch
            .execute(&format!(
                "GRANT ALL ON `{}`.* TO '{user}'@'{host}'",
                f.scratch.name()
            ))
            .await;
        // The seed's trigger is the test user's: without this, a backup could not be
        // restored as this user and is refused (the `definers` check).
        f.scratch
            .execute(&format!("GRANT SET USER ON *.* TO '{user}'@'{host}'"))
            .await;
    }
    let (url, _) = f.scratch.credentials();
    let (_, at) = url.split_once('@').unwrap();
    let limited = Database::new(
        DatabaseEngine::Mariadb,
        &format!("mysql://{user}@{at}"),
        Some(password),
        ToolSite::Local,
    )
    .unwrap();
    let backups = DumpBackups::new(
        limited,
        Arc::new(LocalStore::new(&f.store_path)),
        vec![],
        ExecTarget::AnyInstance,
    );
    let (events, mut rx) = EventSink::channel();
    let taken = backups
        .backup(
            BackupScope {
                app: APP,
                image: &f.image,
                snapshot: None,
                driver: &f.driver as &dyn Driver,
            },
            &events,
        )
        .await;
    for host in ["localhost", "127.0.0.1"] {
        f.scratch
            .execute(&format!("DROP USER '{user}'@'{host}'"))
            .await;
    }
    let taken = taken.unwrap_or_else(|e| panic!("{}", e.report()));
    // Restored by the user that owns the views and triggers (creating them with another
    // DEFINER needs more than the limited user has).
    f.scratch.execute("UPDATE gauges SET f = 0").await;
    f.restore(&taken.id, APP)
        .await
        .unwrap_or_else(|e| panic!("restore: {}", e.report()));
    drop(events);
    let mut warnings = Vec::new();
    while let Some(e) = rx.recv().await {
        if let cutover_core::event::EventKind::Warning { message } = e.kind {
            warnings.push(message);
        }
    }
    assert!(
        warnings.iter().any(|w| w.contains("RELOAD")),
        "{warnings:?}"
    );
    let manifest = f.manifest(&taken.id);
    assert!(manifest.fingerprint_exact);
    assert_eq!(manifest.fingerprint, f.fingerprint().await);
}

/// The largest row MariaDB's default `max_allowed_packet` lets a dump restore is backed up
/// and restored; one a few bytes larger is refused — by the preflight, by the backup
/// itself, and by a restore into a server whose limit is below the backup's — before
/// anything changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_at_the_server_s_statement_limit_is_restored_and_one_above_is_refused_before_any_change()
 {
    let f = fixture(Engine::MariaDb).await;
    let limit: u64 = {
        let rows = f
            .scratch
            .rows("SELECT CAST(@@GLOBAL.max_allowed_packet AS SIGNED)")
            .await;
        sqlx::Row::try_get::<i64, _>(&rows[0], 0).unwrap() as u64
    };
    // The dump writes `INSERT INTO `blobs` VALUES\n(1,0x<hex>);`: 34 bytes and the hex.
    let fits = (limit - 34 - 100) / 2;
    f.scratch
        .execute("CREATE TABLE blobs (id INT PRIMARY KEY, data LONGBLOB)")
        .await;
    f.scratch
        .execute(&format!(
            "INSERT INTO blobs VALUES (1, REPEAT(UNHEX('00FF27225C0A0D1A'), {}))",
            fits / 8
        ))
        .await;
    f.backups.preflight(&f.driver).await.unwrap();
    let taken = f
        .backup()
        .await
        .unwrap_or_else(|e| panic!("a row that fits: {}", e.report()));
    let manifest = f.manifest(&taken.id);
    let statement = manifest.database.longest_statement.clone().unwrap();
    assert_eq!(statement.table.as_deref(), Some("blobs"));
    assert_eq!(statement.bytes, 34 + 2 * (fits / 8 * 8), "{statement:?}");
    let before = f.scratch.independent_state();
    f.scratch.execute("UPDATE blobs SET data = 'x'").await;
    f.restore(&taken.id, APP)
        .await
        .unwrap_or_else(|e| panic!("restoring the row that fits: {}", e.report()));
    assert_eq!(
        before.differences(&f.scratch.independent_state()),
        Vec::<String>::new()
    );

    // Restored into a server whose limit is lower than the backup needs (a manifest
    // from a server with a larger limit): refused, nothing changed.
    let mut larger = manifest.clone();
    larger.database.longest_statement = Some(cutover_backup::manifest::Statement {
        bytes: limit + 1000,
        table: Some("blobs".into()),
    });
    let path = f.store_path.join(taken.id.as_str()).join("manifest.json");
    std::fs::write(&path, serde_json::to_vec(&larger).unwrap()).unwrap();
    f.scratch
        .execute("UPDATE blobs SET data = 'changed since'")
        .await;
    let changed = f.scratch.independent_state();
    let err = f.restore(&taken.id, APP).await.unwrap_err();
    let message = err.report();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{message}");
    for needed in ["blobs", "max_allowed_packet", "nothing was changed"] {
        assert!(message.contains(needed), "{needed:?} in: {message}");
    }
    assert_eq!(
        changed.differences(&f.scratch.independent_state()),
        Vec::<String>::new()
    );

    // A row over the limit: the preflight names it, and a backup without a preflight
    // measures its dump and refuses it; no backup is stored.
    f.scratch
        .execute(&format!(
            "UPDATE blobs SET data = REPEAT(UNHEX('00FF27225C0A0D1A'), {})",
            (fits + 64) / 8
        ))
        .await;
    let err = f.backups.preflight(&f.driver).await.unwrap_err();
    let message = err.report();
    assert!(
        message.contains("blobs") && message.contains("max_allowed_packet"),
        "{message}"
    );
    let stored = f.backups.list().await.unwrap().len();
    let err = f.backup().await.unwrap_err();
    let message = err.report();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{message}");
    assert!(
        message.contains("table blobs") && message.contains(&limit.to_string()),
        "{message}"
    );
    assert_eq!(f.backups.list().await.unwrap().len(), stored);
}

/// A PostgreSQL restore whose archive gives out midway (the tool dies after part of the
/// data went in) leaves the database exactly as it was before the restore, and says that
/// it changed nothing: loaded beside the live database, which the user owns, or — in
/// PostgreSQL 15's standard layout, where a DBA owns the database — emptied and restored
/// in one transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restore_that_fails_midway_leaves_the_database_as_it_was() {
    for dba_owned in [false, true] {
        let mut f = fixture(Engine::Postgres).await;
        if dba_owned {
            f.scratch.give_to_dba().await;
        }
        let how = cutover_backup::replacement(&f.database).await.unwrap();
        assert_eq!(
            matches!(how, cutover_backup::Replacement::InPlace { .. }),
            dba_owned,
            "{how:?}"
        );
        let taken = f.backup().await.unwrap();
        f.scratch
            .execute("UPDATE customers SET name = 'written after the backup' WHERE id < 50")
            .await;
        f.scratch.execute("CREATE TABLE added_since (id int)").await;
        let before = f.scratch.independent_state();

        // pg_restore dies at the cut, after the schema and part of the data.
        cut_dump(&f, &taken.id);
        let err = f.restore(&taken.id, APP).await.unwrap_err();
        let message = err.report();
        let said = if dba_owned {
            "rolled back"
        } else {
            "untouched"
        };
        assert!(message.contains(said), "{message}");
        assert!(err.nothing_changed(), "{message}");
        assert_eq!(
            before.differences(&f.scratch.independent_state()),
            Vec::<String>::new(),
            "a failed restore changed the database"
        );
        assert_eq!(
            beside(&f).await,
            Vec::<String>::new(),
            "a side database is left"
        );
    }
}

/// The databases restores left beside `f`'s.
async fn beside(f: &Fixture) -> Vec<String> {
    let sql = match f.scratch.engine() {
        Engine::Postgres => format!(
            "SELECT datname::text FROM pg_database WHERE datname LIKE '{}\\_cutover\\_%' ORDER BY 1",
            f.scratch.name().replace('_', "\\_")
        ),
        Engine::MariaDb => format!(
            "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{}\\_cutover\\_%' ORDER BY 1",
            f.scratch.name().replace('_', "\\_")
        ),
    };
    f.scratch
        .rows(&sql)
        .await
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 0))
        .collect()
}

/// Cuts backup `id`'s dump at 60 % and makes its manifest agree (checksums and sizes), so
/// that the backup verifies and its restore fails midway.
fn cut_dump(f: &Fixture, id: &cutover_core::BackupId) {
    use sha2::Digest;
    let part = dump_part(&f.store_path, id.as_str());
    let raw = zstd::decode_all(std::fs::File::open(&part).unwrap()).unwrap();
    let cut = zstd::encode_all(&raw[..raw.len() * 6 / 10], 1).unwrap();
    std::fs::write(&part, &cut).unwrap();
    let mut manifest = f.manifest(id);
    let db = manifest
        .parts
        .iter_mut()
        .find(|p| p.name == "database.zst")
        .unwrap();
    db.bytes = cut.len() as u64;
    db.raw_bytes = (raw.len() * 6 / 10) as u64;
    db.sha256 = sha2::Sha256::digest(&cut)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = f.store_path.join(id.as_str()).join("manifest.json");
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

/// A restore run over `f`'s database and store, with the fake deployment.
async fn restore_run(
    f: &Fixture,
    journal: &Path,
    id: &cutover_core::BackupId,
    safety: bool,
) -> cutover_core::Finished {
    let backups = DumpBackups::new(
        f.database.clone(),
        Arc::new(LocalStore::new(&f.store_path)),
        vec![],
        ExecTarget::AnyInstance,
    );
    let engine = cutover_core::Engine::new(
        Arc::new(f.driver.clone()),
        Arc::new(backups),
        Arc::new(cutover_core::SqliteJournal::open(journal).await.unwrap()),
        cutover_core::Settings::new(APP),
    );
    engine
        .start(cutover_core::Plan::Restore {
            backup: id.clone(),
            safety,
        })
        .await
        .expect("the journal works")
}

/// A MariaDB restore whose dump gives out midway, loaded beside the live database (the
/// user may create databases), changes nothing: the run restarts the old instances and
/// ends aborted without putting anything back, the data as it was (independent
/// comparison), and no side database is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_restore_that_fails_midway_beside_the_live_database_changes_nothing() {
    let f = fixture(Engine::MariaDb).await;
    let taken = f.backup().await.unwrap();
    f.scratch
        .execute("UPDATE customers SET name = 'written after the backup' WHERE id < 50")
        .await;
    f.scratch.execute("CREATE TABLE added_since (id int)").await;
    let before = f.scratch.independent_state();
    cut_dump(&f, &taken.id);
    let dir = tempfile::tempdir().unwrap();

    let done = restore_run(&f, &dir.path().join("journal.db"), &taken.id, true).await;
    assert_eq!(
        done.report.outcome,
        cutover_core::Outcome::Aborted,
        "{}",
        done.message
    );
    assert!(
        !done.message.contains("put back") && done.message.contains("runs as before (observed)"),
        "{}",
        done.message
    );
    assert_eq!(
        before.differences(&f.scratch.independent_state()),
        Vec::<String>::new(),
        "a failed restore changed the database"
    );
    assert_eq!(
        beside(&f).await,
        Vec::<String>::new(),
        "a side database is left"
    );
}

/// A MariaDB user without the right to create a database restores in place, which is not
/// one transaction: one whose dump gives out midway has already emptied the database. The
/// restore run's safety backup, taken after the stop, is put back automatically and the
/// run ends aborted with the data as it was (independent comparison) — where the same
/// failure without a safety backup loses the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_restore_in_place_that_fails_midway_is_put_back_from_its_safety_backup() {
    let scratch = ScratchDatabase::create(Engine::MariaDb).await;
    scratch.seed_varied().await;
    let (url, password) = scratch.restricted_user().await;
    // Without the right to create a database, but with that to define the test user's
    // trigger again.
    let user = url.split_once("://").unwrap().1.split_once('@').unwrap().0;
    for host in ["localhost", "127.0.0.1"] {
        scratch
            .execute(&format!("GRANT SET USER ON *.* TO '{user}'@'{host}'"))
            .await;
    }
    let mut f = fixture_of(scratch);
    f.use_account(&url, password);
    let how = cutover_backup::replacement(&f.database).await.unwrap();
    assert!(
        matches!(&how, cutover_backup::Replacement::InPlace { why } if why.contains("may not create database")),
        "{how:?}"
    );
    let taken = f.backup().await.unwrap();
    f.scratch
        .execute("UPDATE customers SET name = 'written after the backup' WHERE id < 50")
        .await;
    f.scratch.execute("CREATE TABLE added_since (id int)").await;
    let before = f.scratch.independent_state();
    cut_dump(&f, &taken.id);
    let dir = tempfile::tempdir().unwrap();

    let done = restore_run(&f, &dir.path().join("journal.db"), &taken.id, true).await;
    assert_eq!(
        done.report.outcome,
        cutover_core::Outcome::Aborted,
        "{}",
        done.message
    );
    let safety = done
        .report
        .safety
        .clone()
        .expect("a safety backup was taken");
    assert!(
        done.message
            .contains(&format!("put back from safety backup {}", safety.id))
            && done.message.contains("runs as before (observed)"),
        "{}",
        done.message
    );
    assert_eq!(
        before.differences(&f.scratch.independent_state()),
        Vec::<String>::new(),
        "the safety backup did not bring the data back"
    );
    f.backups.verify(&safety.id, APP).await.unwrap();

    // Without it, the same failure leaves the database half restored.
    let done = restore_run(&f, &dir.path().join("journal-2.db"), &taken.id, false).await;
    assert_eq!(
        done.report.outcome,
        cutover_core::Outcome::Failed,
        "{}",
        done.message
    );
    assert_ne!(
        before.differences(&f.scratch.independent_state()),
        Vec::<String>::new(),
        "the failure this test provokes must change the database"
    );
}

/// Every FLOAT value as its exact double, with the rest of its row, in key order.
async fn float_rows(scratch: &ScratchDatabase, table: &str, key: &str) -> Vec<String> {
    scratch
        .rows(&format!(
            "SELECT CONCAT_WS('|', HEX(CONCAT_WS(',', {key})), COALESCE(CAST(f AS DOUBLE), 'null'), COALESCE(CAST(fd AS DOUBLE), 'null'), touched, changed)
             FROM {table} ORDER BY {key}"
        ))
        .await
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 0))
        .collect()
}

/// MariaDB's dump prints FLOAT with 6 significant digits; the backup appends the exact
/// values, keyed, before the triggers: a restore gives every FLOAT back bit for bit, fires
/// no trigger and moves no ON UPDATE timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float_values_come_back_exactly_without_firing_triggers() {
    let f = empty_fixture(Engine::MariaDb).await;
    for sql in [
        // A composite string + integer primary key, and a table keyed only by a UNIQUE
        // key on a TIMESTAMP and a BINARY column.
        "CREATE TABLE gauges (site VARCHAR(40) COLLATE utf8mb4_unicode_ci, n INT, f FLOAT, fd FLOAT(7,3),
            touched INT NOT NULL DEFAULT 0,
            changed TIMESTAMP(6) NOT NULL DEFAULT '2001-02-03 04:05:06' ON UPDATE CURRENT_TIMESTAMP(6),
            PRIMARY KEY (site, n)) ENGINE=InnoDB",
        "INSERT INTO gauges (site, n, f, fd) VALUES
            ('Zürich 😀', 1, 0.1234567, 23.456789), ('it''s', 2, 3.4028234e38, -0e0),
            ('', 3, -0e0, NULL), ('x', 4, NULL, 0.1), ('ZÜRICH 😀', 5, 23.456789, 9999.999),
            ('', 6, 0.7654321, 1.5)",
        // More rows than one UPDATE takes.
        "INSERT INTO gauges (site, n, f, fd) SELECT CONCAT('s', seq % 7), seq, seq / 7e0, seq / 9e0 FROM seq_10_to_1300",
        "CREATE TABLE readings (at TIMESTAMP(6) NOT NULL, probe BINARY(4) NOT NULL, f FLOAT, fd FLOAT(7,3),
            touched INT NOT NULL DEFAULT 0, changed DATETIME(6) NULL ON UPDATE CURRENT_TIMESTAMP(6),
            UNIQUE KEY (at, probe)) ENGINE=InnoDB",
        "INSERT INTO readings (at, probe, f, fd) SELECT '2026-03-29 00:59:59.5' + INTERVAL seq MINUTE, UNHEX(LPAD(HEX(seq), 8, '0')), seq / 3e0, seq FROM seq_1_to_700",
        "CREATE TRIGGER gauges_touch BEFORE UPDATE ON gauges FOR EACH ROW SET NEW.touched = NEW.touched + 1, NEW.f = 0",
        "CREATE TRIGGER readings_touch BEFORE UPDATE ON readings FOR EACH ROW SET NEW.touched = NEW.touched + 1",
    ] {
        f.scratch.execute(sql).await;
    }
    let lossy = "WHERE CAST(CAST(f AS CHAR) AS FLOAT) <> f";
    assert!(
        f.scratch.count(&format!("gauges {lossy}")).await > 1000,
        "the dump's text is inexact"
    );
    assert!(f.scratch.count(&format!("readings {lossy}")).await > 400);
    let gauges = float_rows(&f.scratch, "gauges", "site, n").await;
    let readings = float_rows(&f.scratch, "readings", "at, probe").await;
    assert!(
        gauges.iter().any(|r| r.contains("|0.12345670163631439|")),
        "{gauges:?}"
    );

    let taken = f
        .backup()
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    f.scratch
        .execute("UPDATE gauges SET f = 1, fd = 1 WHERE n % 2 = 0")
        .await;
    f.scratch.execute("DELETE FROM readings WHERE f > 10").await;
    assert_ne!(float_rows(&f.scratch, "gauges", "site, n").await, gauges);

    f.restore(&taken.id, APP)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    assert_eq!(float_rows(&f.scratch, "gauges", "site, n").await, gauges);
    assert_eq!(
        float_rows(&f.scratch, "readings", "at, probe").await,
        readings
    );
    assert_eq!(
        f.scratch
            .count("information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()")
            .await,
        2,
        "the triggers are restored, after the fix-ups"
    );
    f.backups
        .restore_test(&taken.id, APP, &f.driver, &EventSink::discard())
        .await
        .unwrap_or_else(|e| panic!("restore-test: {}", e.report()));
}

/// FLOAT values are corrected by key: a table without one whose values a restore would
/// change is refused, in preflight and by the backup itself, and nothing is stored; the
/// same table with values the dump prints exactly is backed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inexact_floats_without_a_key_are_refused_before_anything_is_stored() {
    let f = empty_fixture(Engine::MariaDb).await;
    for sql in [
        "CREATE TABLE keyed (id INT PRIMARY KEY, f FLOAT) ENGINE=InnoDB",
        "INSERT INTO keyed VALUES (1, 0.1234567)",
        // A UNIQUE key with a nullable column addresses no row for sure.
        "CREATE TABLE samples (label VARCHAR(20) NULL, f FLOAT, g FLOAT, UNIQUE KEY (label)) ENGINE=InnoDB",
        "INSERT INTO samples VALUES ('a', 0.5, 0.25), ('b', NULL, 1), (NULL, 2, 3)",
    ] {
        f.scratch.execute(sql).await;
    }
    let exact = f
        .backup()
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    f.scratch
        .execute("INSERT INTO samples VALUES ('c', 0.1234567, 0.5), ('d', 3.4028234e38, 1.2345678), ('e', 1, 0.75)")
        .await;

    let preflight = f.backups.preflight(&f.driver).await.unwrap_err();
    let refused = f.backup().await.unwrap_err();
    for e in [&preflight, &refused] {
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}", e.report());
        let message = e.message();
        for expected in [
            "`samples`",
            "2 values of column `f`",
            "1 value of column `g`",
            "PRIMARY KEY",
            "DOUBLE",
        ] {
            assert!(message.contains(expected), "{expected:?} in {message}");
        }
        assert!(!message.contains("`keyed`"), "{message}");
    }
    let listed: Vec<_> = f
        .backups
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(listed, vec![exact.id.clone()]);
    let mut entries: Vec<_> = std::fs::read_dir(&f.store_path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        vec![exact.id.to_string()],
        "nothing else is stored"
    );

    f.scratch
        .execute("ALTER TABLE samples MODIFY f DOUBLE, MODIFY g DOUBLE")
        .await;
    f.backups.preflight(&f.driver).await.unwrap();
    f.backup()
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
}

/// 2,000 tables on a server with default lock settings (`max_locks_per_transaction` 64,
/// `max_connections` 100): a restore beside the live database, entry by entry, restores
/// and test-restores them; where the restore would be in place (a DBA owns the database)
/// its one transaction would run out of lock slots after emptying, so `check` says so and
/// the backup is refused before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_tables_restore_beside_and_in_place_is_refused_up_front() {
    let mut f = empty_fixture(Engine::Postgres).await;
    // In batches: creating them all in one transaction would run out of lock slots too.
    for batch in 0..20 {
        f.scratch
            .execute(&format!(
                "DO $$ BEGIN FOR i IN {}..{} LOOP
                     EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i);
                     EXECUTE format('INSERT INTO t%s VALUES (%s, ''row of table %s'')', i, i, i);
                 END LOOP; END $$",
                batch * 100 + 1,
                batch * 100 + 100
            ))
            .await;
    }
    let before = f.fingerprint().await;
    assert_eq!(before.tables.len(), 2000);
    let taken = f
        .backup()
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    f.backups
        .restore_test(&taken.id, APP, &f.driver, &EventSink::discard())
        .await
        .unwrap_or_else(|e| panic!("restore-test: {}", e.report()));
    f.scratch.execute("DROP TABLE t1, t2, t3").await;
    f.scratch.execute("DELETE FROM t2000").await;
    f.restore(&taken.id, APP)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    assert_eq!(f.fingerprint().await, before);

    f.scratch.give_to_dba().await;
    let checks = f.backups.checks(&f.driver).await;
    let restore = checks
        .iter()
        .find(|c| c.name == "restore")
        .expect("a restore check");
    let said = format!("{:?}", restore.result);
    assert!(
        restore.result.is_err() && said.contains("max_locks_per_transaction"),
        "{said}"
    );
    let refused = f.backup().await.unwrap_err();
    assert_eq!(
        refused.kind(),
        ErrorKind::InvalidInput,
        "{}",
        refused.report()
    );
    assert!(
        refused.report().contains("lock table holds"),
        "{}",
        refused.report()
    );
    assert!(
        f.backups.list().await.unwrap().len() == 1,
        "a refused backup was stored"
    );
}

/// MariaDB system-versioned tables keep their history through a backup and a restore
/// (`mariadb-dump --dump-history`), and the fingerprint covers the history rows: a
/// history deleted after the backup is a difference, and the restore brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_versioned_tables_keep_their_history() {
    let f = empty_fixture(Engine::MariaDb).await;
    for sql in [
        "CREATE TABLE prices (id INT PRIMARY KEY, amount DECIMAL(8,2)) WITH SYSTEM VERSIONING",
        "INSERT INTO prices VALUES (1, 10.00), (2, 20.00)",
        "UPDATE prices SET amount = 11.00 WHERE id = 1",
        "UPDATE prices SET amount = 12.00 WHERE id = 1",
        "DELETE FROM prices WHERE id = 2",
        "INSERT INTO prices VALUES (3, 30.00)",
    ] {
        f.scratch.execute(sql).await;
    }
    let history = "SELECT CONCAT_WS('|', id, amount, row_start, row_end) FROM prices FOR SYSTEM_TIME ALL ORDER BY id, row_start";
    let rows = |rows: Vec<sqlx::any::AnyRow>| -> Vec<String> {
        rows.iter().map(|r| sqlx::Row::get(r, 0)).collect()
    };
    let before = rows(f.scratch.rows(history).await);
    assert_eq!(before.len(), 5, "{before:?}");
    let fingerprint = f.fingerprint().await;
    assert_eq!(fingerprint.tables["prices"].rows, 5, "{fingerprint:?}");
    let taken = f
        .backup()
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));

    f.scratch.execute("DELETE HISTORY FROM prices").await;
    assert_eq!(rows(f.scratch.rows(history).await).len(), 2);
    assert_ne!(f.fingerprint().await, fingerprint);
    f.restore(&taken.id, APP)
        .await
        .unwrap_or_else(|e| panic!("{}", e.report()));
    assert_eq!(rows(f.scratch.rows(history).await), before);
    assert_eq!(f.fingerprint().await, fingerprint);
}

/// What no restore as the configured user could bring back is refused when the backup is
/// taken, and `check` says so first, before anything is stored or stopped: a MariaDB view
/// defined by another account (`SQL SECURITY DEFINER`) for a user without `SET USER`, and
/// a PostgreSQL table that forces row-level security on its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definers_and_forced_row_security_are_refused_by_check_and_backup() {
    // MariaDB: the test user (another account) defines a view in a database whose
    // application user may not set definers.
    let scratch = ScratchDatabase::create(Engine::MariaDb).await;
    scratch.seed_varied().await;
    scratch.execute("DROP TRIGGER IF EXISTS orders_audit").await;
    let (url, password) = scratch.restricted_user().await;
    scratch
        .execute("CREATE SQL SECURITY DEFINER VIEW totals AS SELECT customer_id, SUM(total) AS total FROM orders GROUP BY customer_id")
        .await;
    let mut f = fixture_of(scratch);
    f.use_account(&url, password);
    // Postgres: a table of the user that forces row-level security on its owner.
    let pg = fixture(Engine::Postgres).await;
    for sql in [
        "CREATE TABLE tenants_data (tenant int, note text)",
        "ALTER TABLE tenants_data ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE tenants_data FORCE ROW LEVEL SECURITY",
        "CREATE POLICY own ON tenants_data USING (tenant = 1)",
    ] {
        pg.scratch.execute(sql).await;
    }

    for (f, check, says) in [
        (&f, "definers", "SET USER"),
        (&pg, "row security", "FORCE ROW LEVEL SECURITY"),
    ] {
        let engine = f.scratch.engine();
        let checks = f.backups.checks(&f.driver).await;
        let found = checks
            .iter()
            .find(|c| c.name == check)
            .unwrap_or_else(|| panic!("{engine}: no {check} check"));
        let said = format!("{:?}", found.result);
        assert!(
            found.result.is_err() && said.contains(says),
            "{engine}: {said}"
        );
        let refused = f.backup().await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::InvalidInput, "{engine}");
        assert!(
            refused.report().contains(says),
            "{engine}: {}",
            refused.report()
        );
        assert!(
            f.backups.list().await.unwrap().is_empty(),
            "{engine}: a refused backup was stored"
        );
    }
}

/// An admin account (`[database] admin_user`) restores beside a database its application
/// user may not replace: PostgreSQL 15's standard layout with the bootstrap superuser,
/// MariaDB's user of one database with an account that has every right. The restore is
/// swapped in, exact, the objects keep their owner (PostgreSQL), and the replaced data is
/// kept beside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_account_restores_beside_a_database_the_user_may_not_replace() {
    // PostgreSQL: a DBA owns the database.
    let mut pg = fixture(Engine::Postgres).await;
    pg.scratch.give_to_dba().await;
    let superuser = TestEnv::get().postgres_superuser_url();
    let password = superuser
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user_info, _)| user_info.split_once(':'))
        .map(|(_, p)| p.to_string())
        .expect("a password in the superuser URL");
    pg.database = pg
        .database
        .clone()
        .with_admin("postgres", Some(password))
        .unwrap();
    // MariaDB: the user may not create databases; the test user (ALL on *.*) may.
    let scratch = ScratchDatabase::create(Engine::MariaDb).await;
    scratch.seed_varied().await;
    let (url, password) = scratch.restricted_user().await;
    let (admin_url, admin_password) = scratch.credentials();
    let admin = admin_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(user, _)| user.to_string())
        .unwrap();
    let mut my = fixture_of(scratch);
    my.database = Database::new(
        DatabaseEngine::Mariadb,
        &url,
        Some(password),
        ToolSite::Local,
    )
    .unwrap()
    .with_admin(&admin, Some(admin_password))
    .unwrap();

    for f in [&mut pg, &mut my] {
        let engine = f.scratch.engine();
        f.use_database(f.database.clone(), None);
        let how = cutover_backup::replacement(&f.database).await.unwrap();
        assert_eq!(how, cutover_backup::Replacement::Swap, "{engine}");
        let before = f.fingerprint().await;
        let taken = f
            .backup()
            .await
            .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
        f.scratch
            .execute("DELETE FROM orders WHERE id % 2 = 0")
            .await;
        f.scratch
            .execute("CREATE TABLE half_migrated (id int)")
            .await;
        f.restore(&taken.id, APP)
            .await
            .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
        assert_eq!(f.fingerprint().await, before, "{engine}");
        let kept = beside(f).await;
        assert!(
            kept.len() == 1 && kept[0].ends_with("_old"),
            "{engine}: {kept:?}"
        );
    }
    // The tables are still the application user's, the database the DBA's.
    let owners: Vec<String> = pg
        .scratch
        .rows(
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'public'
             UNION ALL SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()",
        )
        .await
        .iter()
        .map(|r| sqlx::Row::get(r, 0))
        .collect();
    let user = pg.database.user().to_string();
    assert_eq!(owners, [user, "postgres".to_string()]);
}
