//! [`DumpBackups`]: backups with the database's own tools, storage archives through the
//! driver, a fingerprint from the database, all streamed into a [`Store`].
//!
//! # Taking a backup
//! 1. Stage the backup in the store (nothing visible yet).
//! 2. Dump the database through the compressor and hasher into part `database.zst`;
//!    meanwhile the fingerprint is computed on the same data: on PostgreSQL the dump runs
//!    on a snapshot exported by the fingerprinting connection; on MySQL/MariaDB that
//!    connection starts its snapshot under a global read lock and releases the lock once
//!    the dump has started its own. Without the lock (no `RELOAD` privilege) the
//!    fingerprint is taken before and after the dump and is marked exact only if equal.
//!    On MySQL/MariaDB the dump leaves out the triggers; the same part then holds the
//!    exact values of the FLOATs the dump printed inexactly, and then the triggers
//!    (`floats`).
//! 3. Archive each storage path through the driver into `storage-N.tar.zst`.
//! 4. Write the manifest last; the backup becomes visible.
//! 5. Re-read every part and check its size and SHA-256 before accepting the backup.
//!
//! # Restoring
//! Every check comes before the first change: application identity, engine, checksums of
//! every part, what the server must accept. Then the dump is loaded beside the live
//! database, compared with the manifest's fingerprint and swapped in (or, where the server
//! allows no database beside, restored in place; see `restore`), and the storage paths are
//! replaced. A failure before the data was replaced says so ([`Error::nothing_changed`]).
//!
//! # Sweeping
//! [`Backups::sweep`] deletes what unfinished backups left in the store once untouched
//! for [`UNFINISHED_MIN_AGE`] (settable with [`DumpBackups::with_unfinished_min_age`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::database::{Conn, Consistency, DUMP_STARTED_MARKER, Database};
use crate::manifest::{
    DatabaseEngine, DatabaseInfo, MANIFEST_SCHEMA, Manifest, Part, PartKind, Statement,
};
use crate::pipeline::{Watch, decompress, hash, store_compressed};
use crate::restore::{
    Checkpoints, Job, Replacement, compare, load, replacement, restore_database, restore_key,
    unchanged,
};
use crate::store::{Store, UNFINISHED_MIN_AGE};
use crate::{floats, restorable};
use cutover_core::backup::{BackupId, BackupRef, BackupScope, BackupSummary, Backups, Swept};
use cutover_core::check::{self, Check};
use cutover_core::driver::{Driver, ExecTarget};
use cutover_core::event::{EventSink, Unit, human_bytes};
use cutover_core::{Error, ErrorKind, Result};

const DATABASE_PART: &str = "database.zst";
/// What the in-memory pipe between a tool and the compressor (or the decompressor and a
/// tool) holds at most. Its buffer grows to about twice this while the consumer lags, so
/// it is kept small: a larger one only makes peak memory depend on how long a backup
/// runs (bench/backup: 1 MiB here cost 2 MiB more on a 1 GB database than on 250 MB).
const PIPE: usize = 256 * 1024;

/// The backup engine for PostgreSQL, MySQL and MariaDB applications.
#[derive(Debug, Clone)]
pub struct DumpBackups {
    database: Database,
    store: Arc<dyn Store>,
    paths: Vec<String>,
    storage_at: ExecTarget,
    unfinished_min_age: Duration,
    checkpoints: Checkpoints,
}

impl DumpBackups {
    /// Backups of `database` into `store`, archiving `paths` at `storage_at` through the
    /// driver.
    pub fn new(
        database: Database,
        store: Arc<dyn Store>,
        paths: Vec<String>,
        storage_at: ExecTarget,
    ) -> Self {
        Self {
            database,
            store,
            paths,
            storage_at,
            unfinished_min_age: UNFINISHED_MIN_AGE,
            checkpoints: Checkpoints::default(),
        }
    }

    /// Calls `checkpoints` at every point of the restore path between two statements that
    /// change something: for tests that stop a restore there as a kill would.
    pub fn with_checkpoints(mut self, checkpoints: Checkpoints) -> Self {
        self.checkpoints = checkpoints;
        self
    }

    /// Sweeps unfinished backups once untouched for `age` instead of
    /// [`UNFINISHED_MIN_AGE`]. Shorter is only safe when no other process writes to the
    /// store (tests).
    pub fn with_unfinished_min_age(mut self, age: Duration) -> Self {
        self.unfinished_min_age = age;
        self
    }

    /// Whether the store has room for a backup of this database, `size` bytes as the
    /// server reports it: about what the newest backup of it took (its stored bytes and a
    /// quarter more for growth), as its manifest records. Without one, PostgreSQL's size on
    /// disk halved is required; MySQL/MariaDB's size comes from table statistics, which can
    /// be many times the data right after a bulk load, so it is only said, not required.
    async fn room_for(&self, size: u64) -> Result<String> {
        let free = self.store.available().await?;
        let describe = |estimate: u64, basis: &str| match free {
            Some(free) => format!(
                "{} free; the backup needs about {} ({basis})",
                human_bytes(free),
                human_bytes(estimate)
            ),
            None => format!(
                "the store does not report its free space; the backup needs about {} ({basis})",
                human_bytes(estimate)
            ),
        };
        let (estimate, basis) = match self.last_backup().await {
            Some((bytes, id)) => (
                bytes + bytes / 4,
                format!("backup {id} took {}", human_bytes(bytes)),
            ),
            None if self.database.engine() == DatabaseEngine::Postgres => (
                size / 2,
                format!(
                    "half the database's {} on disk, with no earlier backup to go by",
                    human_bytes(size)
                ),
            ),
            None => {
                return Ok(describe(
                    size / 2,
                    "by the server's table statistics, which are not required to fit: no earlier backup to go by",
                ));
            }
        };
        match free {
            Some(free) if free < estimate => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the backup store {} has {} free; the backup needs about {} ({basis}); free some space or prune backups; nothing was changed",
                    self.store.describe(),
                    human_bytes(free),
                    human_bytes(estimate),
                ),
            )),
            _ => Ok(describe(estimate, &basis)),
        }
    }

    /// The checks of [`Backups::checks`]; without `writes` (a run that writes no backup)
    /// not the store's room and writability, so that a read-only or full store can still
    /// be restored from.
    async fn checks_with(&self, driver: &dyn Driver, writes: bool) -> Vec<Check> {
        let mut checks = Vec::new();
        let size = match self.database.connect().await {
            Ok(mut conn) => {
                let found = async {
                    let version = conn.server_version().await?;
                    let size = conn.size().await?;
                    Ok::<_, Error>((version, size))
                }
                .await;
                match found {
                    Ok((version, size)) => {
                        checks.push(Check::passed(
                            "database",
                            format!("reachable: server {version}, {}", human_bytes(size)),
                        ));
                        checks.push(Check::of(
                            "float values",
                            floats::check(&mut conn)
                                .await
                                .map(|()| "every FLOAT survives a dump, or has a key".into()),
                        ));
                        checks.push(Check::of("largest row", largest_row_fits(&mut conn).await));
                        checks.extend(restorable::checks(&self.database, &mut conn).await);
                        Some(size)
                    }
                    Err(e) => {
                        checks.push(Check::failed("database", e));
                        None
                    }
                }
            }
            Err(e) => {
                checks.push(Check::failed("database", e));
                None
            }
        };
        checks.push(Check::of(
            "dump tools",
            self.database
                .check_tools(driver)
                .await
                .map(|()| "present and answering --version".into()),
        ));
        if !self.paths.is_empty() {
            checks.push(if driver.capabilities().archive {
                Check::passed("storage paths", format!("{:?} can be archived", self.paths))
            } else {
                Check::failed(
                    "storage paths",
                    Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "[backup] paths {:?} cannot be backed up: the {} driver cannot archive files",
                            self.paths,
                            driver.info().kind
                        ),
                    ),
                )
            });
        }
        if !writes {
            return checks;
        }
        if let Some(size) = size {
            checks.push(Check::of("backup store room", self.room_for(size).await));
        }
        checks.push(Check::of(
            "backup store writable",
            self.probe_store()
                .await
                .map(|()| format!("{} takes a part", self.store.describe())),
        ));
        checks
    }

    /// Writes and removes a small part through the store's own staging, as a backup
    /// would: a read-only mount, a full disk or missing credentials show here, before
    /// anything changes, instead of after the application was stopped.
    async fn probe_store(&self) -> Result<()> {
        let nonce = cutover_core::journal::new_run_id();
        let id: BackupId =
            format!("cutover-probe-{}", nonce.rsplit('-').next().unwrap_or("0")).parse()?;
        let unwritable = |e: Error| {
            Error::new(
                e.kind(),
                format!(
                    "the backup store {} cannot be written: {}; nothing was changed",
                    self.store.describe(),
                    e.message()
                ),
            )
            .with_source(e)
        };
        let mut staged = self.store.stage(&id).await.map_err(unwritable)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.send(b"cutover store probe\n".to_vec()).await;
        drop(tx);
        let written = staged.write_part("probe", rx).await;
        staged.abort().await;
        written.map_err(unwritable)
    }

    /// The stored size of the newest backup of this database (by name), and its id.
    async fn last_backup(&self) -> Option<(u64, BackupId)> {
        let ids = self.store.list().await.ok()?;
        let mut newest: Option<Manifest> = None;
        for id in ids {
            let Ok(m) = self.store.manifest(&id).await else {
                continue;
            };
            if m.database.name == self.database.name()
                && newest.as_ref().is_none_or(|n| m.created > n.created)
            {
                newest = Some(m);
            }
        }
        newest.map(|m| (m.bytes(), m.id))
    }

    fn new_id(app: &str) -> Result<BackupId> {
        let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let run = cutover_core::journal::new_run_id();
        let nonce = run.rsplit('-').next().unwrap_or("0");
        let app: String = app.chars().take(64).collect();
        format!("{stamp}-{app}-{nonce}").parse()
    }

    fn check_identity(&self, manifest: &Manifest, app: &str) -> Result<()> {
        if manifest.app != app {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "backup {} belongs to application {:?}, not {app:?}; nothing was changed",
                    manifest.id, manifest.app
                ),
            ));
        }
        if !manifest.database.engine.compatible(self.database.engine()) {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "backup {} is a {} dump; this database is {}; nothing was changed",
                    manifest.id,
                    manifest.database.engine.as_str(),
                    self.database.engine().as_str()
                ),
            ));
        }
        Ok(())
    }

    /// The manifest of `id`, after checking its identity and every part's checksum.
    async fn checked(&self, id: &BackupId, app: &str) -> Result<Manifest> {
        let manifest = self.store.manifest(id).await?;
        self.check_identity(&manifest, app)?;
        self.check_parts(&manifest).await?;
        Ok(manifest)
    }

    /// Checks every part's size and checksum against the manifest.
    async fn check_parts(&self, manifest: &Manifest) -> Result<()> {
        let all: Vec<&Part> = manifest.parts.iter().collect();
        self.check_these(manifest, &all).await
    }

    /// Checks the size and checksum of `parts` of `manifest`.
    async fn check_these(&self, manifest: &Manifest, parts: &[&Part]) -> Result<()> {
        for part in parts {
            let (bytes, sha) = hash(self.store.read(&manifest.id, &part.name).await?).await?;
            if let Some(damage) = part.damage(&manifest.id, bytes, &sha) {
                return Err(damage);
            }
        }
        Ok(())
    }

    async fn take(
        &self,
        id: &BackupId,
        scope: &BackupScope<'_>,
        events: &EventSink,
        staged: &mut dyn crate::store::Staged,
    ) -> Result<Manifest> {
        let mut conn = self.database.connect().await?;
        restorable::refusal(&self.database, &mut conn).await?;
        let server_version = conn.server_version().await?;
        let expected = conn.size().await.ok();
        let limit = conn.max_statement().await?;
        let definers = conn.definers().await?;
        let (charset, collation) = conn.character_set().await?;
        let counters_before = conn.counters().await?;
        let consistency = conn.pin().await?;
        let (snapshot, before) = match &consistency {
            Consistency::Exported(id) => (Some(id.as_str()), None),
            Consistency::ReadLocked => (None, None),
            Consistency::Unpinned(why) => {
                events.warn(format!(
                    "{why}: the fingerprint is computed before and after the dump, which takes longer"
                ));
                (None, Some(conn.fingerprint().await?))
            }
        };

        // Dump → compressor → store, streaming; the fingerprint runs meanwhile on the
        // dump's own data (PostgreSQL: its exported snapshot; MySQL: a snapshot taken under
        // the global read lock, released once the dump has started its own).
        let history = !conn.versioned_tables().await?.is_empty();
        let argv = self.database.dump_argv(snapshot, history);
        let (reader, writer) = tokio::io::duplex(PIPE);
        let (started_tx, started) = tokio::sync::oneshot::channel();
        // Only a read lock waits for the dump to start; scanning a whole dump for the
        // marker would cost as much CPU as hashing it.
        let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> =
            if matches!(consistency, Consistency::ReadLocked) {
                Box::new(Watch::new(reader, DUMP_STARTED_MARKER, started_tx))
            } else {
                Box::new(reader)
            };
        // MySQL/MariaDB: the FLOAT fix-ups and then the triggers follow the dump (`floats`).
        let (reader, after) = floats::follow(self.database.engine(), reader, PIPE);
        let (fixups, triggers) = after.unzip();
        let dump = async {
            let status = self
                .database
                .run_tool(scope.driver, &argv, None, Some(Box::pin(writer)))
                .await;
            match triggers {
                Some(triggers) => triggers.run(status, &self.database, scope.driver).await,
                None => status,
            }
        };
        let progress = |n| events.progress(n, expected, Unit::Bytes);
        // The dump's longest statement must fit the server's max_allowed_packet.
        let measure = limit.is_some();
        let stored = store_compressed(reader, staged, DATABASE_PART, measure, progress);
        let during = async {
            let fingerprint = match consistency {
                Consistency::Exported(_) => Some(conn.fingerprint().await),
                Consistency::ReadLocked => {
                    let _ = started.await;
                    Some(match conn.release_writes().await {
                        Ok(()) => conn.fingerprint().await,
                        Err(e) => Err(e),
                    })
                }
                Consistency::Unpinned(_) => None,
            };
            let fixed = match fixups {
                Some(fixups) => fixups.write(&mut conn).await,
                None => Ok(()),
            };
            (fingerprint, fixed)
        };
        let (status, written, (during, fixed)) = tokio::join!(dump, stored, during);
        conn.end_snapshot().await;
        // When the store fails (a full disk), the dump then fails on a broken pipe: the
        // store's error is the cause worth reporting.
        let written = written?;
        self.database.check_exit(&argv, &status?, "dump")?;
        fixed?;
        let longest_statement = written
            .longest_statement
            .as_ref()
            .map(|longest| Statement::from_head(longest.bytes, &longest.head));
        if let (Some(statement), Some(limit)) = (&longest_statement, limit) {
            fits_packet(statement, limit, "this server", "backup")?;
        }
        let (fingerprint, exact) = match (during, before) {
            (Some(fingerprint), _) => (fingerprint?, true),
            (None, Some(before)) => {
                let after = conn.fingerprint().await?;
                let exact = after == before;
                if !exact {
                    events.warn(format!(
                        "the database changed while backup {id} was taken (online backup); its fingerprint is approximate"
                    ));
                }
                (before, exact)
            }
            (None, None) => (conn.fingerprint().await?, false),
        };
        // Counters are outside the snapshot: where one moved during the dump, the value
        // the dump holds is unknown, and a restore compares only that it exists.
        let mut fingerprint = fingerprint;
        let counters_after = conn.counters().await?;
        if let Some(objects) = &fingerprint.objects {
            fingerprint.approximate = counters_after
                .iter()
                .filter(|(name, after)| {
                    objects.get(*name) != Some(after) || counters_before.get(*name) != Some(after)
                })
                .map(|(name, _)| name.clone())
                .collect();
        }
        let mut parts = vec![Part {
            name: DATABASE_PART.into(),
            kind: PartKind::Database,
            bytes: written.bytes,
            raw_bytes: written.raw_bytes,
            sha256: written.sha256,
        }];

        for (i, path) in self.paths.iter().enumerate() {
            let name = format!("storage-{i}.tar.zst");
            let tar = scope
                .driver
                .archive(&self.storage_at, path)
                .await
                .map_err(|e| {
                    Error::new(
                        e.kind(),
                        format!("cannot archive storage path {path}: {}", e.message()),
                    )
                })?;
            let written = store_compressed(tar, staged, &name, false, |_| {}).await?;
            parts.push(Part {
                name,
                kind: PartKind::Storage { path: path.clone() },
                bytes: written.bytes,
                raw_bytes: written.raw_bytes,
                sha256: written.sha256,
            });
        }

        Ok(Manifest {
            schema: MANIFEST_SCHEMA.into(),
            id: id.clone(),
            created: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            app: scope.app.to_string(),
            // The reference as operators name it; what ran, by content, beside it.
            image: scope.image.without_digest().to_string(),
            digest: scope.image.digest().map(str::to_owned),
            snapshot: scope.snapshot.cloned(),
            database: DatabaseInfo {
                engine: self.database.engine(),
                server_version,
                name: self.database.name().to_string(),
                longest_statement,
                definers,
                size_bytes: expected,
                charset: Some(charset),
                collation: Some(collation),
            },
            parts,
            fingerprint,
            fingerprint_exact: exact,
        })
    }
}

/// Whether the dump's longest statement, estimated from the largest row, is one the
/// server accepts (MySQL/MariaDB; PostgreSQL has no such limit below its 1 GB field).
/// The backup measures the dump's real longest statement again.
async fn largest_row_fits(conn: &mut Conn) -> Result<String> {
    let Some(limit) = conn.max_statement().await? else {
        return Ok("no statement limit to fit".into());
    };
    let Some((table, bytes)) = conn.largest_row(limit).await? else {
        return Ok(format!(
            "no table can hold a row near max_allowed_packet ({})",
            human_bytes(limit)
        ));
    };
    let statement = Statement {
        bytes,
        table: Some(table),
    };
    fits_packet(&statement, limit, "this server", "backup")?;
    Ok(format!(
        "{} takes about {} in the dump; max_allowed_packet is {}",
        statement.describe(),
        human_bytes(bytes),
        human_bytes(limit)
    ))
}

/// Whether a dump statement fits the `max_allowed_packet` (`limit`) of the server it
/// would be restored into; `what` is refused otherwise, naming the table, the size
/// needed and the setting.
fn fits_packet(statement: &Statement, limit: u64, server: &str, what: &str) -> Result<()> {
    // The server counts the command byte in front of the statement.
    let needed = statement.bytes + 1;
    if needed <= limit {
        return Ok(());
    }
    // Rounded up to a whole MiB, the unit operators set it in.
    let advice = needed.div_ceil(1 << 20) << 20;
    // A refused backup may come after an offline upgrade's stop: it stores nothing, and
    // the engine says what became of the deployment.
    let changed = if what == "backup" {
        "no backup was stored"
    } else {
        "nothing was changed"
    };
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "{what} refused: {} takes {} in the dump ({} bytes), more than {server}'s max_allowed_packet of {} ({limit} bytes), so a restore would fail after emptying the database. Raise max_allowed_packet to at least {advice} (SET GLOBAL max_allowed_packet = {advice}; and in the server's configuration), then run the command again; {changed}",
            statement.describe(),
            human_bytes(statement.bytes),
            statement.bytes,
            human_bytes(limit),
        ),
    ))
}

/// Everything that can be checked before a restore into `database` empties anything:
/// the server is not older than the dump's, it accepts the dump's longest statement, and
/// the restoring user may create the objects of every definer.
async fn check_restorable(database: &Database, manifest: &Manifest) -> Result<()> {
    // MySQL/MariaDB: all of it is the server's, and an in-place restore killed between
    // its drop and its create left no database to connect to.
    let mut conn = match database.engine() {
        crate::DatabaseEngine::Postgres => database.connect().await?,
        _ => database.connect_server().await?,
    };
    let version = conn.server_version().await?;
    if let Some(why) = older_server(&manifest.database.server_version, &version) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "restore of backup {} refused: {why}; nothing was changed",
                manifest.id
            ),
        ));
    }
    if let (Some(statement), Some(limit)) = (
        &manifest.database.longest_statement,
        conn.max_statement().await?,
    ) {
        fits_packet(
            statement,
            limit,
            "the server",
            &format!("restore of backup {}", manifest.id),
        )?;
    }
    let foreign = conn.foreign_definers(&manifest.database.definers).await?;
    if !foreign.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "restore of backup {} refused: its views, routines, triggers or events are defined by {}, and the database user may only create objects defined by itself without the SUPER or SET USER privilege. Grant it (GRANT SET USER ON *.* TO …), or restore as an account that has it; nothing was changed",
                manifest.id,
                foreign.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Why a dump from a server of version `dumped` may not load into one of version `now`:
/// an older major version (the dump may use what it lacks). Versions of different
/// families (MySQL, MariaDB) are not compared.
fn older_server(dumped: &str, now: &str) -> Option<String> {
    let family = |v: &str| v.to_ascii_lowercase().contains("mariadb");
    if family(dumped) != family(now) {
        return None;
    }
    // The major version: PostgreSQL ≥ 10 `15.18` → [15]; MySQL `8.0.36` → [8, 0] and
    // MariaDB `10.11.6-MariaDB` → [10, 11] (and PostgreSQL before 10, `9.6.24` → [9, 6]).
    let key = |v: &str| -> Vec<u32> {
        let n: Vec<u32> = v
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .take(2)
            .map(|s| s.parse().unwrap_or(u32::MAX))
            .collect();
        let single = !family(v) && n.first().is_some_and(|&major| major >= 10);
        n.into_iter().take(if single { 1 } else { 2 }).collect()
    };
    (key(now) < key(dumped)).then(|| {
        format!("the dump comes from server version {dumped}, this server is older ({now})")
    })
}

#[async_trait]
impl Backups for DumpBackups {
    async fn preflight(&self, driver: &dyn Driver) -> Result<()> {
        check::first_failure(self.checks(driver).await)
    }

    async fn checks(&self, driver: &dyn Driver) -> Vec<Check> {
        self.checks_with(driver, true).await
    }

    async fn read_checks(&self, driver: &dyn Driver) -> Vec<Check> {
        self.checks_with(driver, false).await
    }

    async fn backup(&self, scope: BackupScope<'_>, events: &EventSink) -> Result<BackupRef> {
        let id = Self::new_id(scope.app)?;
        let mut staged = self.store.stage(&id).await?;
        let manifest = match self.take(&id, &scope, events, staged.as_mut()).await {
            Ok(m) => m,
            Err(e) => {
                staged.abort().await;
                return Err(e);
            }
        };
        staged.commit(&manifest).await?;
        if let Err(e) = self.check_parts(&manifest).await {
            let _ = self.store.delete(&id).await;
            return Err(e);
        }
        Ok(BackupRef {
            id,
            bytes: manifest.bytes(),
        })
    }

    async fn verify(&self, id: &BackupId, app: &str) -> Result<BackupRef> {
        let manifest = self.checked(id, app).await?;
        Ok(BackupRef {
            id: id.clone(),
            bytes: manifest.bytes(),
        })
    }

    async fn restore(
        &self,
        id: &BackupId,
        app: &str,
        run: &str,
        driver: &dyn Driver,
        events: &EventSink,
    ) -> Result<()> {
        let checked = async {
            let manifest = self.store.manifest(id).await?;
            self.check_identity(&manifest, app)?;
            let how = replacement(&self.database).await?;
            // In place, every part is checked before the database is emptied. Beside the
            // live database, the dump is checked on its way in and by the fingerprint
            // before the swap: one read of it fewer in the downtime.
            let first: Vec<&Part> = manifest
                .parts
                .iter()
                .filter(|p| how != Replacement::Swap || p.kind != PartKind::Database)
                .collect();
            self.check_these(&manifest, &first).await?;
            for part in &manifest.parts {
                if let PartKind::Storage { path } = &part.kind
                    && !driver.capabilities().archive
                {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "backup {id} holds storage path {path}, but the {} driver cannot unarchive",
                            driver.info().kind
                        ),
                    ));
                }
            }
            check_restorable(&self.database, &manifest).await?;
            Ok((manifest, how))
        };
        let (manifest, how) = checked.await.map_err(unchanged)?;
        let job = Job {
            store: &*self.store,
            manifest: &manifest,
            driver,
            events,
            points: &self.checkpoints,
        };
        restore_database(&self.database, &job, &restore_key(run, id), how).await?;
        self.checkpoints.at("storage: before the archives").await;
        for part in &manifest.parts {
            let PartKind::Storage { path } = &part.kind else {
                continue;
            };
            let source = self.store.read(id, &part.name).await?;
            let (reader, writer) = tokio::io::duplex(PIPE);
            let feed = decompress(source, writer, |_| {});
            let put = driver.unarchive(&self.storage_at, path, Box::pin(reader));
            let (fed, put) = tokio::join!(feed, put);
            put?;
            fed?;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<BackupSummary>> {
        let mut out = Vec::new();
        for id in self.store.list().await? {
            match self.store.manifest(&id).await {
                Ok(m) => out.push(BackupSummary {
                    bytes: m.bytes(),
                    id,
                    created: m.created,
                    app: m.app,
                    image: m.image,
                    digest: m.digest,
                    damaged: None,
                }),
                // One unreadable manifest must not hide every other backup.
                Err(e) if e.kind() == ErrorKind::Integrity => out.push(BackupSummary {
                    id,
                    created: String::new(),
                    app: String::new(),
                    image: String::new(),
                    digest: None,
                    bytes: 0,
                    damaged: Some(e.message().to_string()),
                }),
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }

    async fn prune(&self, app: &str, keep: usize, protected: &[BackupId]) -> Result<Vec<BackupId>> {
        let mine: Vec<BackupSummary> = self
            .list()
            .await?
            .into_iter()
            .filter(|b| b.app == app)
            .collect();
        let mut deleted = Vec::new();
        for b in mine.into_iter().skip(keep) {
            if protected.contains(&b.id) {
                continue;
            }
            self.store.delete(&b.id).await?;
            deleted.push(b.id);
        }
        Ok(deleted)
    }

    async fn sweep(&self, protected: &[BackupId]) -> Result<Vec<Swept>> {
        let mut swept = Vec::new();
        for leftover in self.store.unfinished(self.unfinished_min_age).await? {
            if leftover
                .id
                .as_ref()
                .is_some_and(|id| protected.contains(id))
            {
                continue;
            }
            match self.store.discard(&leftover).await {
                Ok(()) => swept.push(Swept {
                    name: leftover.name,
                    bytes: leftover.bytes,
                }),
                // Written to since it was listed: someone is at work there after all.
                Err(e) if e.kind() == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
        }
        Ok(swept)
    }

    /// Restores into a scratch database on the same server, compares fingerprints,
    /// drops it: proof that the backup restores.
    async fn restore_test(
        &self,
        id: &BackupId,
        app: &str,
        driver: &dyn Driver,
        events: &EventSink,
    ) -> Result<()> {
        let manifest = self.checked(id, app).await?;
        let scratch_name = format!(
            "cutover_verify_{}",
            cutover_core::journal::new_run_id()
                .rsplit('-')
                .next()
                .unwrap_or("0")
        );
        check_restorable(&self.database, &manifest).await?;
        let scratch = self.database.create_scratch(&scratch_name).await?;
        let result = async {
            let job = Job {
                store: &*self.store,
                manifest: &manifest,
                driver,
                events,
                points: &Checkpoints::default(),
            };
            load(&scratch, &job).await?;
            compare(&scratch, &manifest).await
        }
        .await;
        let dropped = self.database.drop_scratch(&scratch_name).await;
        result.and(dropped)
    }
}
