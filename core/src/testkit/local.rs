//! An engine over a real driver for end-to-end tests.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::backup::{Database, DumpBackups, LocalStore};
use crate::driver::{ExecTarget, SharedDriver};
use crate::{Engine, HealthCheck, Result, Settings, SqliteJournal};

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
