//! What each phase carries: exactly what is known at that point of a run.

use serde::{Deserialize, Serialize};

use super::{Outcome, Step};
use crate::backup::{BackupId, BackupRef};
use crate::driver::{Pulled, Snapshot};
use crate::error::Failure;
use crate::image::ImageRef;

/// What is known once preflight has passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Base {
    /// The image running before the run.
    pub from: ImageRef,
    /// Replicas before the run.
    pub old_replicas: u32,
    /// Replicas the run ends with.
    pub replicas: u32,
    /// The digest the instances of `from` ran at preflight, when known.
    #[serde(default)]
    pub from_digest: Option<String>,
}

impl Base {
    /// The image that ran before the run, pinned to the digest that ran when known: what
    /// a backup records as its identity.
    pub fn running(&self) -> ImageRef {
        pin(&self.from, self.from_digest.as_deref())
    }
}

/// `image` pinned to `digest`; unpinned when there is none or it is not a `sha256:` digest.
fn pin(image: &ImageRef, digest: Option<&str>) -> ImageRef {
    digest
        .and_then(|d| image.with_digest(d).ok())
        .unwrap_or_else(|| image.clone())
}

/// What is known once the deployment is snapshotted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// From preflight.
    pub base: Base,
    /// The image to move to.
    pub to: ImageRef,
    /// The digest `pull` resolved `to` to, when the driver reported one: the definition
    /// is pinned to it, so a tag moved after the pull starts nothing unchecked.
    #[serde(default)]
    pub digest: Option<String>,
    /// The deployment before any change.
    pub snapshot: Snapshot,
    /// The safety backup of the data a restore or manual rollback replaces, once taken.
    pub safety: Option<BackupRef>,
}

impl Prepared {
    /// The reference the definition gets and readiness waits for: `to` pinned to the
    /// pulled digest, or `to` itself when the driver reported none.
    pub fn target(&self) -> ImageRef {
        pin(&self.to, self.digest.as_deref())
    }
}

/// How the data is protected once the backup step is behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Protection {
    /// A verified backup of this run (or the one a manual rollback restores).
    Backup(BackupRef),
    /// The plan skipped the backup.
    Skipped,
}

impl Protection {
    pub(super) fn backup(&self) -> Option<&BackupRef> {
        match self {
            Protection::Backup(b) => Some(b),
            Protection::Skipped => None,
        }
    }
}

/// What is known once the data is protected: everything a rollback needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Armed {
    /// The deployment and target.
    pub prep: Prepared,
    /// The backup.
    pub protection: Protection,
}

/// The end of a run, before the lock is released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ending {
    /// How it ends.
    pub outcome: Outcome,
    /// Why, when it did not succeed.
    pub cause: Option<Failure>,
    /// The backup taken.
    pub backup: Option<BackupRef>,
    /// The safety backup taken.
    pub safety: Option<BackupRef>,
    /// The image that ran on the data the safety backup holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_under: Option<ImageRef>,
}

/// An upgrade that has ended, before its end hooks and unlock: the ending, with what the
/// hooks are told about the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closing {
    /// From preflight.
    pub base: Base,
    /// The digest `pull` resolved the target to, when known.
    pub digest: Option<String>,
    /// How the run ends.
    pub ending: Ending,
}

/// Where a run is. Each variant carries exactly what is known at that point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // variants are named after the step they perform next
pub enum Phase {
    Preflight,
    Lock(Base),
    Pull(Base),
    Snapshot(Base, Pulled),
    BackupOnline(Prepared),
    StopThenBackup(Prepared),
    BackupOffline(Prepared),
    /// The `before_stop` hook of an offline upgrade (its backup follows the stop).
    HookBeforeStop(Prepared),
    /// The `before_stop` hook of an online (backed up) or skip-mode upgrade.
    HookBeforeStopArmed(Armed),
    StopAfterBackup(Armed),
    SetImage(Armed),
    StartLeader(Armed),
    AwaitLeader(Armed),
    HookAfterLeader(Armed),
    ScaleOut(Armed),
    AwaitAll(Armed),
    Release(Armed),
    Prune(Armed),
    /// Abort after stop: start the old definition again.
    RestartOld(Prepared, Ending),
    RollbackPull(Armed),
    RollbackStop(Armed, Option<Failure>),
    RestoreData(Armed, Option<Failure>),
    RestoreDefinition(Armed, Option<Failure>),
    AwaitRestored(Armed, Option<Failure>),
    /// Backup and restore runs.
    TakeBackup(Base),
    /// A manual rollback's safety backup, after its stop.
    RollbackSafety(Armed, Option<Failure>),
    /// A manual rollback stopped before it changed anything after its stop (its safety
    /// backup failed, or the restore was refused with nothing changed): start the release
    /// it stopped again, on its unchanged definition.
    RollbackRestart(Armed, Ending),
    RestoreSnapshot(Base, BackupId),
    RestoreStop(Prepared, BackupId),
    /// A restore's safety backup, after its stop.
    RestoreSafety(Prepared, BackupId),
    RestoreBackup(Prepared, BackupId),
    /// A restore failed: put the safety backup's data back, then restart as before.
    PutBack(Prepared, Failure),
    RestoreBringBack(Prepared),
    RestoreAwait(Prepared),
    RestoreRelease(Prepared),
    /// Verify and prune runs.
    CheckBackup(BackupId, bool),
    PruneBackups(usize),
    /// An upgrade ended rolled back: its `on_rollback` hook.
    HookOnRollback(Closing),
    /// An upgrade ended: its `after_run` hook.
    HookAfterRun(Closing),
    Unlock(Ending),
    /// A step of a rollback or restore failed; `retry` is where [`super::Input::Retry`] resumes.
    Failed {
        retry: Box<Phase>,
        step: Step,
        error: Failure,
    },
    Done(Ending),
}

impl Phase {
    /// The safety backup taken so far by a restore or manual rollback in this phase.
    pub(super) fn safety(&self) -> Option<&BackupRef> {
        match self {
            Phase::RollbackSafety(a, _)
            | Phase::RollbackRestart(a, _)
            | Phase::RestoreData(a, _)
            | Phase::RestoreDefinition(a, _)
            | Phase::AwaitRestored(a, _) => a.prep.safety.as_ref(),
            Phase::RestoreBackup(p, _)
            | Phase::PutBack(p, _)
            | Phase::RestoreBringBack(p)
            | Phase::RestoreAwait(p)
            | Phase::RestoreRelease(p)
            | Phase::RestartOld(p, _) => p.safety.as_ref(),
            _ => None,
        }
    }
}
