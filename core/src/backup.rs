//! Backups: the interface the engine calls as effects (take, verify, restore, prune).
//!
//! The state machine only knows [`BackupRef`]s; [`Backups`] implementations know dumps,
//! stores and manifests. The implementation with the databases' own tools is the
//! `cutover-backup` crate's `DumpBackups`; the testkit's `FakeBackups` backs the
//! in-memory driver.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::check::Check;
use crate::driver::{Driver, Snapshot};
use crate::event::EventSink;
use crate::{Error, ImageRef, Result};

/// The identifier of a backup: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`, never `..`.
///
/// Validation is strict because ids become file names and object keys: `../../etc` and
/// friends are refused before any store is touched.
///
/// ```
/// use cutover_core::BackupId;
/// assert!("20261125T194500Z-apidog-3f2a".parse::<BackupId>().is_ok());
/// assert!("../../etc".parse::<BackupId>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

impl BackupId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The placeholder id shown in previews of a backup not yet taken.
    pub fn preview() -> Self {
        BackupId("new-backup".to_string())
    }
}

impl FromStr for BackupId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if s.is_empty() || s.len() > 128 {
            return Err(Error::invalid(format!(
                "backup id {s:?} must be 1 to 128 characters long"
            )));
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) || !s.chars().all(valid_char) {
            return Err(Error::invalid(format!(
                "backup id {s:?} may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit (see `cutover backups list`)"
            )));
        }
        if s.contains("..") {
            return Err(Error::invalid(format!(
                "backup id {s:?} must not contain \"..\""
            )));
        }
        Ok(BackupId(s.to_string()))
    }
}

impl TryFrom<String> for BackupId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A backup that was taken and verified, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRef {
    /// Its id in the store.
    pub id: BackupId,
    /// Total size of its parts in bytes.
    pub bytes: u64,
}

/// What a backup is taken of, handed to [`Backups::backup`].
#[derive(Debug, Clone)]
pub struct BackupScope<'a> {
    /// The application's name (the backup's identity: restore refuses another app's).
    pub app: &'a str,
    /// The image running when the backup was taken, pinned to the digest that ran when
    /// the driver reported one (the engine does this from preflight's observation).
    pub image: &'a ImageRef,
    /// The driver's snapshot of the deployment at that moment, when one was taken.
    pub snapshot: Option<&'a Snapshot>,
    /// The driver, for dumps and archives that run inside the deployment.
    pub driver: &'a dyn Driver,
}

/// A backup as listed by [`Backups::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// Its id.
    pub id: BackupId,
    /// When it was created, RFC 3339.
    pub created: String,
    /// The application it belongs to.
    pub app: String,
    /// The image that was running.
    pub image: String,
    /// The content digest of the image that ran, when the backup recorded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Total size in bytes.
    pub bytes: u64,
    /// Why the backup cannot be used, when its manifest cannot be read: it is listed
    /// (so that it can be seen and deleted) instead of failing the whole list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// The leftovers of an unfinished backup that [`Backups::sweep`] deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swept {
    /// Its name in the store (a staging directory, or the id of a backup without manifest).
    pub name: String,
    /// The bytes freed.
    pub bytes: u64,
}

impl fmt::Display for Swept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            self.name,
            crate::event::human_bytes(self.bytes)
        )
    }
}

/// Takes, verifies, restores and prunes backups of the application's data.
///
/// # Behavior
/// - [`Backups::backup`] returns only once the backup is complete, written durably and its
///   checksums verified; a failed backup leaves nothing visible in the store.
/// - [`Backups::restore`] refuses a backup whose checksums, engine or application identity
///   do not match before it changes anything, and fails if the data afterwards does not
///   match the backup's fingerprint. A failure that changed nothing says so
///   ([`Error::nothing_changed`]).
/// - Every method is safe to call again after a crash: a repeated backup takes a new one,
///   a repeated restore replaces the data again.
/// - Secrets (database passwords) never reach argv, logs, manifests or events.
#[async_trait]
pub trait Backups: fmt::Debug + Send + Sync {
    /// Checks, without changing anything, that a backup and a restore can run: database
    /// reachable with the needed tools, store writable with room. Fails exactly when
    /// [`Backups::checks`] lists a failed check, with that check's error.
    async fn preflight(&self, driver: &dyn Driver) -> Result<()>;

    /// The checks [`Backups::preflight`] makes, each with what it found, for `cutover
    /// plan`. The default reports preflight as one check; implementations that make
    /// several should list them, and make `preflight` their [`crate::check::first_failure`].
    async fn checks(&self, driver: &dyn Driver) -> Vec<Check> {
        vec![Check::of(
            "backups",
            self.preflight(driver).await.map(|()| "ready".into()),
        )]
    }

    /// The checks before a run that reads backups but writes none (a restore or rollback
    /// without a safety backup, a restore test): those of [`Backups::checks`] but the
    /// store's room and writability, so that a full or read-only store can still be
    /// restored from. The default makes every check.
    async fn read_checks(&self, driver: &dyn Driver) -> Vec<Check> {
        self.checks(driver).await
    }

    /// Takes and verifies a backup.
    async fn backup(&self, scope: BackupScope<'_>, events: &EventSink) -> Result<BackupRef>;

    /// Checks a stored backup's integrity (checksums of every part) and that it belongs to
    /// `app`.
    async fn verify(&self, id: &BackupId, app: &str) -> Result<BackupRef>;

    /// Replaces the application's data with the backup `id` of `app`, for run `run`.
    ///
    /// A failure before the data was touched (a refusal, a load beside the live data that
    /// failed) is reported with [`Error::with_nothing_changed`], so that nothing is put
    /// back. Called again by the same run after a crash, it finishes what the first call
    /// started: `run` and `id` name whatever it keeps beside the live data.
    async fn restore(
        &self,
        id: &BackupId,
        app: &str,
        run: &str,
        driver: &dyn Driver,
        events: &EventSink,
    ) -> Result<()>;

    /// Lists the stored backups, newest first.
    async fn list(&self) -> Result<Vec<BackupSummary>>;

    /// Deletes all but the newest `keep` backups of `app`, never one in `protected`.
    /// Returns the deleted ids.
    async fn prune(&self, app: &str, keep: usize, protected: &[BackupId]) -> Result<Vec<BackupId>>;

    /// Deletes what backups that never completed left in the store (of any application:
    /// an unfinished backup has no manifest to tell), once untouched long enough that no
    /// process can still be writing them; never the leftovers of an id in `protected`.
    /// Returns what was deleted. The default sweeps nothing.
    async fn sweep(&self, protected: &[BackupId]) -> Result<Vec<Swept>> {
        let _ = protected;
        Ok(Vec::new())
    }

    /// Restores backup `id` into a scratch database beside the real one, compares the
    /// fingerprints and drops the scratch database. Engines that cannot do this return
    /// [`crate::ErrorKind::Unsupported`].
    async fn restore_test(
        &self,
        id: &BackupId,
        app: &str,
        driver: &dyn Driver,
        events: &EventSink,
    ) -> Result<()> {
        let _ = (id, app, driver, events);
        Err(Error::new(
            crate::ErrorKind::Unsupported,
            "this backup engine cannot test-restore into a scratch database",
        ))
    }
}
