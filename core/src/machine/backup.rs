//! The runs that change no deployment, after their lock: a backup run's online backup, a
//! verify run's check and a prune run's deletion. A failure aborts.

use super::{
    Action, Failure, Next, Outcome, Output, Phase, Step, end, perform, unexpected,
    unreachable_phase,
};

/// The effect of a backup, verify or prune phase.
pub(super) fn next(phase: &Phase) -> Next {
    use Phase as P;
    match phase {
        P::TakeBackup(base) => perform(
            Step::Backup,
            Action::Backup {
                image: base.running(),
                snapshot: None,
            },
        ),
        P::CheckBackup(id, restore_test) => perform(
            Step::Verify,
            Action::Verify {
                backup: id.clone(),
                restore_test: *restore_test,
            },
        ),
        P::PruneBackups(keep) => perform(
            Step::Prune,
            Action::Prune {
                keep: Some(*keep),
                protect: None,
            },
        ),
        _ => unreachable_phase(phase),
    }
}

/// The phase after a backup, verify or prune phase's effect completed with `result`.
pub(super) fn advance(phase: Phase, result: Result<Output, Failure>) -> Phase {
    use Phase as P;
    match (phase, result) {
        (P::TakeBackup(_), Ok(Output::Backup(b))) => {
            P::Unlock(end(Outcome::BackedUp, None, Some(b)))
        }
        (P::CheckBackup(..), Ok(Output::Backup(b))) => {
            P::Unlock(end(Outcome::Verified, None, Some(b)))
        }
        (P::PruneBackups(_), Ok(Output::Pruned { .. })) => {
            P::Unlock(end(Outcome::Pruned, None, None))
        }
        (P::TakeBackup(_) | P::CheckBackup(..) | P::PruneBackups(_), Err(e)) => {
            P::Unlock(end(Outcome::Aborted, Some(e), None))
        }
        // A result that does not fit the step takes the failure's branch.
        (phase @ (P::TakeBackup(_) | P::CheckBackup(..) | P::PruneBackups(_)), Ok(other)) => {
            let e = unexpected(&other, &phase);
            advance(phase, Err(e))
        }
        // Not a phase of these runs: the dispatch in `super::advance` never sends one.
        (phase, _) => phase,
    }
}
