//! Where backups live: the [`Store`] trait and the local-directory store.
//!
//! A backup becomes visible only when complete: parts are written under a staging name,
//! fsynced, the manifest is written last, and the staging directory is renamed into place.

use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::BackupId;
use super::manifest::Manifest;
use crate::driver::ByteStream;
use crate::{Error, ErrorKind, Result};

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

impl LocalStore {
    /// A store rooted at `root` (created 0700 on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, id: &BackupId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// Removes staging directories left by processes that no longer exist.
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
            if !Path::new(&format!("/proc/{pid}")).exists() {
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
            .join(format!("{STAGING}deleted-{id}-{}", std::process::id()));
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
