//! The pure state machine of every run: upgrade, rollback, backup and restore.
//!
//! [`step`] maps a [`Run`] and an [`Input`] to the next [`Run`] and what to do next
//! ([`Next`]). It performs no I/O: the [`crate::Engine`] carries out each [`Effect`],
//! journals it before and after, and feeds the result back. Because the machine is a pure
//! function of the plan and the sequence of results, folding a run's journal through it
//! rebuilds the exact state after a crash.
//!
//! # The upgrade
//! 1. `preflight`: observe the deployment (read-only); refuse a downgrade unless allowed.
//! 2. `lock`: the backend-side lock.
//! 3. `pull`: the new image, everywhere; touches no instance. The digest it reports pins
//!    the target from here on ([`Prepared::target`]).
//! 4. `snapshot`: the definition and instances, for restore.
//! 5. `stop` (scale 0) and `backup` — backup after stop (offline, default), before stop
//!    (online), or not at all (skip).
//! 6. `set_image`: the definition now names the new image, pinned to the pulled digest;
//!    readiness then waits for that digest, and an instance of the tag running another
//!    fails the step.
//! 7. `start_leader` (scale 1) and `await_leader`: the one instance that migrates.
//! 8. `scale_out` (scale N) and `await_all`.
//! 9. `release`, `prune`, `unlock`: commit.
//!
//! # Guarantees
//! - Failure before `stop`: nothing changed; unlock → [`Outcome::Aborted`].
//! - Failure after `stop`, before `set_image`: the snapshot is restored (the stopped
//!   instances start again, themselves, not replacements); unlock →
//!   [`Outcome::Aborted`].
//! - Failure from `set_image` on: scale 0, restore the data from this run's backup, restore
//!   the snapshot, await the old instances, unlock → [`Outcome::RolledBack`].
//! - Failure while rolling back: [`Outcome::Failed`]; the lock stays held and
//!   [`Input::Retry`] re-runs the failed step.
//! - No effect that starts the new image is issued before a verified backup of this run
//!   was recorded, unless the plan skips the backup.
//!
//! # Assumptions
//! - Every effect is idempotent, so re-running the step that was in flight at a crash is
//!   safe.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::backup::{BackupId, BackupRef, Swept};
use crate::driver::{Instance, Observed, Pulled, Snapshot, same_image};
use crate::error::{ErrorKind, Failure};
use crate::image::{ImageRef, Version};
pub use crate::run::{Outcome, RunKind};

/// When an upgrade takes its backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupMode {
    /// After stopping the application: nothing written is lost on rollback.
    #[default]
    Offline,
    /// Before stopping: shorter downtime, but writes between backup and stop are lost on
    /// rollback.
    Online,
    /// No backup: a rollback cannot restore data.
    Skip,
}

/// What a run is asked to do; fixed when it starts and journaled with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plan {
    /// Upgrade to `to`.
    Upgrade {
        /// The target image.
        to: ImageRef,
        /// When to take the backup.
        backup: BackupMode,
        /// Replicas after the upgrade; `None`: as observed.
        replicas: Option<u32>,
        /// Permit a target version lower than the running one.
        allow_downgrade: bool,
    },
    /// Roll back to a snapshot and backup recorded by an earlier upgrade.
    Rollback {
        /// The deployment as it was before that upgrade.
        snapshot: Snapshot,
        /// The data as it was; `None` when that upgrade skipped its backup.
        backup: Option<BackupRef>,
        /// Back up the data being replaced first (after the stop, so every write is in
        /// it). Journals written before this existed read `false`.
        #[serde(default)]
        safety: bool,
    },
    /// Take an online backup.
    Backup,
    /// Replace the data with a backup, stopping the application meanwhile.
    Restore {
        /// The backup to restore.
        backup: BackupId,
        /// Back up the data being replaced first (after the stop, so every write is in
        /// it); a restore that then fails puts it back. Journals written before this
        /// existed read `false`.
        #[serde(default)]
        safety: bool,
    },
    /// Check a stored backup's parts against its manifest; with `restore_test`, also
    /// restore it into a scratch database and compare fingerprints. Changes nothing.
    Verify {
        /// The backup to check.
        backup: BackupId,
        /// Also restore into a scratch database.
        restore_test: bool,
    },
    /// Delete an application's backups beyond the newest `keep`.
    Prune {
        /// How many to keep.
        keep: usize,
    },
}

impl Plan {
    /// The kind of run this plan makes.
    pub fn kind(&self) -> RunKind {
        match self {
            Self::Upgrade { .. } => RunKind::Upgrade,
            Self::Rollback { .. } => RunKind::Rollback,
            Self::Backup => RunKind::Backup,
            Self::Restore { .. } => RunKind::Restore,
            Self::Verify { .. } => RunKind::Verify,
            Self::Prune { .. } => RunKind::Prune,
        }
    }
}

/// The named steps of all runs, as journaled and shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // the names are documented by `about`
pub enum Step {
    Preflight,
    Lock,
    Pull,
    Snapshot,
    Backup,
    Stop,
    SetImage,
    StartLeader,
    AwaitLeader,
    ScaleOut,
    AwaitAll,
    Release,
    Prune,
    Unlock,
    RestartOld,
    RollbackStop,
    RestoreData,
    RestoreDefinition,
    AwaitRestored,
    SafetyBackup,
    PutBack,
    Verify,
}

impl Step {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Lock => "lock",
            Self::Pull => "pull",
            Self::Snapshot => "snapshot",
            Self::Backup => "backup",
            Self::Stop => "stop",
            Self::SetImage => "set_image",
            Self::StartLeader => "start_leader",
            Self::AwaitLeader => "await_leader",
            Self::ScaleOut => "scale_out",
            Self::AwaitAll => "await_all",
            Self::Release => "release",
            Self::Prune => "prune",
            Self::Unlock => "unlock",
            Self::RestartOld => "restart_old",
            Self::RollbackStop => "rollback_stop",
            Self::RestoreData => "restore_data",
            Self::RestoreDefinition => "restore_definition",
            Self::AwaitRestored => "await_restored",
            Self::SafetyBackup => "safety_backup",
            Self::PutBack => "put_back",
            Self::Verify => "verify",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The I/O the engine performs for a step.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Observe the deployment and check that the run can proceed; returns
    /// [`Output::Observed`].
    Preflight,
    /// Take the backend-side lock.
    Lock,
    /// Release the backend-side lock.
    Unlock,
    /// Pull an image; returns [`Output::Pulled`].
    Pull(ImageRef),
    /// Snapshot the deployment; returns [`Output::Snapshot`].
    Snapshot,
    /// Take and verify a backup; returns [`Output::Backup`].
    Backup {
        /// The image running (the backup's identity).
        image: ImageRef,
        /// The deployment's snapshot, recorded in the manifest.
        snapshot: Option<Snapshot>,
    },
    /// Scale to this many instances of the current definition.
    Scale(u32),
    /// Change the definition's image.
    SetImage(ImageRef),
    /// Wait until `replicas` instances of `image` are ready and healthy.
    AwaitReady {
        /// The image they must run.
        image: ImageRef,
        /// How many.
        replicas: u32,
    },
    /// Restore the data from a backup.
    RestoreData(BackupId),
    /// Restore the deployment from a snapshot.
    RestoreDefinition(Snapshot),
    /// Drop what was kept for rolling back to a snapshot.
    Release(Snapshot),
    /// Delete backups beyond the newest `keep`, never one that a run still needs, and
    /// sweep the leftovers of unfinished ones; returns [`Output::Pruned`]. An upgrade's
    /// housekeeping after its commit, or the deletion a prune run exists for.
    Prune {
        /// How many to keep; `None`: the configured retention (`Settings::keep_backups`).
        keep: Option<usize>,
        /// A backup to keep whatever its age: the one the upgrade just took.
        protect: Option<BackupId>,
    },
    /// Check a stored backup; returns [`Output::Backup`].
    Verify {
        /// The backup.
        backup: BackupId,
        /// Also restore it into a scratch database and compare fingerprints.
        restore_test: bool,
    },
}

/// A step to perform: its name and its I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// The step, as journaled.
    pub step: Step,
    /// What to do.
    pub action: Action,
}

/// What the deployment looked like at preflight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The definition's image.
    pub image: ImageRef,
    /// The definition's replica count.
    pub replicas: u32,
    /// Every instance as preflight saw it: what an aborted run is compared with
    /// (empty in journals written before it was recorded).
    #[serde(default)]
    pub instances: Vec<Instance>,
    /// The digest of the image the instances ran (see [`Baseline::of`]); absent in
    /// journals written before digests were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Baseline {
    /// The baseline of an observation. `digest` is the one digest that every instance of
    /// the definition's repository and tag runs (by the backend's report, else by its
    /// reference); with no such instance, the digest the definition pins; `None` when the
    /// driver reports none or the instances disagree (then no single image ran).
    pub fn of(seen: &Observed) -> Self {
        let image = &seen.image;
        let mut digests = seen
            .instances
            .iter()
            .filter(|i| i.image.repository() == image.repository() && i.image.tag() == image.tag())
            .map(|i| i.running_digest());
        let digest = match digests.next() {
            None => image.digest(),
            Some(first) => first.filter(|d| digests.all(|other| other == Some(*d))),
        };
        Baseline {
            image: image.clone(),
            replicas: seen.replicas,
            instances: seen.instances.clone(),
            digest: digest.map(str::to_owned),
        }
    }
}

/// The result of a successful step, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum Output {
    /// From preflight.
    Observed(Baseline),
    /// From pull.
    Pulled(Pulled),
    /// From snapshot.
    Snapshot(Snapshot),
    /// From backup and verify.
    Backup(BackupRef),
    /// From prune (an upgrade's housekeeping and a prune run's deletion).
    Pruned {
        /// The backups deleted.
        deleted: Vec<BackupId>,
        /// The leftovers of unfinished backups deleted.
        #[serde(default)]
        swept: Vec<Swept>,
    },
    /// From any other step; also what an upgrade's prune returned in journals written
    /// before it reported [`Output::Pruned`] (its phase takes any result).
    Done,
}

impl Output {
    /// A short description for events and `history`.
    pub fn detail(&self) -> String {
        match self {
            Self::Observed(b) => format!("{} × {}", b.image, b.replicas),
            Self::Pulled(p) => match &p.digest {
                Some(d) => format!("{} is {d}", p.image),
                None => format!("{} (the driver reports no digest)", p.image),
            },
            Self::Snapshot(s) => format!("{} × {}", s.image, s.replicas),
            Self::Backup(b) => format!("{} ({} bytes)", b.id, b.bytes),
            Self::Pruned { deleted, swept } if deleted.is_empty() && swept.is_empty() => {
                "nothing to delete".to_string()
            }
            Self::Pruned { deleted, swept } => {
                let list = |items: Vec<String>| items.join(", ");
                let mut parts = Vec::new();
                if !deleted.is_empty() {
                    parts.push(format!(
                        "deleted {}",
                        list(deleted.iter().map(ToString::to_string).collect())
                    ));
                }
                if !swept.is_empty() {
                    parts.push(format!(
                        "swept unfinished {}",
                        list(swept.iter().map(ToString::to_string).collect())
                    ));
                }
                parts.join("; ")
            }
            Self::Done => String::new(),
        }
    }
}

/// What the machine is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Begin the run.
    Start,
    /// The last effect's result.
    Completed(Result<Output, Failure>),
    /// Try the failed step of a [`Outcome::Failed`] run again.
    Retry,
}

/// How a run ended, with the reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The outcome.
    pub outcome: Outcome,
    /// The failure that sent the run down its abort or rollback branch, or stopped it.
    pub cause: Option<Failure>,
    /// The backup this run took, if any.
    pub backup: Option<BackupRef>,
    /// The step to retry, for [`Outcome::Failed`].
    pub stuck_at: Option<Step>,
    /// The safety backup of the data this run replaced (restore and manual rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<BackupRef>,
}

/// What the engine does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Perform this effect and report its result.
    Perform(Effect),
    /// The run stopped with this report.
    Stop(Report),
}

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
    fn backup(&self) -> Option<&BackupRef> {
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
    StopAfterBackup(Armed),
    SetImage(Armed),
    StartLeader(Armed),
    AwaitLeader(Armed),
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
    Unlock(Ending),
    /// A step of a rollback or restore failed; `retry` is where [`Input::Retry`] resumes.
    Failed {
        retry: Box<Phase>,
        step: Step,
        error: Failure,
    },
    Done(Ending),
}

/// What a phase is part of: the one place that sorts phases, so that cancelling,
/// best-effort housekeeping and the operator's "may have changed" message follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// On the way forward, the deployment not yet known changed: a cancel aborts
    /// (preflight, lock, pulls, snapshots, an online or backup run's backup, the offline
    /// upgrade's stop, a verify run's check).
    Preparing,
    /// On the way forward, the deployment may be changed: a cancel restarts the old
    /// instances or rolls back (an upgrade from its offline backup, or its online or
    /// skip-mode stop, to `await_all`).
    Changing,
    /// Putting a recorded state back: an upgrade's restart of the old instances or
    /// rollback, a manual rollback's or a restore's steps from its stop, a restore's
    /// put-back. These run to completion; a failure stops the run as failed.
    Restoring,
    /// A prune run's deletion: runs to completion, changes no deployment.
    Pruning,
    /// Housekeeping after success (`release`, an upgrade's `prune`): a failure is only a
    /// warning.
    Committing,
    /// Releasing the lock, whatever the outcome: a failure is only a warning.
    Ending,
    /// Stopped on a failure; [`Input::Retry`] resumes.
    Failed,
    /// Stopped for good.
    Done,
}

impl Stage {
    /// Whether the operator may cancel the step of this stage.
    pub fn is_cancellable(self) -> bool {
        matches!(self, Self::Preparing | Self::Changing)
    }

    /// Whether the deployment may have been changed by the time a run is in this stage.
    pub fn has_changed_deployment(self) -> bool {
        !matches!(self, Self::Preparing | Self::Pruning)
    }

    /// Whether a failure of the step of this stage is only a warning.
    pub fn is_best_effort(self) -> bool {
        matches!(self, Self::Committing | Self::Ending)
    }
}

impl Phase {
    /// The stage this phase belongs to. No wildcard: a new phase does not compile until
    /// it is sorted here.
    pub fn stage(&self) -> Stage {
        use Phase as P;
        match self {
            // `stop` of an offline upgrade counts as preparing and that of an online or
            // skip-mode one as changing: the lists this replaced said so, and only a
            // failed run (always past a stop) is asked whether it changed the deployment.
            P::Preflight
            | P::Lock(_)
            | P::Pull(_)
            | P::Snapshot(..)
            | P::BackupOnline(_)
            | P::StopThenBackup(_)
            | P::RollbackPull(_)
            | P::TakeBackup(_)
            | P::RestoreSnapshot(..)
            | P::CheckBackup(..) => Stage::Preparing,
            P::BackupOffline(_)
            | P::StopAfterBackup(_)
            | P::SetImage(_)
            | P::StartLeader(_)
            | P::AwaitLeader(_)
            | P::ScaleOut(_)
            | P::AwaitAll(_) => Stage::Changing,
            P::RestartOld(..)
            | P::RollbackStop(..)
            | P::RollbackSafety(..)
            | P::RestoreData(..)
            | P::RestoreDefinition(..)
            | P::AwaitRestored(..)
            | P::RestoreStop(..)
            | P::RestoreSafety(..)
            | P::RestoreBackup(..)
            | P::PutBack(..)
            | P::RestoreBringBack(_)
            | P::RestoreAwait(_) => Stage::Restoring,
            P::PruneBackups(_) => Stage::Pruning,
            P::Release(_) | P::Prune(_) | P::RestoreRelease(_) => Stage::Committing,
            P::Unlock(_) => Stage::Ending,
            P::Failed { .. } => Stage::Failed,
            P::Done(_) => Stage::Done,
        }
    }

    /// The safety backup taken so far by a restore or manual rollback in this phase.
    fn safety(&self) -> Option<&BackupRef> {
        match self {
            Phase::RollbackSafety(a, _)
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

/// A run: its plan and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// What the run was asked to do.
    pub plan: Plan,
    /// Where it is.
    pub phase: Phase,
}

impl Run {
    /// A run of `plan` that has not started.
    pub fn new(plan: Plan) -> Self {
        Run {
            plan,
            phase: Phase::Preflight,
        }
    }

    /// What to do in the current phase (no transition).
    pub fn next(&self) -> Next {
        next(&self.plan, &self.phase)
    }

    /// Where the run is: see [`Stage`].
    pub fn stage(&self) -> Stage {
        self.phase.stage()
    }

    /// Whether the operator may cancel the current step: true on the way forward, false
    /// once the run is aborting, rolling back or committing (those must finish).
    pub fn is_cancellable(&self) -> bool {
        self.stage().is_cancellable()
    }

    /// Whether the deployment may be changed at this point: used to tell the operator
    /// what state an interrupted run left behind.
    pub fn has_changed_deployment(&self) -> bool {
        self.stage().has_changed_deployment()
    }

    /// Whether a failure of the current step is only a warning (commit housekeeping and
    /// unlock): the machine goes on whatever the result.
    pub fn is_best_effort(&self) -> bool {
        self.stage().is_best_effort()
    }

    /// The new release whose instances the current step starts or waits for
    /// (`start_leader`, `await_leader`, `scale_out`, `await_all` of an upgrade): when that
    /// step fails, those instances' logs are the evidence of why.
    pub fn new_release(&self) -> Option<ImageRef> {
        use Phase as P;
        match &self.phase {
            P::StartLeader(a) | P::AwaitLeader(a) | P::ScaleOut(a) | P::AwaitAll(a) => {
                Some(a.prep.target())
            }
            _ => None,
        }
    }

    /// The backup whose data this run has already put back while rolling back, when a
    /// later step of the rollback failed (`None` otherwise).
    pub fn data_restored_from(&self) -> Option<&BackupRef> {
        use Phase as P;
        let phase = match &self.phase {
            P::Failed { retry, .. } => retry.as_ref(),
            other => other,
        };
        match phase {
            P::RestoreDefinition(a, _) | P::AwaitRestored(a, _) => a.protection.backup(),
            _ => None,
        }
    }

    /// The steps this run would take from here if every step succeeded, given what
    /// preflight would observe. Used by `cutover plan`.
    pub fn preview(&self, seen: &Baseline) -> Vec<Effect> {
        let mut run = self.clone();
        let mut steps = Vec::new();
        while let Next::Perform(effect) = run.next() {
            let output = match &effect.action {
                Action::Preflight => Output::Observed(seen.clone()),
                Action::Pull(image) => Output::Pulled(Pulled {
                    image: image.clone(),
                    digest: None,
                }),
                Action::Snapshot => Output::Snapshot(Snapshot {
                    driver: String::new(),
                    image: seen.image.clone(),
                    replicas: seen.replicas,
                    data: serde_json::Value::Null,
                }),
                Action::Backup { .. } => Output::Backup(BackupRef {
                    id: BackupId::preview(),
                    bytes: 0,
                }),
                Action::Prune { .. } => Output::Pruned {
                    deleted: Vec::new(),
                    swept: Vec::new(),
                },
                _ => Output::Done,
            };
            steps.push(effect);
            run = step(run, Input::Completed(Ok(output))).0;
            if steps.len() > 64 {
                break;
            }
        }
        steps
    }
}

/// The transition function: the run after `input`, and what to do next.
///
/// `Input::Start` and `Input::Retry` on a phase that does not expect them, and a
/// `Completed` result whose output does not fit the step, leave the run unchanged.
pub fn step(run: Run, input: Input) -> (Run, Next) {
    let Run { plan, phase } = run;
    let phase = match input {
        Input::Start => phase,
        Input::Retry => match phase {
            Phase::Failed { retry, .. } => *retry,
            other => other,
        },
        Input::Completed(result) => advance(&plan, phase, result),
    };
    let next = next(&plan, &phase);
    (Run { plan, phase }, next)
}

fn failure(kind: ErrorKind, message: String) -> Failure {
    Failure {
        kind,
        message,
        subject: None,
        evidence: Vec::new(),
    }
}

fn end(outcome: Outcome, cause: Option<Failure>, backup: Option<BackupRef>) -> Ending {
    Ending {
        outcome,
        cause,
        backup,
        safety: None,
    }
}

/// `ending` with the safety backup `prep` took, if any.
fn with_safety(mut ending: Ending, prep: &Prepared) -> Ending {
    ending.safety = prep.safety.clone();
    ending
}

/// The effect a phase performs.
fn next(plan: &Plan, phase: &Phase) -> Next {
    let perform = |step, action| Next::Perform(Effect { step, action });
    match phase {
        Phase::Preflight => perform(Step::Preflight, Action::Preflight),
        Phase::Lock(_) => perform(Step::Lock, Action::Lock),
        Phase::Pull(_) => match plan {
            Plan::Upgrade { to, .. } => perform(Step::Pull, Action::Pull(to.clone())),
            _ => unreachable_phase(phase),
        },
        Phase::Snapshot(..) | Phase::RestoreSnapshot(..) => {
            perform(Step::Snapshot, Action::Snapshot)
        }
        Phase::BackupOnline(p) | Phase::BackupOffline(p) => perform(
            Step::Backup,
            Action::Backup {
                image: p.base.running(),
                snapshot: Some(p.snapshot.clone()),
            },
        ),
        Phase::TakeBackup(base) => perform(
            Step::Backup,
            Action::Backup {
                image: base.running(),
                snapshot: None,
            },
        ),
        Phase::StopThenBackup(_) | Phase::StopAfterBackup(_) | Phase::RestoreStop(..) => {
            perform(Step::Stop, Action::Scale(0))
        }
        Phase::SetImage(a) => perform(Step::SetImage, Action::SetImage(a.prep.target())),
        Phase::StartLeader(_) => perform(Step::StartLeader, Action::Scale(1)),
        Phase::AwaitLeader(a) => perform(
            Step::AwaitLeader,
            Action::AwaitReady {
                image: a.prep.target(),
                replicas: 1,
            },
        ),
        Phase::ScaleOut(a) => perform(Step::ScaleOut, Action::Scale(a.prep.base.replicas)),
        Phase::AwaitAll(a) => perform(
            Step::AwaitAll,
            Action::AwaitReady {
                image: a.prep.target(),
                replicas: a.prep.base.replicas,
            },
        ),
        Phase::Release(a) => perform(Step::Release, Action::Release(a.prep.snapshot.clone())),
        Phase::RestoreRelease(p) => perform(Step::Release, Action::Release(p.snapshot.clone())),
        Phase::Prune(a) => perform(
            Step::Prune,
            Action::Prune {
                keep: None,
                protect: a.protection.backup().map(|b| b.id.clone()),
            },
        ),
        // The snapshot, not a scale: the stopped instances come back themselves (a scale
        // would create new ones beside those kept aside).
        Phase::RestartOld(p, _) => perform(
            Step::RestartOld,
            Action::RestoreDefinition(p.snapshot.clone()),
        ),
        Phase::RollbackPull(a) => perform(Step::Pull, Action::Pull(a.prep.snapshot.image.clone())),
        Phase::RollbackStop(..) => perform(Step::RollbackStop, Action::Scale(0)),
        Phase::RestoreData(a, _) => match &a.protection {
            Protection::Backup(b) => perform(Step::RestoreData, Action::RestoreData(b.id.clone())),
            Protection::Skipped => unreachable_phase(phase),
        },
        Phase::RestoreBackup(_, id) => perform(Step::RestoreData, Action::RestoreData(id.clone())),
        Phase::RollbackSafety(a, _) => perform(
            Step::SafetyBackup,
            Action::Backup {
                image: a.prep.base.from.clone(),
                snapshot: None,
            },
        ),
        Phase::RestoreSafety(p, _) => perform(
            Step::SafetyBackup,
            Action::Backup {
                image: p.snapshot.image.clone(),
                snapshot: Some(p.snapshot.clone()),
            },
        ),
        Phase::PutBack(p, _) => match &p.safety {
            Some(b) => perform(Step::PutBack, Action::RestoreData(b.id.clone())),
            None => unreachable_phase(phase),
        },
        Phase::RestoreDefinition(a, _) => perform(
            Step::RestoreDefinition,
            Action::RestoreDefinition(a.prep.snapshot.clone()),
        ),
        Phase::RestoreBringBack(p) => perform(
            Step::RestoreDefinition,
            Action::RestoreDefinition(p.snapshot.clone()),
        ),
        Phase::AwaitRestored(a, _) => perform(
            Step::AwaitRestored,
            Action::AwaitReady {
                image: a.prep.snapshot.image.clone(),
                replicas: a.prep.snapshot.replicas,
            },
        ),
        Phase::RestoreAwait(p) => perform(
            Step::AwaitRestored,
            Action::AwaitReady {
                image: p.snapshot.image.clone(),
                replicas: p.snapshot.replicas,
            },
        ),
        Phase::CheckBackup(id, restore_test) => perform(
            Step::Verify,
            Action::Verify {
                backup: id.clone(),
                restore_test: *restore_test,
            },
        ),
        Phase::PruneBackups(keep) => perform(
            Step::Prune,
            Action::Prune {
                keep: Some(*keep),
                protect: None,
            },
        ),
        Phase::Unlock(_) => perform(Step::Unlock, Action::Unlock),
        Phase::Failed { retry, step, error } => Next::Stop(Report {
            outcome: Outcome::Failed,
            cause: Some(error.clone()),
            backup: None,
            stuck_at: Some(*step),
            safety: retry.safety().cloned(),
        }),
        Phase::Done(e) => Next::Stop(Report {
            outcome: e.outcome,
            cause: e.cause.clone(),
            backup: e.backup.clone(),
            stuck_at: None,
            safety: e.safety.clone(),
        }),
    }
}

/// Whether the plan asks for a safety backup of the data it replaces.
fn safety_wanted(plan: &Plan) -> bool {
    matches!(
        plan,
        Plan::Restore { safety: true, .. } | Plan::Rollback { safety: true, .. }
    )
}

fn unreachable_phase(phase: &Phase) -> Next {
    // Phases are only entered through `advance`, which never builds these combinations;
    // stopping beats panicking in a tool that may be mid-upgrade.
    Next::Stop(Report {
        outcome: Outcome::Failed,
        cause: Some(failure(
            ErrorKind::Other,
            format!("internal error: phase {phase:?} does not fit the plan"),
        )),
        backup: None,
        stuck_at: None,
        safety: None,
    })
}

/// The phase after the current one's effect completed with `result`.
fn advance(plan: &Plan, phase: Phase, result: Result<Output, Failure>) -> Phase {
    use Phase as P;
    let failed = |retry: Phase, step: Step, error: Failure| P::Failed {
        retry: Box::new(retry),
        step,
        error,
    };
    match (phase, result) {
        // Preflight: decide the shape of the run from what was observed.
        (P::Preflight, Ok(Output::Observed(seen))) => after_preflight(plan, seen),
        (P::Preflight, Err(e)) => P::Done(end(Outcome::Aborted, Some(e), None)),

        (P::Lock(base), Ok(_)) => match plan {
            Plan::Upgrade { .. } => P::Pull(base),
            Plan::Backup => P::TakeBackup(base),
            Plan::Restore { backup, .. } => P::RestoreSnapshot(base, backup.clone()),
            Plan::Verify {
                backup,
                restore_test,
            } => P::CheckBackup(backup.clone(), *restore_test),
            Plan::Prune { keep } => P::PruneBackups(*keep),
            Plan::Rollback {
                snapshot, backup, ..
            } => P::RollbackPull(Armed {
                prep: Prepared {
                    to: snapshot.image.clone(),
                    digest: None,
                    base,
                    snapshot: snapshot.clone(),
                    safety: None,
                },
                protection: backup
                    .clone()
                    .map_or(Protection::Skipped, Protection::Backup),
            }),
        },
        // The lock may have been taken before the failure (a crash right after it, then
        // `resume --rollback`): release it. Unlock never releases another holder's lock.
        (P::Lock(_), Err(e)) => P::Unlock(end(Outcome::Aborted, Some(e), None)),

        (P::Pull(base), Ok(Output::Pulled(pulled))) => match unpinnable(plan, &pulled) {
            Some(e) => P::Unlock(end(Outcome::Aborted, Some(e), None)),
            None => P::Snapshot(base, pulled),
        },
        (P::Pull(_), Err(e)) => P::Unlock(end(Outcome::Aborted, Some(e), None)),

        (P::Snapshot(base, pulled), Ok(Output::Snapshot(snapshot))) => {
            let Plan::Upgrade { to, backup, .. } = plan else {
                return P::Done(end(Outcome::Aborted, None, None));
            };
            let prep = Prepared {
                base,
                to: to.clone(),
                digest: pulled.digest,
                snapshot,
                safety: None,
            };
            match backup {
                BackupMode::Offline => P::StopThenBackup(prep),
                BackupMode::Online => P::BackupOnline(prep),
                BackupMode::Skip => P::StopAfterBackup(Armed {
                    prep,
                    protection: Protection::Skipped,
                }),
            }
        }
        (P::Snapshot(..), Err(e)) => P::Unlock(end(Outcome::Aborted, Some(e), None)),

        (P::BackupOnline(prep), Ok(Output::Backup(b))) => P::StopAfterBackup(Armed {
            prep,
            protection: Protection::Backup(b),
        }),
        (P::BackupOnline(_), Err(e)) => P::Unlock(end(Outcome::Aborted, Some(e), None)),

        (P::StopThenBackup(prep), Ok(_)) => P::BackupOffline(prep),
        (P::StopThenBackup(prep), Err(e)) => {
            P::RestartOld(prep, end(Outcome::Aborted, Some(e), None))
        }
        (P::BackupOffline(prep), Ok(Output::Backup(b))) => P::SetImage(Armed {
            prep,
            protection: Protection::Backup(b),
        }),
        (P::BackupOffline(prep), Err(e)) => {
            P::RestartOld(prep, end(Outcome::Aborted, Some(e), None))
        }
        (P::StopAfterBackup(a), Ok(_)) => P::SetImage(a),
        (P::StopAfterBackup(a), Err(e)) => {
            let backup = a.protection.backup().cloned();
            P::RestartOld(a.prep, end(Outcome::Aborted, Some(e), backup))
        }
        (P::RestartOld(_, ending), Ok(_)) => P::Unlock(ending),
        (P::RestartOld(prep, ending), Err(e)) => {
            failed(P::RestartOld(prep, ending), Step::RestartOld, e)
        }

        // From set_image on, a failure rolls back.
        (P::SetImage(a), Ok(_)) => P::StartLeader(a),
        (P::StartLeader(a), Ok(_)) => P::AwaitLeader(a),
        (P::AwaitLeader(a), Ok(_)) => P::ScaleOut(a),
        (P::ScaleOut(a), Ok(_)) => P::AwaitAll(a),
        (P::AwaitAll(a), Ok(_)) => P::Release(a),
        (
            P::SetImage(a)
            | P::StartLeader(a)
            | P::AwaitLeader(a)
            | P::ScaleOut(a)
            | P::AwaitAll(a),
            Err(e),
        ) => P::RollbackStop(a, Some(e)),

        // Commit housekeeping: failures are warnings, the upgrade stands.
        (P::Release(a), _) => P::Prune(a),
        (P::Prune(a), _) => {
            let backup = a.protection.backup().cloned();
            P::Unlock(end(Outcome::Upgraded, None, backup))
        }

        // Rollback (automatic or manual).
        (P::RollbackPull(a), Ok(_)) => P::RollbackStop(a, None),
        (P::RollbackPull(_), Err(e)) => P::Unlock(end(Outcome::Aborted, Some(e), None)),
        (P::RollbackStop(a, cause), Ok(_)) => match a.protection {
            Protection::Backup(_) if safety_wanted(plan) && a.prep.safety.is_none() => {
                P::RollbackSafety(a, cause)
            }
            Protection::Backup(_) => P::RestoreData(a, cause),
            Protection::Skipped => P::RestoreDefinition(a, cause),
        },
        (P::RollbackSafety(mut a, cause), Ok(Output::Backup(b))) => {
            a.prep.safety = Some(b);
            P::RestoreData(a, cause)
        }
        (P::RollbackSafety(a, cause), Err(e)) => {
            failed(P::RollbackSafety(a, cause), Step::SafetyBackup, e)
        }
        (P::RestoreData(a, cause), Ok(_)) => P::RestoreDefinition(a, cause),
        (P::RestoreDefinition(a, cause), Ok(_)) => P::AwaitRestored(a, cause),
        (P::AwaitRestored(a, cause), Ok(_)) => {
            let backup = a.protection.backup().cloned();
            P::Unlock(with_safety(
                end(Outcome::RolledBack, cause, backup),
                &a.prep,
            ))
        }
        (P::RollbackStop(a, cause), Err(e)) => {
            failed(P::RollbackStop(a, cause), Step::RollbackStop, e)
        }
        (P::RestoreData(a, cause), Err(e)) => {
            failed(P::RestoreData(a, cause), Step::RestoreData, e)
        }
        (P::RestoreDefinition(a, cause), Err(e)) => {
            failed(P::RestoreDefinition(a, cause), Step::RestoreDefinition, e)
        }
        (P::AwaitRestored(a, cause), Err(e)) => {
            failed(P::AwaitRestored(a, cause), Step::AwaitRestored, e)
        }

        // Backup run.
        (P::TakeBackup(_), Ok(Output::Backup(b))) => {
            P::Unlock(end(Outcome::BackedUp, None, Some(b)))
        }
        (P::TakeBackup(_), Err(e)) => P::Unlock(end(Outcome::Aborted, Some(e), None)),

        // Verify and prune runs change no deployment: a failure aborts.
        (P::CheckBackup(..), Ok(Output::Backup(b))) => {
            P::Unlock(end(Outcome::Verified, None, Some(b)))
        }
        (P::CheckBackup(..), Err(e)) => P::Unlock(end(Outcome::Aborted, Some(e), None)),
        (P::PruneBackups(_), Ok(Output::Pruned { .. })) => {
            P::Unlock(end(Outcome::Pruned, None, None))
        }
        (P::PruneBackups(_), Err(e)) => P::Unlock(end(Outcome::Aborted, Some(e), None)),

        // Restore run.
        (P::RestoreSnapshot(base, id), Ok(Output::Snapshot(snapshot))) => P::RestoreStop(
            Prepared {
                to: snapshot.image.clone(),
                digest: None,
                base,
                snapshot,
                safety: None,
            },
            id,
        ),
        (P::RestoreSnapshot(..), Err(e)) => P::Unlock(end(Outcome::Aborted, Some(e), None)),
        (P::RestoreStop(p, id), Ok(_)) if safety_wanted(plan) && p.safety.is_none() => {
            P::RestoreSafety(p, id)
        }
        (P::RestoreStop(p, id), Ok(_)) => P::RestoreBackup(p, id),
        (P::RestoreStop(p, id), Err(e)) => failed(P::RestoreStop(p, id), Step::Stop, e),
        (P::RestoreSafety(mut p, id), Ok(Output::Backup(b))) => {
            p.safety = Some(b);
            P::RestoreBackup(p, id)
        }
        // Nothing was replaced yet: start the stopped instances again.
        (P::RestoreSafety(p, _), Err(e)) => P::RestartOld(p, end(Outcome::Aborted, Some(e), None)),
        (P::RestoreBackup(p, _), Ok(_)) => P::RestoreBringBack(p),
        (P::RestoreBackup(p, _), Err(e)) if p.safety.is_some() => P::PutBack(p, e),
        (P::RestoreBackup(p, id), Err(e)) => failed(P::RestoreBackup(p, id), Step::RestoreData, e),
        (P::PutBack(p, cause), Ok(_)) => {
            let ending = with_safety(end(Outcome::Aborted, Some(cause), None), &p);
            P::RestartOld(p, ending)
        }
        (P::PutBack(p, cause), Err(e)) => failed(P::PutBack(p, cause), Step::PutBack, e),
        (P::RestoreBringBack(p), Ok(_)) => P::RestoreAwait(p),
        (P::RestoreBringBack(p), Err(e)) => {
            failed(P::RestoreBringBack(p), Step::RestoreDefinition, e)
        }
        (P::RestoreAwait(p), Ok(_)) => P::RestoreRelease(p),
        (P::RestoreAwait(p), Err(e)) => failed(P::RestoreAwait(p), Step::AwaitRestored, e),
        (P::RestoreRelease(p), _) => P::Unlock(with_safety(end(Outcome::Restored, None, None), &p)),

        // Releasing the backend lock is housekeeping too.
        (P::Unlock(ending), _) => P::Done(ending),

        // A result that does not fit the step is a driver or engine bug: treat it as the
        // step failing, which takes the safe branch.
        (
            phase @ (P::Preflight
            | P::Pull(_)
            | P::Snapshot(..)
            | P::BackupOnline(_)
            | P::BackupOffline(_)
            | P::TakeBackup(_)
            | P::RestoreSnapshot(..)
            | P::RollbackSafety(..)
            | P::RestoreSafety(..)
            | P::CheckBackup(..)
            | P::PruneBackups(_)),
            Ok(other),
        ) => {
            let e = failure(
                ErrorKind::Other,
                format!("internal error: unexpected result {other:?} for {phase:?}"),
            );
            advance(plan, phase, Err(e))
        }
        (phase @ (P::Failed { .. } | P::Done(_)), _) => phase,
    }
}

fn after_preflight(plan: &Plan, seen: Baseline) -> Phase {
    let replicas = match plan {
        Plan::Upgrade { replicas, .. } => replicas.unwrap_or(seen.replicas),
        Plan::Rollback { snapshot, .. } => snapshot.replicas,
        Plan::Backup | Plan::Restore { .. } | Plan::Verify { .. } | Plan::Prune { .. } => {
            seen.replicas
        }
    };
    if let Plan::Upgrade {
        to,
        allow_downgrade,
        ..
    } = plan
        && let Some(refusal) = refuse_upgrade(&seen.image, to, *allow_downgrade, replicas)
    {
        return Phase::Done(end(Outcome::Aborted, Some(refusal), None));
    }
    Phase::Lock(Base {
        from: seen.image,
        old_replicas: seen.replicas,
        replicas,
        from_digest: seen.digest,
    })
}

/// Why a pulled digest cannot pin the target, if it cannot: the definition would then
/// name a tag that may move, so the run stops before any downtime.
fn unpinnable(plan: &Plan, pulled: &Pulled) -> Option<Failure> {
    let (Plan::Upgrade { to, .. }, Some(digest)) = (plan, &pulled.digest) else {
        return None;
    };
    let problem = to.with_digest(digest).err()?;
    Some(failure(
        ErrorKind::Other,
        format!(
            "the driver reported {digest:?} as the digest of {to}, which cannot pin it ({}); nothing was changed",
            problem.message()
        ),
    ))
}

/// Why an upgrade from `from` to `to` must not start, if it must not.
pub fn refuse_upgrade(
    from: &ImageRef,
    to: &ImageRef,
    allow_downgrade: bool,
    replicas: u32,
) -> Option<Failure> {
    if replicas == 0 {
        return Some(failure(
            ErrorKind::InvalidInput,
            "the deployment asks for 0 replicas and no replica count was given; set [app] replicas or pass --replicas".into(),
        ));
    }
    // A definition cutover pinned names its tag too: the same tag is the same release.
    if same_image(from, to) {
        return Some(failure(
            ErrorKind::InvalidInput,
            format!("the deployment already runs {to}; nothing to upgrade"),
        ));
    }
    if from.repository() != to.repository() {
        return Some(failure(
            ErrorKind::InvalidInput,
            format!(
                "the deployment runs {from}, not an image of {}; check [app] image",
                to.repository()
            ),
        ));
    }
    let version = |i: &ImageRef| i.tag().and_then(Version::from_tag);
    if let (Some(a), Some(b)) = (version(from), version(to))
        && b < a
        && !allow_downgrade
    {
        return Some(failure(
            ErrorKind::InvalidInput,
            format!(
                "{to} is older than the running {from}; a downgrade runs the old image on a migrated schema. Use `cutover rollback` to go back with the data, or pass --allow-downgrade if the vendor supports it"
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn img(tag: &str) -> ImageRef {
        format!("registry.test/app:{tag}").parse().unwrap()
    }

    fn upgrade(backup: BackupMode) -> Plan {
        Plan::Upgrade {
            to: img("1.1.0"),
            backup,
            replicas: Some(3),
            allow_downgrade: false,
        }
    }

    fn seen() -> Baseline {
        Baseline {
            image: img("1.0.0"),
            replicas: 3,
            instances: Vec::new(),
            digest: None,
        }
    }

    /// A plausible successful output for an action.
    fn success(action: &Action) -> Output {
        match action {
            Action::Preflight => Output::Observed(seen()),
            Action::Pull(image) => Output::Pulled(Pulled {
                image: image.clone(),
                digest: None,
            }),
            Action::Snapshot => Output::Snapshot(Snapshot {
                driver: "test".into(),
                image: img("1.0.0"),
                replicas: 3,
                data: serde_json::Value::Null,
            }),
            Action::Backup { .. } => Output::Backup(BackupRef {
                id: "b-1".parse().unwrap(),
                bytes: 1,
            }),
            Action::Prune { .. } => Output::Pruned {
                deleted: Vec::new(),
                swept: Vec::new(),
            },
            _ => Output::Done,
        }
    }

    fn fail() -> Failure {
        Failure {
            kind: ErrorKind::Other,
            message: "boom".into(),
            subject: None,
            evidence: Vec::new(),
        }
    }

    #[test]
    fn preview_lists_the_offline_upgrade_in_order() {
        let steps: Vec<Step> = Run::new(upgrade(BackupMode::Offline))
            .preview(&seen())
            .into_iter()
            .map(|e| e.step)
            .collect();
        use Step::*;
        assert_eq!(
            steps,
            [
                Preflight,
                Lock,
                Pull,
                Snapshot,
                Stop,
                Backup,
                SetImage,
                StartLeader,
                AwaitLeader,
                ScaleOut,
                AwaitAll,
                Release,
                Prune,
                Unlock
            ]
        );
    }

    #[test]
    fn a_failure_before_stop_aborts_and_after_set_image_rolls_back() {
        let cases = [
            (Step::Pull, Outcome::Aborted, false),
            (Step::Backup, Outcome::Aborted, true),
            (Step::AwaitLeader, Outcome::RolledBack, true),
        ];
        for (failing, outcome, restarts_or_restores) in cases {
            let mut run = Run::new(upgrade(BackupMode::Offline));
            let mut performed = Vec::new();
            let mut failed = false;
            let report = loop {
                match run.next() {
                    Next::Stop(report) => break report,
                    Next::Perform(effect) => {
                        performed.push(effect.step);
                        let result = if effect.step == failing && !failed {
                            failed = true;
                            Err(fail())
                        } else {
                            Ok(success(&effect.action))
                        };
                        run = step(run, Input::Completed(result)).0;
                    }
                }
            };
            assert_eq!(report.outcome, outcome, "failing {failing}: {performed:?}");
            let repaired =
                performed.contains(&Step::RestartOld) || performed.contains(&Step::RestoreData);
            assert_eq!(
                repaired, restarts_or_restores,
                "failing {failing}: {performed:?}"
            );
            assert_eq!(performed.last(), Some(&Step::Unlock), "{performed:?}");
        }
    }

    const PULLED: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const RAN: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    /// The effects of a run in which every step succeeds, preflight observing `seen` and
    /// pull reporting `digest`.
    fn effects_with(plan: Plan, seen: Baseline, digest: Option<&str>) -> Vec<Effect> {
        let mut run = Run::new(plan);
        let mut effects = Vec::new();
        while let Next::Perform(effect) = run.next() {
            let output = match &effect.action {
                Action::Preflight => Output::Observed(seen.clone()),
                Action::Pull(image) => Output::Pulled(Pulled {
                    image: image.clone(),
                    digest: digest.map(str::to_owned),
                }),
                other => success(other),
            };
            effects.push(effect);
            run = step(run, Input::Completed(Ok(output))).0;
        }
        effects
    }

    #[test]
    fn the_pulled_digest_pins_set_image_and_readiness_and_the_backup_names_what_ran() {
        let seen = Baseline {
            digest: Some(RAN.into()),
            ..seen()
        };
        let effects = effects_with(upgrade(BackupMode::Offline), seen, Some(PULLED));
        let pinned = img("1.1.0").with_digest(PULLED).unwrap();
        let actions: Vec<&Action> = effects.iter().map(|e| &e.action).collect();
        assert!(
            actions.contains(&&Action::SetImage(pinned.clone())),
            "{actions:?}"
        );
        let awaited: Vec<&ImageRef> = actions
            .iter()
            .filter_map(|a| match a {
                Action::AwaitReady { image, .. } => Some(image),
                _ => None,
            })
            .collect();
        assert_eq!(awaited, [&pinned, &pinned], "{actions:?}");
        let backed_up: Vec<&ImageRef> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Backup { image, .. } => Some(image),
                _ => None,
            })
            .collect();
        assert_eq!(backed_up, [&img("1.0.0").with_digest(RAN).unwrap()]);
        assert!(
            actions.contains(&&Action::Pull(img("1.1.0"))),
            "pull asks for the tag"
        );
    }

    #[test]
    fn without_a_digest_the_tag_is_used_as_before() {
        let effects = effects_with(upgrade(BackupMode::Online), seen(), None);
        let actions: Vec<&Action> = effects.iter().map(|e| &e.action).collect();
        assert!(
            actions.contains(&&Action::SetImage(img("1.1.0"))),
            "{actions:?}"
        );
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::AwaitReady { image, replicas: 3 } if *image == img("1.1.0")
        )));
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Backup { image, .. } if *image == img("1.0.0")
        )));
    }

    #[test]
    fn a_digest_that_cannot_pin_the_target_aborts_before_any_change() {
        let effects = effects_with(upgrade(BackupMode::Offline), seen(), Some("md5:abc"));
        let steps: Vec<Step> = effects.iter().map(|e| e.step).collect();
        assert_eq!(
            steps,
            [Step::Preflight, Step::Lock, Step::Pull, Step::Unlock]
        );
        let mut run = Run::new(upgrade(BackupMode::Offline));
        for output in [
            Output::Observed(seen()),
            Output::Done,
            Output::Pulled(Pulled {
                image: img("1.1.0"),
                digest: Some("md5:abc".into()),
            }),
            Output::Done,
        ] {
            run = step(run, Input::Completed(Ok(output))).0;
        }
        let Next::Stop(report) = run.next() else {
            panic!("the run goes on: {run:?}");
        };
        assert_eq!(report.outcome, Outcome::Aborted);
        let cause = report.cause.unwrap().message;
        assert!(
            cause.contains("md5:abc") && cause.contains("nothing was changed"),
            "{cause}"
        );
    }

    /// Journals and states written before digests were recorded: a baseline without
    /// `digest` and a `Prepared` without `digest` read as "no digest", and the run goes on
    /// with the tag.
    #[test]
    fn journals_and_states_from_before_digests_still_fold() {
        let observed: Output = serde_json::from_str(
            r#"{"output":"observed","image":"registry.test/app:1.0.0","replicas":3}"#,
        )
        .unwrap();
        assert_eq!(observed, Output::Observed(seen()));
        let mut run = Run::new(upgrade(BackupMode::Offline));
        let old_journal = [
            r#"{"output":"observed","image":"registry.test/app:1.0.0","replicas":3}"#,
            r#"{"output":"done"}"#,
            r#"{"output":"pulled","image":"registry.test/app:1.1.0","digest":null}"#,
            r#"{"output":"snapshot","driver":"test","image":"registry.test/app:1.0.0","replicas":3,"data":null}"#,
            r#"{"output":"done"}"#,
            r#"{"output":"backup","id":"b-1","bytes":1}"#,
        ];
        for entry in old_journal {
            let output: Output = serde_json::from_str(entry).unwrap();
            run = step(run, Input::Completed(Ok(output))).0;
        }
        let Next::Perform(effect) = run.next() else {
            panic!("{run:?}");
        };
        assert_eq!(effect.action, Action::SetImage(img("1.1.0")));

        // A serialised state of that time (Base without `from_digest`, Prepared without
        // `digest`) reads too, and pins nothing.
        let mut json = serde_json::to_value(&run).unwrap();
        let prep = &mut json["phase"]["SetImage"]["prep"];
        prep.as_object_mut().unwrap().remove("digest").unwrap();
        prep["base"]
            .as_object_mut()
            .unwrap()
            .remove("from_digest")
            .unwrap();
        let old: Run = serde_json::from_value(json).unwrap();
        assert_eq!(old, run);
    }

    #[test]
    fn the_baseline_digest_is_the_one_every_instance_of_the_tag_runs() {
        use crate::driver::Instance;
        let instance = |image: ImageRef, digest: Option<&str>| Instance {
            id: "i".into(),
            uid: None,
            location: String::new(),
            image,
            digest: digest.map(str::to_owned),
            running: true,
            ready: true,
        };
        let observed = |image: ImageRef, instances| Observed {
            image,
            replicas: 2,
            instances,
        };
        let old = img("1.0.0");
        let pinned = old.with_digest(RAN).unwrap();
        let cases = [
            (
                observed(
                    old.clone(),
                    vec![
                        instance(old.clone(), Some(RAN)),
                        instance(old.clone(), Some(RAN)),
                    ],
                ),
                Some(RAN),
            ),
            (
                observed(
                    old.clone(),
                    vec![
                        instance(old.clone(), Some(RAN)),
                        instance(old.clone(), Some(PULLED)),
                    ],
                ),
                None,
            ),
            (
                observed(
                    old.clone(),
                    vec![
                        instance(old.clone(), Some(RAN)),
                        instance(old.clone(), None),
                    ],
                ),
                None,
            ),
            (
                observed(old.clone(), vec![instance(pinned.clone(), None)]),
                Some(RAN),
            ),
            (observed(pinned.clone(), vec![]), Some(RAN)),
            (observed(old.clone(), vec![]), None),
        ];
        for (seen, digest) in cases {
            assert_eq!(Baseline::of(&seen).digest.as_deref(), digest, "{seen:?}");
        }

        // Waiting for a pinned image: an instance of its tag with another digest, or with
        // none that can be known, has not started what was pulled.
        let target = img("1.1.0").with_digest(PULLED).unwrap();
        let seen = observed(
            old,
            vec![
                instance(target.clone(), None),
                instance(img("1.1.0"), Some(PULLED)),
                instance(img("1.1.0"), Some(RAN)),
                instance(img("1.1.0"), None),
            ],
        );
        assert_eq!(seen.ready_of(&target), 2);
        assert_eq!(seen.moved_from(&target).len(), 2);
        assert!(seen.moved_from(&img("1.1.0")).is_empty());
    }

    #[test]
    fn a_pinned_definition_of_the_target_tag_is_already_running() {
        let pinned = img("1.1.0").with_digest(PULLED).unwrap();
        let refusal = refuse_upgrade(&pinned, &img("1.1.0"), false, 3).unwrap();
        assert!(refusal.message.contains("already runs"), "{refusal:?}");
        assert!(refuse_upgrade(&pinned, &img("1.2.0"), false, 3).is_none());
    }

    /// One phase of every variant, with what a run in it answers today: whether it may be
    /// cancelled, and whether the deployment may have been changed. The table was taken
    /// from the hand-kept lists that [`Phase::stage`] replaced, so the stages keep them.
    fn every_phase() -> Vec<(Phase, bool, bool)> {
        let base = Base {
            from: img("1.0.0"),
            old_replicas: 3,
            replicas: 3,
            from_digest: None,
        };
        let pulled = Pulled {
            image: img("1.1.0"),
            digest: None,
        };
        let prep = Prepared {
            base: base.clone(),
            to: img("1.1.0"),
            digest: None,
            snapshot: Snapshot {
                driver: "test".into(),
                image: img("1.0.0"),
                replicas: 3,
                data: serde_json::Value::Null,
            },
            safety: None,
        };
        let armed = Armed {
            prep: prep.clone(),
            protection: Protection::Skipped,
        };
        let ending = end(Outcome::Aborted, None, None);
        let id: BackupId = "b-1".parse().unwrap();
        use Phase as P;
        vec![
            (P::Preflight, true, false),
            (P::Lock(base.clone()), true, false),
            (P::Pull(base.clone()), true, false),
            (P::Snapshot(base.clone(), pulled), true, false),
            (P::BackupOnline(prep.clone()), true, false),
            (P::StopThenBackup(prep.clone()), true, false),
            (P::BackupOffline(prep.clone()), true, true),
            (P::StopAfterBackup(armed.clone()), true, true),
            (P::SetImage(armed.clone()), true, true),
            (P::StartLeader(armed.clone()), true, true),
            (P::AwaitLeader(armed.clone()), true, true),
            (P::ScaleOut(armed.clone()), true, true),
            (P::AwaitAll(armed.clone()), true, true),
            (P::Release(armed.clone()), false, true),
            (P::Prune(armed.clone()), false, true),
            (P::RestartOld(prep.clone(), ending.clone()), false, true),
            (P::RollbackPull(armed.clone()), true, false),
            (P::RollbackStop(armed.clone(), None), false, true),
            (P::RestoreData(armed.clone(), None), false, true),
            (P::RestoreDefinition(armed.clone(), None), false, true),
            (P::AwaitRestored(armed.clone(), None), false, true),
            (P::TakeBackup(base.clone()), true, false),
            (P::RollbackSafety(armed.clone(), None), false, true),
            (P::RestoreSnapshot(base.clone(), id.clone()), true, false),
            (P::RestoreStop(prep.clone(), id.clone()), false, true),
            (P::RestoreSafety(prep.clone(), id.clone()), false, true),
            (P::RestoreBackup(prep.clone(), id.clone()), false, true),
            (P::PutBack(prep.clone(), fail()), false, true),
            (P::RestoreBringBack(prep.clone()), false, true),
            (P::RestoreAwait(prep.clone()), false, true),
            (P::RestoreRelease(prep.clone()), false, true),
            (P::CheckBackup(id.clone(), false), true, false),
            (P::PruneBackups(2), false, false),
            (P::Unlock(ending.clone()), false, true),
            (
                P::Failed {
                    retry: Box::new(P::RollbackStop(armed, None)),
                    step: Step::RollbackStop,
                    error: fail(),
                },
                false,
                true,
            ),
            (P::Done(ending), false, true),
        ]
    }

    /// Both prunes are one action with one outcome, and an upgrade journaled before that,
    /// whose prune finished `done`, still folds to upgraded.
    #[test]
    fn both_prunes_report_what_they_deleted_and_old_done_prunes_still_fold() {
        let prunes = |plan: Plan| -> Vec<Action> {
            effects_with(plan, seen(), None)
                .into_iter()
                .filter(|e| e.step == Step::Prune)
                .map(|e| e.action)
                .collect()
        };
        assert_eq!(
            prunes(upgrade(BackupMode::Offline)),
            [Action::Prune {
                keep: None,
                protect: Some("b-1".parse().unwrap()),
            }]
        );
        assert_eq!(
            prunes(Plan::Prune { keep: 2 }),
            [Action::Prune {
                keep: Some(2),
                protect: None,
            }]
        );

        let upgraded = |prune: &str| {
            let mut run = Run::new(upgrade(BackupMode::Offline));
            let journal = [
                r#"{"output":"observed","image":"registry.test/app:1.0.0","replicas":3}"#,
                r#"{"output":"done"}"#,
                r#"{"output":"pulled","image":"registry.test/app:1.1.0","digest":null}"#,
                r#"{"output":"snapshot","driver":"test","image":"registry.test/app:1.0.0","replicas":3,"data":null}"#,
                r#"{"output":"done"}"#,
                r#"{"output":"backup","id":"b-1","bytes":1}"#,
            ]
            .into_iter()
            .chain([r#"{"output":"done"}"#; 6])
            .chain([prune, r#"{"output":"done"}"#]);
            for entry in journal {
                let output: Output = serde_json::from_str(entry).unwrap();
                run = step(run, Input::Completed(Ok(output))).0;
            }
            match run.next() {
                Next::Stop(report) => report.outcome,
                Next::Perform(effect) => panic!("the run goes on: {effect:?}"),
            }
        };
        assert_eq!(upgraded(r#"{"output":"done"}"#), Outcome::Upgraded);
        assert_eq!(
            upgraded(r#"{"output":"pruned","deleted":["b-0"]}"#),
            Outcome::Upgraded
        );
    }

    #[test]
    fn cancellable_and_changed_are_what_the_hand_kept_lists_said() {
        let plan = upgrade(BackupMode::Offline);
        for (phase, cancellable, changed) in every_phase() {
            let run = Run {
                plan: plan.clone(),
                phase,
            };
            assert_eq!(run.is_cancellable(), cancellable, "{:?}", run.phase);
            assert_eq!(run.has_changed_deployment(), changed, "{:?}", run.phase);
            // What `Effect::is_best_effort` said before prune was one action: release,
            // unlock and an upgrade's prune, not a prune run's.
            let best_effort = matches!(
                run.phase,
                Phase::Release(_) | Phase::RestoreRelease(_) | Phase::Prune(_) | Phase::Unlock(_)
            );
            assert_eq!(run.is_best_effort(), best_effort, "{:?}", run.phase);
        }
    }

    proptest! {
        /// Whatever the results, the machine (a) never starts the new image before a
        /// backup was recorded, unless skipped; (b) never scales up the new image between
        /// a stop and the end of the rollback; (c) stops or asks for a retry within a
        /// bounded number of steps; (d) survives a JSON round trip of its state.
        #[test]
        fn upgrade_invariants_hold_for_any_results(
            mode in prop_oneof![Just(BackupMode::Offline), Just(BackupMode::Online), Just(BackupMode::Skip)],
            failures in prop::collection::vec(any::<bool>(), 0..40),
        ) {
            let mut run = Run::new(upgrade(mode));
            let mut backed_up = false;
            let mut rolling_back = false;
            let mut results = failures.into_iter();
            for _ in 0..100 {
                let json = serde_json::to_string(&run).unwrap();
                prop_assert_eq!(&serde_json::from_str::<Run>(&json).unwrap(), &run);
                match run.next() {
                    Next::Stop(report) => {
                        if report.outcome == Outcome::Failed {
                            prop_assert!(report.stuck_at.is_some());
                            run = step(run, Input::Retry).0;
                            continue;
                        }
                        prop_assert!(report.outcome.is_terminal());
                        return Ok(());
                    }
                    Next::Perform(effect) => {
                        if matches!(effect.step, Step::StartLeader | Step::ScaleOut) {
                            prop_assert!(backed_up || mode == BackupMode::Skip, "{:?} before a backup", effect.step);
                            prop_assert!(!rolling_back, "{:?} while rolling back", effect.step);
                        }
                        if effect.step == Step::RollbackStop {
                            rolling_back = true;
                        }
                        let ok = !results.next().unwrap_or(false);
                        if ok && effect.step == Step::Backup {
                            backed_up = true;
                        }
                        let result = if ok { Ok(success(&effect.action)) } else { Err(fail()) };
                        run = step(run, Input::Completed(result)).0;
                    }
                }
            }
            prop_assert!(false, "the run did not settle in 100 steps");
        }
    }
}
