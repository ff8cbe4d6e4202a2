//! A restore killed between any two of its statements, on the real PostgreSQL 15 and
//! MariaDB 10.11 servers of `scripts/testenv up`, beside the live database and in place:
//! the live database is never missing — its data is the old data or the backup's, by an
//! independent comparison through the engine's own client — and the same restore run
//! again (what `cutover resume` does) ends with exactly the backup. (MariaDB in place,
//! where the user may not create a database, drops and creates it: there only the second
//! part holds.)
//!
//! The kill is the restore's future dropped at a checkpoint (`DumpBackups::
//! with_checkpoints`): no error handling of the restore runs, its connections close and
//! its tools are killed, as when the process dies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cutover_backup::{
    Checkpoints, Database, DatabaseEngine, DumpBackups, LocalStore, Replacement, ToolSite,
};
use cutover_core::testkit::{FakeConfig, FakeDriver};
use cutover_core::{BackupId, BackupScope, Backups, Driver, EventSink, ExecTarget, ImageRef};
use cutover_tests::{Engine, ScratchDatabase};

const APP: &str = "apidog";

/// Where the MariaDB restore beside the live database has the data of one side and the
/// definitions (triggers, views, routines, events) of neither: between dropping the
/// triggers before the table swap and creating the backup's definitions after it.
const MARIADB_WINDOW: &[&str] = &[
    "mariadb: a trigger dropped before the swap",
    "mariadb: tables swapped",
    "mariadb: a replaced definition dropped",
    "mariadb: a definition created",
];

/// A small application of every kind of object a restore must bring back, created as the
/// user at `url` (with its password), so that it is their definer.
async fn seed(scratch: &ScratchDatabase, url: &str) {
    use sqlx::Connection;
    let statements: &[&str] = match scratch.engine() {
        Engine::Postgres => &[
            "CREATE TABLE parent (id serial PRIMARY KEY, name text NOT NULL)",
            "CREATE TABLE child (id serial PRIMARY KEY, parent_id int CONSTRAINT child_parent REFERENCES parent(id), note text)",
            "CREATE TABLE audit (id serial PRIMARY KEY, what text)",
            "CREATE FUNCTION audit_child() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit (what) VALUES ('child ' || NEW.id); RETURN NEW; END $$",
            "CREATE TRIGGER child_audit AFTER INSERT ON child FOR EACH ROW EXECUTE FUNCTION audit_child()",
            "CREATE VIEW named AS SELECT c.id, p.name FROM child c JOIN parent p ON p.id = c.parent_id",
            "INSERT INTO parent (name) SELECT 'parent ' || g FROM generate_series(1, 50) g",
            "INSERT INTO child (parent_id, note) SELECT 1 + g % 50, 'note ' || g FROM generate_series(1, 200) g",
        ],
        Engine::MariaDb => &[
            "CREATE TABLE parent (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40) NOT NULL)",
            "CREATE TABLE child (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT, note VARCHAR(40), CONSTRAINT child_parent FOREIGN KEY (parent_id) REFERENCES parent(id))",
            "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(40))",
            "CREATE TRIGGER child_audit AFTER INSERT ON child FOR EACH ROW INSERT INTO audit (what) VALUES (CONCAT('child ', NEW.id))",
            "CREATE TRIGGER child_note BEFORE INSERT ON child FOR EACH ROW SET NEW.note = COALESCE(NEW.note, 'none')",
            "CREATE VIEW named AS SELECT c.id, p.name FROM child c JOIN parent p ON p.id = c.parent_id",
            "CREATE VIEW named_count AS SELECT COUNT(*) AS n FROM named",
            "CREATE PROCEDURE add_parent(IN n VARCHAR(40)) INSERT INTO parent (name) VALUES (n)",
            "CREATE FUNCTION parents() RETURNS INT READS SQL DATA RETURN (SELECT COUNT(*) FROM parent)",
            "CREATE EVENT tidy ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE DO DELETE FROM audit WHERE id < 0",
            "INSERT INTO parent (name) SELECT CONCAT('parent ', seq) FROM seq_1_to_50",
            "INSERT INTO child (parent_id, note) SELECT 1 + seq % 50, CONCAT('note ', seq) FROM seq_1_to_200",
        ],
    };
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.close().await.unwrap();
}

/// What a failed migration does: rows changed and removed, a table, a view and a trigger
/// changed. The same statements on the backup's data give the same state every time.
async fn damage(scratch: &ScratchDatabase) {
    let statements: &[&str] = match scratch.engine() {
        Engine::Postgres => &[
            "UPDATE parent SET name = 'renamed' WHERE id <= 10",
            "DELETE FROM child WHERE id > 150",
            "CREATE TABLE migrated (id int)",
            "DROP VIEW named",
            "CREATE VIEW named AS SELECT id FROM child",
            "DROP TRIGGER child_audit ON child",
        ],
        Engine::MariaDb => &[
            "UPDATE parent SET name = 'renamed' WHERE id <= 10",
            "DELETE FROM child WHERE id > 150",
            "CREATE TABLE migrated (id INT)",
            "CREATE OR REPLACE VIEW named AS SELECT id FROM child",
            "DROP TRIGGER child_note",
            "DROP PROCEDURE add_parent",
        ],
    };
    for sql in statements {
        scratch.execute(sql).await;
    }
}

struct Setup {
    scratch: ScratchDatabase,
    database: Database,
    _store: tempfile::TempDir,
    store: std::path::PathBuf,
    driver: FakeDriver,
}

/// The database, in place (`in_place`: a DBA owns the PostgreSQL database; the MariaDB
/// user may not create databases) or beside.
async fn setup(engine: Engine, in_place: bool) -> Setup {
    sqlx::any::install_default_drivers();
    let mut scratch = ScratchDatabase::create(engine).await;
    let (url, password) = if in_place && engine == Engine::MariaDb {
        scratch.restricted_user().await
    } else {
        scratch.credentials()
    };
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host_path) = rest.split_once('@').unwrap();
    seed(
        &scratch,
        &format!("{scheme}://{user}:{password}@{host_path}"),
    )
    .await;
    if in_place && engine == Engine::Postgres {
        scratch.give_to_dba().await;
    }
    let kind = match engine {
        Engine::Postgres => DatabaseEngine::Postgres,
        Engine::MariaDb => DatabaseEngine::Mariadb,
    };
    let database = Database::new(kind, &url, Some(password), ToolSite::Local).unwrap();
    let how = cutover_backup::replacement(&database).await.unwrap();
    assert_eq!(
        matches!(how, Replacement::InPlace { .. }),
        in_place,
        "{engine}: {how:?}"
    );
    let store_dir = tempfile::tempdir().unwrap();
    let image: ImageRef = "registry.test/apidog/server:v2.7.80".parse().unwrap();
    Setup {
        scratch,
        database,
        store: store_dir.path().join("backups"),
        _store: store_dir,
        driver: FakeDriver::new(FakeConfig::new(image, 1, vec![])),
    }
}

impl Setup {
    fn backups(&self, points: Checkpoints) -> DumpBackups {
        DumpBackups::new(
            self.database.clone(),
            Arc::new(LocalStore::new(&self.store)),
            vec![],
            ExecTarget::AnyInstance,
        )
        .with_checkpoints(points)
    }

    async fn backup(&self) -> BackupId {
        let image: ImageRef = "registry.test/apidog/server:v2.7.80".parse().unwrap();
        self.backups(Checkpoints::default())
            .backup(
                BackupScope {
                    app: APP,
                    image: &image,
                    snapshot: None,
                    driver: &self.driver as &dyn Driver,
                },
                &EventSink::discard(),
            )
            .await
            .unwrap_or_else(|e| panic!("{}", e.report()))
            .id
    }

    async fn restore(
        &self,
        id: &BackupId,
        run: &str,
        points: Checkpoints,
    ) -> cutover_core::Result<()> {
        self.backups(points)
            .restore(id, APP, run, &self.driver, &EventSink::discard())
            .await
    }
}

/// Checkpoints that record every point they pass.
fn recording(passed: Arc<Mutex<Vec<&'static str>>>) -> Checkpoints {
    Checkpoints::new(Arc::new(move |point| {
        passed.lock().unwrap().push(point);
        Box::pin(async {})
    }))
}

/// Checkpoints that stop the restore for good at the `n`th point they pass (from 0),
/// after telling `stopped` which it was.
fn killing_at(n: usize, stopped: tokio::sync::mpsc::UnboundedSender<&'static str>) -> Checkpoints {
    let count = Arc::new(AtomicUsize::new(0));
    Checkpoints::new(Arc::new(move |point| {
        if count.fetch_add(1, Ordering::SeqCst) == n {
            let _ = stopped.send(point);
            Box::pin(std::future::pending())
        } else {
            Box::pin(async {})
        }
    }))
}

async fn kill_everywhere(engine: Engine, in_place: bool) {
    let s = setup(engine, in_place).await;
    let id = s.backup().await;
    let backed_up = s.scratch.independent_state();
    damage(&s.scratch).await;
    let damaged = s.scratch.independent_state();
    assert_ne!(backed_up.values, damaged.values);

    // Every point, the first time (the later restores also drop what the earlier ones
    // kept beside, which adds points).
    let passed = Arc::new(Mutex::new(Vec::new()));
    let run = cutover_core::journal::new_run_id();
    s.restore(&id, &run, recording(passed.clone()))
        .await
        .unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
    let first = passed.lock().unwrap().clone();
    assert!(first.len() >= 2, "{engine}: {first:?}");
    assert_eq!(
        s.scratch.independent_state().differences(&backed_up),
        Vec::<String>::new()
    );

    let mut killed_at = Vec::new();
    for n in 0.. {
        damage(&s.scratch).await;
        assert_eq!(
            s.scratch.independent_state().differences(&damaged),
            Vec::<String>::new()
        );
        let run = cutover_core::journal::new_run_id();
        let (tx, mut stopped) = tokio::sync::mpsc::unbounded_channel();
        let killed = tokio::select! {
            done = s.restore(&id, &run, killing_at(n, tx)) => {
                // Past the last point: the restore ran to its end.
                done.unwrap_or_else(|e| panic!("{engine}: {}", e.report()));
                break;
            }
            point = stopped.recv() => point.expect("a point"),
        };
        killed_at.push(killed);

        let at = format!(
            "{engine}, {} killed at {n} ({killed})",
            if in_place { "in place" } else { "beside" }
        );
        // MariaDB in place drops the database and creates it again (no transaction can
        // hold DDL): in between it is missing or partial, and only running the restore
        // again mends it.
        let between = !(in_place && engine == Engine::MariaDb);
        let window = MARIADB_WINDOW.contains(&killed);
        let now = match (between, window) {
            (false, _) => backed_up.clone(),
            (true, false) => s.scratch.independent_state(),
            (true, true) => cutover_tests::IndependentState {
                values: s.scratch.independent_values(),
                schema: String::new(),
            },
        };
        assert!(
            now.values == damaged.values || now.values == backed_up.values,
            "{at}: the data is neither the old data nor the backup: {:?} / {:?}",
            now.differences(&damaged),
            now.differences(&backed_up)
        );
        if !window {
            assert!(
                now.schema == damaged.schema || now.schema == backed_up.schema,
                "{at}: the definitions are neither the old ones nor the backup's: {:?}",
                now.differences(&backed_up)
            );
        }

        // What `cutover resume` does: the same restore of the same run again.
        s.restore(&id, &run, Checkpoints::default())
            .await
            .unwrap_or_else(|e| panic!("{at}, then run again: {}", e.report()));
        assert_eq!(
            s.scratch.independent_state().differences(&backed_up),
            Vec::<String>::new(),
            "{at}, then run again"
        );
    }
    for point in &first {
        assert!(
            killed_at.contains(point),
            "{engine}: never killed at {point}: {killed_at:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restore_killed_anywhere_beside_the_live_database_finishes_when_run_again() {
    kill_everywhere(Engine::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restore_killed_anywhere_in_place_finishes_when_run_again() {
    kill_everywhere(Engine::Postgres, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_restore_killed_anywhere_beside_the_live_database_finishes_when_run_again() {
    kill_everywhere(Engine::MariaDb, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_restore_killed_anywhere_in_place_finishes_when_run_again() {
    kill_everywhere(Engine::MariaDb, true).await;
}
