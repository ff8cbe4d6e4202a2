//! The upgrade's own phases: pull and snapshot, the backup around the stop, the new
//! image's start, the commit housekeeping, and the restart of the old instances when it
//! aborts after its stop (a restore's abort restarts them the same way). A failure from
//! `set_image` on hands over to [`super::rollback`].

use super::{
    Action, Armed, BackupMode, Base, Closing, Ending, ErrorKind, Failure, Hook, HookCall, Next,
    Outcome, Output, Phase, Plan, Prepared, Protection, Step, end, failed, failure, perform,
    unexpected, unreachable_phase,
};
use crate::driver::{Pulled, same_image};
use crate::image::{ImageRef, Version};

/// The effect of an upgrade phase.
pub(super) fn next(plan: &Plan, phase: &Phase) -> Next {
    use Phase as P;
    match phase {
        P::Pull(_) => match plan {
            Plan::Upgrade { to, .. } => perform(Step::Pull, Action::Pull(to.clone())),
            _ => unreachable_phase(phase),
        },
        P::Snapshot(..) => perform(Step::Snapshot, Action::Snapshot),
        P::BackupOnline(p) | P::BackupOffline(p) => perform(
            Step::Backup,
            Action::Backup {
                image: p.base.running(),
                snapshot: Some(p.snapshot.clone()),
            },
        ),
        P::StopThenBackup(_) | P::StopAfterBackup(_) => perform(Step::Stop, Action::Scale(0)),
        P::HookBeforeStop(p) => hook(
            plan,
            phase,
            Hook::BeforeStop,
            &p.base,
            p.digest.as_deref(),
            None,
            None,
        ),
        P::HookBeforeStopArmed(a) => hook(
            plan,
            phase,
            Hook::BeforeStop,
            &a.prep.base,
            a.prep.digest.as_deref(),
            a.protection.backup().map(|b| &b.id),
            None,
        ),
        P::HookAfterLeader(a) => hook(
            plan,
            phase,
            Hook::AfterLeader,
            &a.prep.base,
            a.prep.digest.as_deref(),
            a.protection.backup().map(|b| &b.id),
            None,
        ),
        P::HookOnRollback(c) | P::HookAfterRun(c) => {
            let which = match phase {
                P::HookOnRollback(_) => Hook::OnRollback,
                _ => Hook::AfterRun,
            };
            hook(
                plan,
                phase,
                which,
                &c.base,
                c.digest.as_deref(),
                c.ending.backup.as_ref().map(|b| &b.id),
                Some(c.ending.outcome),
            )
        }
        P::SetImage(a) => perform(Step::SetImage, Action::SetImage(a.prep.target())),
        P::StartLeader(_) => perform(Step::StartLeader, Action::Scale(1)),
        P::AwaitLeader(a) => perform(
            Step::AwaitLeader,
            Action::AwaitReady {
                image: a.prep.target(),
                replicas: 1,
            },
        ),
        P::ScaleOut(a) => perform(Step::ScaleOut, Action::Scale(a.prep.base.replicas)),
        P::AwaitAll(a) => perform(
            Step::AwaitAll,
            Action::AwaitReady {
                image: a.prep.target(),
                replicas: a.prep.base.replicas,
            },
        ),
        P::Release(a) => perform(Step::Release, Action::Release(a.prep.snapshot.clone())),
        P::Prune(a) => perform(
            Step::Prune,
            Action::Prune {
                keep: None,
                protect: a.protection.backup().map(|b| b.id.clone()),
            },
        ),
        // The snapshot, not a scale: the stopped instances come back themselves (a scale
        // would create new ones beside those kept aside).
        P::RestartOld(p, _) => perform(
            Step::RestartOld,
            Action::RestoreDefinition(p.snapshot.clone()),
        ),
        _ => unreachable_phase(phase),
    }
}

/// The phase after an upgrade phase's effect completed with `result`.
pub(super) fn advance(plan: &Plan, phase: Phase, result: Result<Output, Failure>) -> Phase {
    use Phase as P;
    match (phase, result) {
        (P::Pull(base), Ok(Output::Pulled(pulled))) => match unpinnable(plan, &pulled) {
            Some(e) => close(plan, base, None, end(Outcome::Aborted, Some(e), None)),
            None => P::Snapshot(base, pulled),
        },
        (P::Pull(base), Err(e)) => close(plan, base, None, end(Outcome::Aborted, Some(e), None)),

        (P::Snapshot(base, pulled), Ok(Output::Snapshot(snapshot))) => {
            let Plan::Upgrade {
                to, backup, hooks, ..
            } = plan
            else {
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
                BackupMode::Offline if hooks.before_stop => P::HookBeforeStop(prep),
                BackupMode::Offline => P::StopThenBackup(prep),
                BackupMode::Online => P::BackupOnline(prep),
                BackupMode::Skip => before_stop(
                    plan,
                    Armed {
                        prep,
                        protection: Protection::Skipped,
                    },
                ),
            }
        }
        (P::Snapshot(base, pulled), Err(e)) => close(
            plan,
            base,
            pulled.digest,
            end(Outcome::Aborted, Some(e), None),
        ),

        (P::BackupOnline(prep), Ok(Output::Backup(b))) => before_stop(
            plan,
            Armed {
                prep,
                protection: Protection::Backup(b),
            },
        ),
        (P::BackupOnline(prep), Err(e)) => {
            close_prepared(plan, prep, end(Outcome::Aborted, Some(e), None))
        }

        // Nothing is stopped yet: a failed `before_stop` aborts with nothing changed.
        (P::HookBeforeStop(prep), Ok(_)) => P::StopThenBackup(prep),
        (P::HookBeforeStop(prep), Err(e)) => {
            close_prepared(plan, prep, end(Outcome::Aborted, Some(e), None))
        }
        (P::HookBeforeStopArmed(a), Ok(_)) => P::StopAfterBackup(a),
        (P::HookBeforeStopArmed(a), Err(e)) => {
            let backup = a.protection.backup().cloned();
            close_prepared(plan, a.prep, end(Outcome::Aborted, Some(e), backup))
        }

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
        (P::RestartOld(prep, ending), Ok(_)) => close_prepared(plan, prep, ending),
        (P::RestartOld(prep, ending), Err(e)) => {
            failed(P::RestartOld(prep, ending), Step::RestartOld, e)
        }

        // From set_image on, a failure rolls back.
        (P::SetImage(a), Ok(_)) => P::StartLeader(a),
        (P::StartLeader(a), Ok(_)) => P::AwaitLeader(a),
        (P::AwaitLeader(a), Ok(_)) => match plan {
            Plan::Upgrade { hooks, .. } if hooks.after_leader => P::HookAfterLeader(a),
            _ => P::ScaleOut(a),
        },
        // Best effort, but still on the way forward: a cancel rolls back.
        (P::HookAfterLeader(a), Err(e)) if e.kind == ErrorKind::Cancelled => {
            P::RollbackStop(a, Some(e))
        }
        (P::HookAfterLeader(a), _) => P::ScaleOut(a),
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
            close_prepared(plan, a.prep, end(Outcome::Upgraded, None, backup))
        }

        // The end hooks are best effort: the outcome stands.
        (P::HookOnRollback(c), _) => match plan {
            Plan::Upgrade { hooks, .. } if hooks.after_run => P::HookAfterRun(c),
            _ => P::Unlock(c.ending),
        },
        (P::HookAfterRun(c), _) => P::Unlock(c.ending),

        // A result that does not fit the step takes the failure's branch.
        (
            phase @ (P::Pull(_) | P::Snapshot(..) | P::BackupOnline(_) | P::BackupOffline(_)),
            Ok(other),
        ) => {
            let e = unexpected(&other, &phase);
            advance(plan, phase, Err(e))
        }
        // Not an upgrade phase: the dispatch in `super::advance` never sends one.
        (phase, _) => phase,
    }
}

/// The upgrade's stop after its backup (online) or without one (skip), behind the
/// `before_stop` hook if there is one.
fn before_stop(plan: &Plan, armed: Armed) -> Phase {
    match plan {
        Plan::Upgrade { hooks, .. } if hooks.before_stop => Phase::HookBeforeStopArmed(armed),
        _ => Phase::StopAfterBackup(armed),
    }
}

/// The end of a run that took its lock: an upgrade's end hooks (`on_rollback` when it
/// rolled back, then `after_run`), then the unlock. Other runs go straight to the unlock.
pub(super) fn close(plan: &Plan, base: Base, digest: Option<String>, ending: Ending) -> Phase {
    let Plan::Upgrade { hooks, .. } = plan else {
        return Phase::Unlock(ending);
    };
    let closing = Closing {
        base,
        digest,
        ending,
    };
    if hooks.on_rollback && closing.ending.outcome == Outcome::RolledBack {
        Phase::HookOnRollback(closing)
    } else if hooks.after_run {
        Phase::HookAfterRun(closing)
    } else {
        Phase::Unlock(closing.ending)
    }
}

/// [`close`] with what `prep` knows.
pub(super) fn close_prepared(plan: &Plan, prep: Prepared, ending: Ending) -> Phase {
    close(plan, prep.base, prep.digest, ending)
}

/// The effect of a hook point of `plan` (an upgrade).
fn hook(
    plan: &Plan,
    phase: &Phase,
    hook: Hook,
    base: &Base,
    digest: Option<&str>,
    backup: Option<&crate::backup::BackupId>,
    outcome: Option<Outcome>,
) -> Next {
    let Plan::Upgrade { to, .. } = plan else {
        return unreachable_phase(phase);
    };
    let step = match hook {
        Hook::BeforeStop => Step::HookBeforeStop,
        Hook::AfterLeader => Step::HookAfterLeader,
        Hook::OnRollback => Step::HookOnRollback,
        Hook::AfterRun => Step::HookAfterRun,
    };
    perform(
        step,
        Action::Hook(HookCall {
            hook,
            from: base.running(),
            to: to.clone(),
            to_digest: digest.map(str::to_owned),
            backup: backup.cloned(),
            outcome,
        }),
    )
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
