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
//! every part. Then the database is emptied and the dump restored, storage paths replaced,
//! and the fingerprint compared with the manifest's.
//!
//! # Sweeping
//! [`Backups::sweep`] deletes what unfinished backups left in the store once untouched
//! for [`UNFINISHED_MIN_AGE`] (settable with [`DumpBackups::with_unfinished_min_age`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::database::{Consistency, DUMP_STARTED_MARKER, Database};
use super::floats;
use super::manifest::{DatabaseInfo, MANIFEST_SCHEMA, Manifest, Part, PartKind};
use super::pipeline::{Watch, decompress, hash, store_compressed};
use super::store::{Store, UNFINISHED_MIN_AGE};
use super::{BackupId, BackupRef, BackupScope, BackupSummary, Backups, Swept};
use crate::driver::{Driver, ExecTarget};
use crate::event::{EventSink, Unit};
use crate::{Error, ErrorKind, Result};

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
        }
    }

    /// Sweeps unfinished backups once untouched for `age` instead of
    /// [`UNFINISHED_MIN_AGE`]. Shorter is only safe when no other process writes to the
    /// store (tests).
    pub fn with_unfinished_min_age(mut self, age: Duration) -> Self {
        self.unfinished_min_age = age;
        self
    }

    fn new_id(app: &str) -> Result<BackupId> {
        let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let run = crate::journal::new_run_id();
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
        for part in &manifest.parts {
            let (bytes, sha) = hash(self.store.read(&manifest.id, &part.name).await?).await?;
            if bytes != part.bytes || sha != part.sha256 {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "part {} of backup {} is damaged ({} bytes, expected {}; checksum {})",
                        part.name,
                        manifest.id,
                        bytes,
                        part.bytes,
                        if sha == part.sha256 {
                            "matches"
                        } else {
                            "differs"
                        }
                    ),
                )
                .with_subject(manifest.id.to_string()));
            }
        }
        Ok(())
    }

    async fn take(
        &self,
        id: &BackupId,
        scope: &BackupScope<'_>,
        events: &EventSink,
        staged: &mut dyn super::store::Staged,
    ) -> Result<Manifest> {
        let mut conn = self.database.connect().await?;
        let server_version = conn.server_version().await?;
        let expected = conn.size().await.ok();
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
        let argv = self.database.dump_argv(snapshot);
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
        let stored = store_compressed(reader, staged, DATABASE_PART, progress);
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
            let written = store_compressed(tar, staged, &name, |_| {}).await?;
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
            image: scope.image.to_string(),
            snapshot: scope.snapshot.cloned(),
            database: DatabaseInfo {
                engine: self.database.engine(),
                server_version,
                name: self.database.name().to_string(),
            },
            parts,
            fingerprint,
            fingerprint_exact: exact,
        })
    }
}

async fn restore_database(
    database: &Database,
    store: &dyn Store,
    manifest: &Manifest,
    driver: &dyn Driver,
    events: &EventSink,
) -> Result<()> {
    let part = manifest
        .parts
        .iter()
        .find(|p| p.kind == PartKind::Database)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Integrity,
                format!("backup {} has no database part", manifest.id),
            )
        })?;
    let source = store.read(&manifest.id, &part.name).await?;
    let (reader, writer) = tokio::io::duplex(PIPE);
    let argv = database.restore_argv();
    let total = Some(part.raw_bytes);
    let feed = decompress(source, writer, |n| events.progress(n, total, Unit::Bytes));
    let run = database.run_tool(driver, &argv, Some(Box::pin(reader)), None);
    let (fed, status) = tokio::join!(feed, run);
    database.check_exit(&argv, &status?, "restore")?;
    fed.map(|_| ())
}

async fn compare(database: &Database, manifest: &Manifest) -> Result<()> {
    let now = database.connect().await?.fingerprint().await?;
    let differences = manifest.fingerprint.differences(&now);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "after restoring backup {} the data differs from the backup: {}",
                manifest.id,
                differences.join(", ")
            ),
        ))
    }
}

#[async_trait]
impl Backups for DumpBackups {
    async fn preflight(&self, driver: &dyn Driver) -> Result<()> {
        let mut conn = self.database.connect().await?;
        let size = conn.size().await?;
        floats::check(&mut conn).await?;
        self.database.check_tools(driver).await?;
        if !self.paths.is_empty() && !driver.capabilities().archive {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "[backup] paths {:?} cannot be backed up: the {} driver cannot archive files",
                    self.paths,
                    driver.info().kind
                ),
            ));
        }
        // A compressed dump is usually far smaller than the database; half is a margin,
        // not a promise.
        if let Some(free) = self.store.available().await?
            && free < size / 2
        {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the backup store {} has {free} bytes free; the database holds {size} bytes",
                    self.store.describe()
                ),
            ));
        }
        Ok(())
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
        driver: &dyn Driver,
        events: &EventSink,
    ) -> Result<()> {
        let manifest = self.checked(id, app).await?;
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

        self.database.empty().await?;
        restore_database(&self.database, &*self.store, &manifest, driver, events).await?;
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
        match compare(&self.database, &manifest).await {
            Err(e) if !manifest.fingerprint_exact => {
                events.warn(format!(
                    "{} (the backup was taken online while the data changed)",
                    e.message()
                ));
                Ok(())
            }
            other => other,
        }
    }

    async fn list(&self) -> Result<Vec<BackupSummary>> {
        let mut out = Vec::new();
        for id in self.store.list().await? {
            let m = self.store.manifest(&id).await?;
            out.push(BackupSummary {
                bytes: m.bytes(),
                id,
                created: m.created,
                app: m.app,
                image: m.image,
            });
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
            crate::journal::new_run_id()
                .rsplit('-')
                .next()
                .unwrap_or("0")
        );
        let scratch = self.database.create_scratch(&scratch_name).await?;
        let result = async {
            restore_database(&scratch, &*self.store, &manifest, driver, events).await?;
            compare(&scratch, &manifest).await
        }
        .await;
        let dropped = self.database.drop_scratch(&scratch_name).await;
        result.and(dropped)
    }
}
