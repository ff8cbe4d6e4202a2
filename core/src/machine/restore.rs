//! A restore run after its lock: snapshot, stop, the safety backup, the data, the
//! definition, the wait, the release. From the stop on every step runs to completion. A
//! restore of the data refused or failed before it changed anything
//! ([`Failure::nothing_changed`]) restarts the old instances (`restart_old`, shared with the
//! upgrade's abort) and ends aborted: there is nothing to put back. One that failed after
//! it changed the data puts the safety backup back first, when there is one.

use super::{
    Action, Failure, Next, Outcome, Output, Phase, Plan, Prepared, Step, end, failed, perform,
    safety_wanted, unexpected, unreachable_phase, with_safety,
};

/// The effect of a restore phase.
pub(super) fn next(phase: &Phase) -> Next {
    use Phase as P;
    match phase {
        P::RestoreSnapshot(..) => perform(Step::Snapshot, Action::Snapshot),
        P::RestoreStop(..) => perform(Step::Stop, Action::Scale(0)),
        P::RestoreSafety(p, _) => perform(
            Step::SafetyBackup,
            Action::Backup {
                image: p.snapshot.image.clone(),
                snapshot: Some(p.snapshot.clone()),
            },
        ),
        P::RestoreBackup(_, id) => perform(Step::RestoreData, Action::RestoreData(id.clone())),
        P::PutBack(p, _) => match &p.safety {
            Some(b) => perform(Step::PutBack, Action::RestoreData(b.id.clone())),
            None => unreachable_phase(phase),
        },
        P::RestoreBringBack(p) => perform(
            Step::RestoreDefinition,
            Action::RestoreDefinition(p.snapshot.clone()),
        ),
        P::RestoreAwait(p) => perform(
            Step::AwaitRestored,
            Action::AwaitReady {
                image: p.snapshot.image.clone(),
                replicas: p.snapshot.replicas,
            },
        ),
        P::RestoreRelease(p) => perform(Step::Release, Action::Release(p.snapshot.clone())),
        _ => unreachable_phase(phase),
    }
}

/// The phase after a restore phase's effect completed with `result`.
pub(super) fn advance(plan: &Plan, phase: Phase, result: Result<Output, Failure>) -> Phase {
    use Phase as P;
    match (phase, result) {
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
        (P::RestoreBackup(p, _), Err(e)) if e.nothing_changed => {
            let ending = with_safety(end(Outcome::Aborted, Some(e), None), &p);
            P::RestartOld(p, ending)
        }
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

        // A result that does not fit the step takes the failure's branch.
        (phase @ (P::RestoreSnapshot(..) | P::RestoreSafety(..)), Ok(other)) => {
            let e = unexpected(&other, &phase);
            advance(plan, phase, Err(e))
        }
        // Not a restore phase: the dispatch in `super::advance` never sends one.
        (phase, _) => phase,
    }
}
