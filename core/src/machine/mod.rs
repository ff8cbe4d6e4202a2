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
//!    (online), or not at all (skip). The `before_stop` hook, if the plan has one, runs
//!    right before the stop.
//! 6. `set_image`: the definition now names the new image, pinned to the pulled digest;
//!    readiness then waits for that digest, and an instance of the tag running another
//!    fails the step.
//! 7. `start_leader` (scale 1) and `await_leader`: the one instance that migrates; then
//!    the `after_leader` hook (best effort).
//! 8. `scale_out` (scale N) and `await_all`.
//! 9. `release`, `prune`, `unlock`: commit. Every upgrade that took its lock runs its
//!    `on_rollback` hook (when rolled back) and `after_run` hook right before `unlock`,
//!    best effort.
//!
//! # Guarantees
//! - Failure before `stop` (the `before_stop` hook's included): nothing changed; unlock →
//!   [`Outcome::Aborted`].
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
//!
//! # Layout
//! This module holds what every run shares: the plan, steps, actions, outputs, [`Run`],
//! [`step`], and the transitions of preflight, lock and unlock. Each phase's own
//! transitions live with its kind of run (`upgrade`, `rollback`, `restore`, and `backup`
//! for backup, verify and prune runs); `phase` holds what a phase carries and `stage`
//! sorts phases into [`Stage`]s.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::backup::{BackupId, BackupRef, Swept};
use crate::driver::{Instance, Observed, Pulled, Snapshot};
use crate::error::{ErrorKind, Failure};
use crate::image::ImageRef;
pub use crate::run::{Outcome, RunKind};

mod backup;
mod hook;
mod phase;
mod restore;
mod rollback;
mod stage;
mod upgrade;

pub use hook::{Hook, HookCall, HookPoints};
pub use phase::{Armed, Base, Closing, Ending, Phase, Prepared, Protection};
pub use stage::Stage;
pub use upgrade::refuse_upgrade;

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
        /// The hook points with a command (the engine's `Settings::hooks` holds the
        /// commands). Journals written before hooks existed read none.
        #[serde(default, skip_serializing_if = "HookPoints::is_none")]
        hooks: HookPoints,
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
    HookBeforeStop,
    HookAfterLeader,
    HookOnRollback,
    HookAfterRun,
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
            Self::HookBeforeStop => "hook_before_stop",
            Self::HookAfterLeader => "hook_after_leader",
            Self::HookOnRollback => "hook_on_rollback",
            Self::HookAfterRun => "hook_after_run",
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
    /// Run the operator's command at a hook point (`Settings::hooks`); returns
    /// [`Output::Done`].
    Hook(HookCall),
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
        /// Backups older than the newest `keep` that were kept anyway, each with why.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept: Vec<KeptBackup>,
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
            Self::Pruned {
                deleted,
                swept,
                kept,
            } if deleted.is_empty() && swept.is_empty() && kept.is_empty() => {
                "nothing to delete".to_string()
            }
            Self::Pruned {
                deleted,
                swept,
                kept,
            } => {
                let list = |items: Vec<String>| items.join(", ");
                let mut parts = Vec::new();
                if deleted.is_empty() && swept.is_empty() {
                    parts.push("nothing deleted".to_string());
                }
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
                if !kept.is_empty() {
                    parts.push(format!(
                        "kept {}",
                        list(
                            kept.iter()
                                .map(|k| format!("{} ({})", k.id, k.why))
                                .collect()
                        )
                    ));
                }
                parts.join("; ")
            }
            Self::Done => String::new(),
        }
    }
}

/// A backup that retention kept beyond the newest `keep`, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptBackup {
    /// Its id.
    pub id: BackupId,
    /// Why it must stay (what still needs it).
    pub why: String,
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
    /// The image that ran on the data [`Report::safety`] holds (absent in journals
    /// written before it was recorded): what must run again before that data can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_under: Option<ImageRef>,
}

/// What the engine does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Perform this effect and report its result.
    Perform(Effect),
    /// The run stopped with this report.
    Stop(Report),
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

    /// Whether a failure of the current step is only a warning (commit housekeeping,
    /// unlock, and every hook but `before_stop`): the machine goes on whatever the result.
    pub fn is_best_effort(&self) -> bool {
        // `after_leader` is on the way forward (a cancel rolls back) but its failure is
        // only a warning.
        self.stage().is_best_effort() || matches!(self.phase, Phase::HookAfterLeader(_))
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
                    kept: Vec::new(),
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
        nothing_changed: false,
    }
}

/// A result that does not fit the step: a driver or engine bug, which the step's failure
/// branch (the safe one) handles.
fn unexpected(output: &Output, phase: &Phase) -> Failure {
    failure(
        ErrorKind::Other,
        format!("internal error: unexpected result {output:?} for {phase:?}"),
    )
}

fn end(outcome: Outcome, cause: Option<Failure>, backup: Option<BackupRef>) -> Ending {
    Ending {
        outcome,
        cause,
        backup,
        safety: None,
        safety_under: None,
    }
}

/// `ending` with the safety backup `prep` took, if any.
fn with_safety(mut ending: Ending, prep: &Prepared) -> Ending {
    ending.safety = prep.safety.clone();
    ending.safety_under = prep.safety.as_ref().map(|_| prep.base.running());
    ending
}

/// The run stopped at `step`; [`Input::Retry`] resumes in `retry`.
fn failed(retry: Phase, step: Step, error: Failure) -> Phase {
    Phase::Failed {
        retry: Box::new(retry),
        step,
        error,
    }
}

fn perform(step: Step, action: Action) -> Next {
    Next::Perform(Effect { step, action })
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
        safety_under: None,
    })
}

/// The module whose transitions a phase follows.
enum Branch {
    /// Preflight, lock, unlock and the stops: every run's.
    Shared,
    Upgrade,
    Rollback,
    Restore,
    /// Backup, verify and prune runs.
    Backup,
}

/// Which module handles `phase`. No wildcard: a new phase does not compile until it is
/// given one.
fn branch(phase: &Phase) -> Branch {
    use Phase as P;
    match phase {
        P::Preflight | P::Lock(_) | P::Unlock(_) | P::Failed { .. } | P::Done(_) => Branch::Shared,
        P::Pull(_)
        | P::Snapshot(..)
        | P::BackupOnline(_)
        | P::HookBeforeStop(_)
        | P::HookBeforeStopArmed(_)
        | P::StopThenBackup(_)
        | P::BackupOffline(_)
        | P::StopAfterBackup(_)
        | P::SetImage(_)
        | P::StartLeader(_)
        | P::AwaitLeader(_)
        | P::HookAfterLeader(_)
        | P::ScaleOut(_)
        | P::AwaitAll(_)
        | P::Release(_)
        | P::Prune(_)
        | P::RestartOld(..)
        | P::HookOnRollback(_)
        | P::HookAfterRun(_) => Branch::Upgrade,
        P::RollbackPull(_)
        | P::RollbackStop(..)
        | P::RollbackSafety(..)
        | P::RollbackRestart(..)
        | P::RestoreData(..)
        | P::RestoreDefinition(..)
        | P::AwaitRestored(..) => Branch::Rollback,
        P::RestoreSnapshot(..)
        | P::RestoreStop(..)
        | P::RestoreSafety(..)
        | P::RestoreBackup(..)
        | P::PutBack(..)
        | P::RestoreBringBack(_)
        | P::RestoreAwait(_)
        | P::RestoreRelease(_) => Branch::Restore,
        P::TakeBackup(_) | P::CheckBackup(..) | P::PruneBackups(_) => Branch::Backup,
    }
}

/// The effect a phase performs.
fn next(plan: &Plan, phase: &Phase) -> Next {
    match branch(phase) {
        Branch::Upgrade => return upgrade::next(plan, phase),
        Branch::Rollback => return rollback::next(phase),
        Branch::Restore => return restore::next(phase),
        Branch::Backup => return backup::next(phase),
        Branch::Shared => {}
    }
    match phase {
        Phase::Preflight => perform(Step::Preflight, Action::Preflight),
        Phase::Lock(_) => perform(Step::Lock, Action::Lock),
        Phase::Unlock(_) => perform(Step::Unlock, Action::Unlock),
        Phase::Failed { retry, step, error } => Next::Stop(Report {
            outcome: Outcome::Failed,
            cause: Some(error.clone()),
            backup: None,
            stuck_at: Some(*step),
            safety: retry.safety().cloned(),
            safety_under: None,
        }),
        Phase::Done(e) => Next::Stop(Report {
            outcome: e.outcome,
            cause: e.cause.clone(),
            backup: e.backup.clone(),
            stuck_at: None,
            safety: e.safety.clone(),
            safety_under: e.safety_under.clone(),
        }),
        _ => unreachable_phase(phase),
    }
}

/// The phase after the current one's effect completed with `result`.
fn advance(plan: &Plan, phase: Phase, result: Result<Output, Failure>) -> Phase {
    use Phase as P;
    match branch(&phase) {
        Branch::Upgrade => return upgrade::advance(plan, phase, result),
        Branch::Rollback => return rollback::advance(plan, phase, result),
        Branch::Restore => return restore::advance(plan, phase, result),
        Branch::Backup => return backup::advance(phase, result),
        Branch::Shared => {}
    }
    match (phase, result) {
        // Preflight: decide the shape of the run from what was observed.
        (P::Preflight, Ok(Output::Observed(seen))) => after_preflight(plan, seen),
        (P::Preflight, Err(e)) => P::Done(end(Outcome::Aborted, Some(e), None)),
        (P::Preflight, Ok(other)) => {
            let e = unexpected(&other, &P::Preflight);
            advance(plan, P::Preflight, Err(e))
        }

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

        // Releasing the backend lock is housekeeping too.
        (P::Unlock(ending), _) => P::Done(ending),

        (phase, _) => phase,
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

#[cfg(test)]
mod tests;
