//! Where backups live: the [`Store`] trait and the local-directory store.
//!
//! A backup becomes visible only when complete: parts are written under a staging name,
//! fsynced, the manifest is written last, and the staging directory is renamed into place.
//!
//! What a backup that never completed leaves behind (a killed process, a full store) is
//! invisible to [`Store::list`] but takes space: [`Store::unfinished`] finds it once it is
//! old enough ([`UNFINISHED_MIN_AGE`] by default) and [`Store::discard`] deletes it.

use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::manifest::Manifest;
use cutover_core::BackupId;
use cutover_core::driver::ByteStream;
use cutover_core::{Error, ErrorKind, Result};

/// Durable storage of backups.
///
/// # Behavior
/// - Nothing of a backup is listed or readable before [`Staged::commit`] returns; an
///   aborted or crashed backup leaves nothing visible.
/// - Ids are validated [`BackupId`]s, so they cannot escape the store.
#[async_trait]
pub trait Store: fmt::Debug + Send + Sync {
    /// A human description (path or URL).
    fn describe(&self) -> String;

    /// Starts writing backup `id`.
    async fn stage(&self, id: &BackupId) -> Result<Box<dyn Staged>>;

    /// The manifest of `id`; [`ErrorKind::NotFound`] if there is no such backup.
    async fn manifest(&self, id: &BackupId) -> Result<Manifest>;

    /// Reads part `name` of `id`.
    async fn read(&self, id: &BackupId, name: &str) -> Result<ByteStream>;

    /// The ids of complete backups.
    async fn list(&self) -> Result<Vec<BackupId>>;

    /// Deletes `id`.
    async fn delete(&self, id: &BackupId) -> Result<()>;

    /// Free bytes, when the store can tell.
    async fn available(&self) -> Result<Option<u64>>;

    /// What backups that never completed left behind (parts without a manifest, staging
    /// directories), last written at least `min_age` ago by the store's own clock (file
    /// mtime, object last-modified).
    ///
    /// # Behavior
    /// - Never lists a complete backup, nor anything written less than `min_age` ago: a
    ///   backup being written right now, by this or another process or host, keeps
    ///   touching its parts. Use [`UNFINISHED_MIN_AGE`] unless the store is known idle.
    /// - Lists only what this store's layout produces; foreign files are left alone.
    async fn unfinished(&self, min_age: Duration) -> Result<Vec<Unfinished>> {
        let _ = min_age;
        Ok(Vec::new())
    }

    /// Deletes a leftover listed by [`Store::unfinished`]; already gone is success.
    ///
    /// # Behavior
    /// Fails with [`ErrorKind::Conflict`] and deletes nothing if it was written to since it
    /// was listed.
    async fn discard(&self, leftover: &Unfinished) -> Result<()> {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the backup store {} cannot delete unfinished backup {}",
                self.describe(),
                leftover.name
            ),
        ))
    }
}

/// How long the parts of an unfinished backup must have been left untouched before
/// `prune` deletes them: a day, far longer than any backup goes without writing.
pub const UNFINISHED_MIN_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The leftovers of a backup that never completed, as [`Store::unfinished`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// Its name in the store: a staging directory, or a backup directory/prefix.
    pub name: String,
    /// The backup it was to become, when the name tells.
    pub id: Option<BackupId>,
    /// Bytes it holds.
    pub bytes: u64,
    /// When anything in it was last written.
    pub modified: SystemTime,
}

/// Whether something last written at `modified` is at least `min_age` old now.
pub(crate) fn is_older_than(modified: SystemTime, min_age: Duration) -> bool {
    SystemTime::now()
        .duration_since(modified)
        .is_ok_and(|age| age >= min_age)
}

/// A backup being written.
#[async_trait]
pub trait Staged: Send {
    /// Writes part `name` from the chunks received on `chunks`, durably.
    async fn write_part(&mut self, name: &str, chunks: mpsc::Receiver<Vec<u8>>) -> Result<()>;

    /// Writes the manifest and makes the backup visible.
    async fn commit(self: Box<Self>, manifest: &Manifest) -> Result<()>;

    /// Removes everything written.
    async fn abort(self: Box<Self>);
}

/// `[backup.s3]`: how to reach an S3-compatible store (used by `S3Store`, feature `s3`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// An S3-compatible endpoint (MinIO, Ceph, …), addressed path-style. Default: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region. Default: `$AWS_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Allow a plain `http://` endpoint (a test server on loopback).
    #[serde(default)]
    pub allow_http: bool,
}

/// Backups as directories under a local root: `ROOT/ID/manifest.json` and parts.
/// Directories are 0700, files 0600.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

fn io_error(what: String, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Other,
    };
    Error::new(kind, what).with_source(e).retryable(false)
}

fn new_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

const STAGING: &str = ".staging-";
const DELETED: &str = "deleted-";

/// The size of a directory's files and when it or any of them was last written. Parts
/// are flat, so one level is enough.
fn contents(dir: &Path) -> std::io::Result<(u64, SystemTime)> {
    let mut newest = std::fs::metadata(dir)?.modified()?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        bytes += meta.len();
        newest = newest.max(meta.modified()?);
    }
    Ok((bytes, newest))
}

/// The backup id a staging directory's name carries: `.staging-ID-PID` or
/// `.staging-deleted-ID-PID`.
fn staged_id(name: &str) -> Option<BackupId> {
    let rest = name.strip_prefix(STAGING)?;
    let (id, _pid) = rest.rsplit_once('-')?;
    id.strip_prefix(DELETED)
        .unwrap_or(id)
        .parse()
        .ok()
        .or_else(|| id.parse().ok())
}

impl LocalStore {
    /// A store rooted at `root` (created 0700 on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, id: &BackupId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// Removes staging directories left by processes that no longer exist on this host and
    /// untouched for [`UNFINISHED_MIN_AGE`]: the pid alone does not tell, since a store on
    /// a shared file system may be written by another host.
    fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(pid) = name
                .strip_prefix(STAGING)
                .and_then(|rest| rest.rsplit('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists()
                && let Ok((_, modified)) = contents(&entry.path())
                && is_older_than(modified, UNFINISHED_MIN_AGE)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[async_trait]
impl Store for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn stage(&self, id: &BackupId) -> Result<Box<dyn Staged>> {
        let root = self.root.clone();
        new_dir(&root).map_err(|e| {
            io_error(
                format!("cannot create the backup store {}", root.display()),
                e,
            )
        })?;
        self.sweep();
        if self.dir(id).exists() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("backup {id} already exists in {}", root.display()),
            ));
        }
        let staging = root.join(format!("{STAGING}{id}-{}", std::process::id()));
        new_dir(&staging).map_err(|e| {
            io_error(
                format!("cannot write to the backup store {}", root.display()),
                e,
            )
        })?;
        Ok(Box::new(LocalStaged {
            root,
            staging,
            id: id.clone(),
        }))
    }

    async fn manifest(&self, id: &BackupId) -> Result<Manifest> {
        let path = self.dir(id).join("manifest.json");
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no backup {id} in {} (see `cutover backups list`)",
                        self.root.display()
                    ),
                )
            } else {
                io_error(format!("cannot read {}", path.display()), e)
            }
        })?;
        Manifest::from_stored(&bytes, id, &path.display().to_string())
    }

    async fn read(&self, id: &BackupId, name: &str) -> Result<ByteStream> {
        if name.contains('/') || name.starts_with('.') {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("part name {name:?} is not a plain file name"),
            ));
        }
        let path = self.dir(id).join(name);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(format!("cannot read part {name} of backup {id}"), e))?;
        Ok(Box::pin(file))
    }

    async fn list(&self) -> Result<Vec<BackupId>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_error(format!("cannot list {}", self.root.display()), e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Ok(id) = name.parse::<BackupId>()
                && entry.path().join("manifest.json").is_file()
            {
                out.push(id);
            }
        }
        out.sort();
        out.reverse();
        Ok(out)
    }

    async fn delete(&self, id: &BackupId) -> Result<()> {
        let dir = self.dir(id);
        // Renamed first so that a crash mid-delete never leaves a listed, partial backup.
        let doomed = self
            .root
            .join(format!("{STAGING}{DELETED}{id}-{}", std::process::id()));
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(format!("cannot delete backup {id}"), e)),
        }
        std::fs::remove_dir_all(&doomed)
            .map_err(|e| io_error(format!("cannot delete backup {id}"), e))
    }

    async fn available(&self) -> Result<Option<u64>> {
        let mut probe = self.root.clone();
        while !probe.exists() {
            if !probe.pop() {
                return Ok(None);
            }
        }
        let stat = rustix::fs::statvfs(&probe)
            .map_err(|e| io_error(format!("cannot stat {}", probe.display()), e.into()))?;
        Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
    }

    /// Staging directories (`.staging-…`: a backup being written, or a deletion, that
    /// never finished) and backup directories without `manifest.json`.
    async fn unfinished(&self, min_age: Duration) -> Result<Vec<Unfinished>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(format!("cannot list {}", self.root.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let id = if name.starts_with(STAGING) {
                staged_id(&name)
            } else {
                match name.parse::<BackupId>() {
                    Ok(id) if !path.join("manifest.json").exists() => Some(id),
                    _ => continue,
                }
            };
            // Gone meanwhile (a backup completing, a deletion finishing): not a leftover.
            let Ok((bytes, modified)) = contents(&path) else {
                continue;
            };
            if is_older_than(modified, min_age) {
                out.push(Unfinished {
                    name,
                    id,
                    bytes,
                    modified,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn discard(&self, leftover: &Unfinished) -> Result<()> {
        let name = leftover.name.as_str();
        let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
        let path = self.root.join(name);
        if !plain || (!name.starts_with(STAGING) && path.join("manifest.json").exists()) {
            return Err(Error::invalid(format!(
                "{name:?} is not an unfinished backup in {}",
                self.root.display()
            )));
        }
        let modified = match contents(&path) {
            Ok((_, modified)) => modified,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(format!("cannot read {}", path.display()), e)),
        };
        if modified > leftover.modified {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{name} was written to since it was found unfinished; kept"),
            ));
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(format!("cannot delete {}", path.display()), e)),
        }
    }
}

struct LocalStaged {
    root: PathBuf,
    staging: PathBuf,
    id: BackupId,
}

async fn write_durably(path: &Path, mut chunks: mpsc::Receiver<Vec<u8>>) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await?;
    while let Some(chunk) = chunks.recv().await {
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    file.sync_all().await
}

#[async_trait]
impl Staged for LocalStaged {
    async fn write_part(&mut self, name: &str, chunks: mpsc::Receiver<Vec<u8>>) -> Result<()> {
        let tmp = self.staging.join(format!(".{name}.partial"));
        write_durably(&tmp, chunks).await.map_err(|e| {
            io_error(
                format!(
                    "cannot write part {name} of backup {} to {}",
                    self.id,
                    self.root.display()
                ),
                e,
            )
        })?;
        std::fs::rename(&tmp, self.staging.join(name))
            .map_err(|e| io_error(format!("cannot write part {name}"), e))
    }

    async fn commit(self: Box<Self>, manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| {
            Error::new(ErrorKind::Other, "cannot encode the manifest").with_source(e)
        })?;
        let tmp = self.staging.join(".manifest.json.partial");
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.send(json).await;
        drop(tx);
        let result = async {
            write_durably(&tmp, rx).await?;
            std::fs::rename(&tmp, self.staging.join("manifest.json"))?;
            sync_dir(&self.staging)?;
            std::fs::rename(&self.staging, self.root.join(self.id.as_str()))?;
            sync_dir(&self.root)
        }
        .await;
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&self.staging);
            return Err(io_error(format!("cannot complete backup {}", self.id), e));
        }
        Ok(())
    }

    async fn abort(self: Box<Self>) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Database, DatabaseEngine, DumpBackups, ToolSite};
    use cutover_core::Backups;
    use cutover_core::driver::ExecTarget;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// Sets the mtime of `path` (file or directory).
    fn touch(path: &Path, modified: SystemTime) {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }

    fn ago(d: Duration) -> SystemTime {
        SystemTime::now() - d
    }

    /// A directory under `root` with one file, both last written `age` ago.
    fn leftover(root: &Path, name: &str, file: &str, age: Duration) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), vec![7u8; 1000]).unwrap();
        touch(&dir.join(file), ago(age));
        touch(&dir, ago(age));
        dir
    }

    fn names(found: &[Unfinished]) -> Vec<&str> {
        found.iter().map(|u| u.name.as_str()).collect()
    }

    #[tokio::test]
    async fn only_old_unfinished_backups_are_listed_and_discarded() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let store = LocalStore::new(root);
        // Killed two days ago mid-upload, mid-deletion, and a directory without manifest.
        leftover(
            root,
            ".staging-b-old-4000001",
            ".database.zst.partial",
            2 * DAY,
        );
        leftover(
            root,
            ".staging-deleted-b-gone-4000002",
            "database.zst",
            2 * DAY,
        );
        leftover(root, "b-nomanifest", "database.zst", 2 * DAY);
        // Complete backups, however old, and foreign files are never touched.
        let complete = leftover(root, "b-complete", "manifest.json", 30 * DAY);
        std::fs::write(root.join("notes.txt"), "mine").unwrap();
        touch(&root.join("notes.txt"), ago(30 * DAY));
        leftover(root, ".cache", "x", 30 * DAY);
        // Being written now: a fresh staging directory, and an old one whose part is
        // still growing (its directory mtime alone would look abandoned).
        leftover(
            root,
            ".staging-b-fresh-4000003",
            ".database.zst.partial",
            Duration::ZERO,
        );
        let growing = leftover(root, ".staging-b-growing-4000004", ".a.partial", 2 * DAY);
        {
            use std::io::Write;
            let mut part = std::fs::OpenOptions::new()
                .append(true)
                .open(growing.join(".a.partial"))
                .unwrap();
            part.write_all(b"more").unwrap();
        }
        touch(&growing, ago(2 * DAY));

        let found = store.unfinished(UNFINISHED_MIN_AGE).await.unwrap();
        assert_eq!(
            names(&found),
            [
                ".staging-b-old-4000001",
                ".staging-deleted-b-gone-4000002",
                "b-nomanifest"
            ]
        );
        let ids: Vec<_> = found
            .iter()
            .map(|u| u.id.as_ref().map(|i| i.to_string()))
            .collect();
        assert_eq!(
            ids,
            [
                Some("b-old".to_string()),
                Some("b-gone".to_string()),
                Some("b-nomanifest".to_string())
            ]
        );
        assert!(found.iter().all(|u| u.bytes == 1000), "{found:?}");
        // With no minimum age, what is being written is listed too; a complete backup never.
        let all = store.unfinished(Duration::ZERO).await.unwrap();
        assert_eq!(all.len(), 5, "{all:?}");
        assert!(!names(&all).contains(&"b-complete"));

        for u in &found {
            store.discard(u).await.unwrap();
            assert!(!root.join(&u.name).exists(), "{} left", u.name);
        }
        // Discarding again is success: already gone.
        store.discard(&found[0]).await.unwrap();
        assert!(complete.join("manifest.json").exists());
        assert!(root.join("notes.txt").exists());
        assert!(root.join(".staging-b-fresh-4000003").exists());
        assert!(growing.exists());
        assert_eq!(
            store.list().await.unwrap(),
            vec!["b-complete".parse::<BackupId>().unwrap()]
        );

        // A complete backup is refused by name; a leftover written to since it was listed
        // is kept.
        let forged = Unfinished {
            name: "b-complete".into(),
            id: None,
            bytes: 0,
            modified: SystemTime::now(),
        };
        assert_eq!(
            store.discard(&forged).await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let revived = leftover(root, ".staging-b-revived-4000005", ".p.partial", 2 * DAY);
        let listed = store.unfinished(DAY).await.unwrap();
        let revived_entry = listed
            .iter()
            .find(|u| u.name == ".staging-b-revived-4000005")
            .unwrap();
        std::fs::write(revived.join(".q.partial"), "more").unwrap();
        assert_eq!(
            store.discard(revived_entry).await.unwrap_err().kind(),
            ErrorKind::Conflict
        );
        assert!(revived.exists());
    }

    #[tokio::test]
    async fn sweep_keeps_what_a_non_terminal_run_needs() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        leftover(
            root,
            ".staging-b-1-4000001",
            ".database.zst.partial",
            2 * DAY,
        );
        leftover(
            root,
            ".staging-deleted-b-2-4000002",
            "database.zst",
            2 * DAY,
        );
        leftover(
            root,
            ".staging-b-3-4000003",
            ".database.zst.partial",
            Duration::ZERO,
        );
        let database = Database::new(
            DatabaseEngine::Postgres,
            "postgres://app@127.0.0.1:1/app",
            None,
            ToolSite::Local,
        )
        .unwrap();
        let backups = DumpBackups::new(
            database,
            std::sync::Arc::new(LocalStore::new(root)),
            vec![],
            ExecTarget::AnyInstance,
        );
        let protected = ["b-2".parse().unwrap()];
        let swept = backups.sweep(&protected).await.unwrap();
        assert_eq!(
            swept,
            [cutover_core::backup::Swept {
                name: ".staging-b-1-4000001".into(),
                bytes: 1000
            }]
        );
        assert!(root.join(".staging-deleted-b-2-4000002").exists());
        assert!(root.join(".staging-b-3-4000003").exists(), "too young");
        let swept = backups
            .with_unfinished_min_age(Duration::ZERO)
            .sweep(&[])
            .await
            .unwrap();
        assert_eq!(swept.len(), 2, "{swept:?}");
        assert_eq!(std::fs::read_dir(root).unwrap().count(), 0);
    }
}
