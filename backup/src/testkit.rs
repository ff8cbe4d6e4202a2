//! An engine over a real driver for end-to-end tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Database, DumpBackups, Fingerprint, LocalStore};
use cutover_core::driver::{ExecTarget, SharedDriver};
use cutover_core::machine::{BackupMode, Plan};
use cutover_core::{Engine, Finished, HealthCheck, ImageRef, Result, Settings, SqliteJournal};

/// An engine driving `driver` for `target` (the lock key), with the dump backup engine of
/// `database` storing into `dir/backups`, a SQLite journal at `dir/journal.db`, failed
/// instances' logs under `dir/runs`, and
/// health waits of at most `timeout`: what an end-to-end test of a driver needs.
pub async fn dump_engine(
    driver: SharedDriver,
    database: Database,
    target: &str,
    timeout: Duration,
    dir: &Path,
) -> Result<Engine> {
    let backups = DumpBackups::new(
        database,
        Arc::new(LocalStore::new(dir.join("backups"))),
        vec![],
        ExecTarget::AnyInstance,
    );
    let journal = SqliteJournal::open(dir.join("journal.db")).await?;
    let mut settings = Settings::new(target);
    settings.health = HealthCheck {
        timeout,
        ..HealthCheck::default()
    };
    settings.evidence_dir = Some(dir.join("runs"));
    Ok(Engine::new(
        driver,
        Arc::new(backups),
        Arc::new(journal),
        settings,
    ))
}

/// A driver's end-to-end harness: a [`dump_engine`] in a fresh directory of its own
/// (removed on drop), and the database it backs up. Each driver's engine tests build one
/// per deployment.
#[derive(Debug)]
pub struct EngineRun {
    /// The engine.
    pub engine: Engine,
    /// The application's database.
    pub database: Database,
    dir: PathBuf,
}

impl EngineRun {
    /// A harness for `driver` on `target` whose health waits last at most `timeout`.
    ///
    /// # Errors
    /// The directory or the journal cannot be created.
    pub async fn new(
        driver: SharedDriver,
        database: Database,
        target: &str,
        timeout: Duration,
    ) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cutover-engine-run-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| {
            cutover_core::Error::new(
                cutover_core::ErrorKind::Other,
                format!("creating {}: {e}", dir.display()),
            )
        })?;
        let engine = dump_engine(driver, database.clone(), target, timeout, &dir).await?;
        Ok(EngineRun {
            engine,
            database,
            dir,
        })
    }

    /// Where the journal (`journal.db`), backups (`backups/`) and failed instances' logs
    /// (`runs/`) are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Upgrades to `to` with an offline backup, downgrades allowed (tests move between
    /// their own tags freely).
    ///
    /// # Panics
    /// When the journal fails.
    pub async fn upgrade(&self, to: ImageRef) -> Finished {
        self.engine
            .start(Plan::Upgrade {
                to,
                backup: BackupMode::Offline,
                replicas: None,
                allow_downgrade: true,
                hooks: Default::default(),
            })
            .await
            .expect("the journal works")
    }

    /// The database's fingerprint now.
    ///
    /// # Panics
    /// When the database cannot be read.
    pub async fn fingerprint(&self) -> Fingerprint {
        self.database
            .connect()
            .await
            .expect("connect to the database")
            .fingerprint()
            .await
            .expect("fingerprint the database")
    }
}

impl Drop for EngineRun {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
