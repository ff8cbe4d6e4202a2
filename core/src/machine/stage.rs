//! Sorting phases into stages: what cancelling, best-effort steps and the operator's
//! "may have changed" message are derived from.

#[cfg(doc)]
use super::Input;
use super::Phase;

/// What a phase is part of: the one place that sorts phases, so that cancelling,
/// best-effort housekeeping and the operator's "may have changed" message follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// On the way forward, the deployment not yet known changed: a cancel aborts
    /// (preflight, lock, pulls, snapshots, an online or backup run's backup, the
    /// `before_stop` hook, a verify run's check).
    Preparing,
    /// On the way forward, the deployment may be changed: a cancel restarts the old
    /// instances or rolls back (an upgrade from its offline backup, or its online or
    /// skip-mode stop, to `await_all`, the `after_leader` hook included).
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
    /// An upgrade's end hooks and releasing the lock, whatever the outcome: a failure is
    /// only a warning.
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
            P::Preflight
            | P::Lock(_)
            | P::Pull(_)
            | P::Snapshot(..)
            | P::BackupOnline(_)
            | P::HookBeforeStop(_)
            | P::HookBeforeStopArmed(_)
            | P::RollbackPull(_)
            | P::TakeBackup(_)
            | P::RestoreSnapshot(..)
            | P::CheckBackup(..) => Stage::Preparing,
            // Every `stop` changes the deployment, whichever backup mode put it where.
            P::StopThenBackup(_)
            | P::BackupOffline(_)
            | P::StopAfterBackup(_)
            | P::SetImage(_)
            | P::StartLeader(_)
            | P::AwaitLeader(_)
            | P::HookAfterLeader(_)
            | P::ScaleOut(_)
            | P::AwaitAll(_) => Stage::Changing,
            P::RestartOld(..)
            | P::RollbackStop(..)
            | P::RollbackSafety(..)
            | P::RollbackRestart(..)
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
            // The end hooks run whatever the outcome, like the unlock they precede.
            P::HookOnRollback(_) | P::HookAfterRun(_) | P::Unlock(_) => Stage::Ending,
            P::Failed { .. } => Stage::Failed,
            P::Done(_) => Stage::Done,
        }
    }
}
