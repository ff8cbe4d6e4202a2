//! Putting the deployment as it was before an upgrade back: an upgrade's automatic
//! rollback (from `rollback_stop`, after a failure from `set_image` on) and a manual
//! rollback run (from its pull of the snapshot's image). Every step after the pull runs to
//! completion; a failure stops the run as failed, to be retried — except where a manual
//! rollback has changed nothing since its stop (its safety backup failed, or the restore
//! was refused before it touched the data): then the release it stopped starts again on
//! its unchanged definition (`restart_old`, a `scale` to its replicas) and the run ends
//! aborted.

use super::{
    Action, Failure, Next, Outcome, Output, Phase, Plan, Protection, Step, end, failed, perform,
    safety_wanted, unexpected, unreachable_phase, with_safety,
};

/// The effect of a rollback phase.
pub(super) fn next(phase: &Phase) -> Next {
    use Phase as P;
    match phase {
        P::RollbackPull(a) => perform(Step::Pull, Action::Pull(a.prep.snapshot.image.clone())),
        P::RollbackStop(..) => perform(Step::RollbackStop, Action::Scale(0)),
        P::RollbackSafety(a, _) => perform(
            Step::SafetyBackup,
            Action::Backup {
                image: a.prep.base.from.clone(),
                snapshot: None,
            },
        ),
        P::RollbackRestart(a, _) => {
            perform(Step::RestartOld, Action::Scale(a.prep.base.old_replicas))
        }
        P::RestoreData(a, _) => match &a.protection {
            Protection::Backup(b) => perform(Step::RestoreData, Action::RestoreData(b.id.clone())),
            Protection::Skipped => unreachable_phase(phase),
        },
        P::RestoreDefinition(a, _) => perform(
            Step::RestoreDefinition,
            Action::RestoreDefinition(a.prep.snapshot.clone()),
        ),
        P::AwaitRestored(a, _) => perform(
            Step::AwaitRestored,
            Action::AwaitReady {
                image: a.prep.snapshot.image.clone(),
                replicas: a.prep.snapshot.replicas,
            },
        ),
        _ => unreachable_phase(phase),
    }
}

/// The phase after a rollback phase's effect completed with `result`.
pub(super) fn advance(plan: &Plan, phase: Phase, result: Result<Output, Failure>) -> Phase {
    use Phase as P;
    match (phase, result) {
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
        // Nothing was replaced yet: the stopped release starts again.
        (P::RollbackSafety(a, _), Err(e)) => {
            let ending = with_safety(end(Outcome::Aborted, Some(e), None), &a.prep);
            P::RollbackRestart(a, ending)
        }
        (P::RollbackRestart(a, ending), Ok(_)) => {
            super::upgrade::close_prepared(plan, a.prep, ending)
        }
        (P::RollbackRestart(a, ending), Err(e)) => {
            failed(P::RollbackRestart(a, ending), Step::RestartOld, e)
        }
        (P::RestoreData(a, cause), Ok(_)) => P::RestoreDefinition(a, cause),
        (P::RestoreDefinition(a, cause), Ok(_)) => P::AwaitRestored(a, cause),
        (P::AwaitRestored(a, cause), Ok(_)) => {
            let backup = a.protection.backup().cloned();
            let ending = with_safety(end(Outcome::RolledBack, cause, backup), &a.prep);
            super::upgrade::close_prepared(plan, a.prep, ending)
        }
        (P::RollbackStop(a, cause), Err(e)) => {
            failed(P::RollbackStop(a, cause), Step::RollbackStop, e)
        }
        // A manual rollback's restore that changed nothing: the stopped release runs on
        // its data again. (An upgrade's rollback has only a failed release to go back to.)
        (P::RestoreData(a, _), Err(e))
            if e.nothing_changed && matches!(plan, Plan::Rollback { .. }) =>
        {
            let ending = with_safety(end(Outcome::Aborted, Some(e), None), &a.prep);
            P::RollbackRestart(a, ending)
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

        // A result that does not fit the step takes the failure's branch.
        (phase @ P::RollbackSafety(..), Ok(other)) => {
            let e = unexpected(&other, &phase);
            advance(plan, phase, Err(e))
        }
        // Not a rollback phase: the dispatch in `super::advance` never sends one.
        (phase, _) => phase,
    }
}
