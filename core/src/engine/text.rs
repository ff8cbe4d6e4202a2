//! What the operator reads: each step's description and the summary of a finished run.

use crate::machine::{Action, Effect, Hook, Outcome, Plan, Report, Run, Step};

/// A human description of what a step does.
pub fn about(effect: &Effect) -> String {
    match (effect.step, &effect.action) {
        (Step::SafetyBackup, Action::Backup { .. }) => {
            return "back up the data about to be replaced (the safety backup), then verify it"
                .into();
        }
        (Step::PutBack, Action::RestoreData(id)) => {
            return format!("put the data back from safety backup {id}");
        }
        (Step::StartLeader, Action::Scale(_)) => {
            return "start one instance of the new image alone: it runs the migrations".into();
        }
        (Step::ScaleOut, Action::Scale(n)) => {
            return format!("start the other instances: {n} in all");
        }
        (Step::RestartOld, Action::RestoreDefinition(s)) => {
            return format!(
                "start the instances that were stopped again, as they were ({} × {})",
                s.image, s.replicas
            );
        }
        _ => {}
    }
    match &effect.action {
        Action::Preflight => "check that the run can proceed; change nothing".into(),
        Action::Lock => "take the backend-side lock".into(),
        Action::Unlock => "release the backend-side lock".into(),
        Action::Pull(image) => format!("pull {image} before any downtime"),
        Action::Snapshot => "record the definition and instances for rollback".into(),
        Action::Backup { image, .. } => {
            format!("back up the database (and storage) of {image}, then verify it")
        }
        Action::Scale(0) => "stop every instance".into(),
        Action::Scale(n) => format!("scale to {n} instance(s)"),
        Action::SetImage(image) => format!("point the definition at {image}; nothing restarts"),
        Action::AwaitReady { image, replicas } => {
            format!("wait until {replicas} instance(s) of {image} are ready and healthy")
        }
        Action::RestoreData(id) => format!("restore the data from backup {id}"),
        Action::RestoreDefinition(s) => {
            format!(
                "restore the definition and instances ({} × {})",
                s.image, s.replicas
            )
        }
        Action::Release(_) => "drop the containers kept for rollback".into(),
        Action::Prune { keep: None, .. } => "delete backups beyond the retention count".into(),
        Action::Prune {
            keep: Some(keep), ..
        } => format!("delete backups beyond the newest {keep}"),
        Action::Verify {
            backup,
            restore_test: false,
        } => format!("check every part of backup {backup} against its manifest"),
        Action::Verify { backup, .. } => format!(
            "check backup {backup}, restore it into a scratch database and compare fingerprints"
        ),
        Action::Hook(call) => match call.hook {
            Hook::BeforeStop => {
                "run the before_stop hook; if it fails, the upgrade aborts with nothing changed"
                    .into()
            }
            Hook::AfterLeader => {
                "run the after_leader hook (the new leader is healthy); a failure is a warning"
                    .into()
            }
            Hook::OnRollback => {
                "run the on_rollback hook (the upgrade was rolled back); a failure is a warning"
                    .into()
            }
            Hook::AfterRun => format!(
                "run the after_run hook{}; a failure is a warning",
                call.outcome
                    .map(|o| format!(" (outcome {})", o.as_str()))
                    .unwrap_or_default()
            ),
        },
    }
}

/// The operator-facing summary of a report and the command to run next.
pub fn describe(run: &Run, report: &Report, id: &str) -> (String, Option<String>) {
    let (message, next) = describe_outcome(run, report, id);
    (
        message + &evidence_note(report, id) + &safety_note(run, report),
        next,
    )
}

/// Where the last lines of the instances whose failure sent the run back are kept.
fn evidence_note(report: &Report, id: &str) -> String {
    let Some(cause) = &report.cause else {
        return String::new();
    };
    let kept: Vec<String> = cause
        .evidence
        .iter()
        .map(|e| match &e.file {
            Some(file) => format!("{} in {file}", e.instance),
            None => format!(
                "{} in the journal (`cutover history --run {id}`)",
                e.instance
            ),
        })
        .collect();
    if kept.is_empty() {
        return String::new();
    }
    format!(
        ". The last lines the new release's instances printed are kept: {}",
        kept.join("; ")
    )
}

/// Where the data a restore or manual rollback replaced is kept, when it took a safety
/// backup, and the commands that bring it back in the state the run left: after a
/// rollback another image runs, and the replaced data needs its own image first.
pub(super) fn safety_note(run: &Run, report: &Report) -> String {
    let Some(safety) = &report.safety else {
        return String::new();
    };
    let id = &safety.id;
    let runs_now = match &run.plan {
        Plan::Rollback { snapshot, .. } => Some(&snapshot.image),
        _ => None,
    };
    let needs = report
        .safety_under
        .as_ref()
        .zip(runs_now)
        .filter(|(under, now)| under.tag() != now.tag())
        .map(|(under, _)| under.tag().unwrap_or("latest").to_string());
    if let (Some(tag), Outcome::RolledBack) = (&needs, report.outcome) {
        return format!(
            ". The data it replaced is kept in safety backup {id}, taken under {tag}: `cutover upgrade --to {tag}`, then `cutover restore {id}`, put it back"
        );
    }
    let untouched = report.cause.as_ref().is_some_and(|c| c.nothing_changed);
    match report.outcome {
        Outcome::Aborted if untouched => format!(
            ". The restore changed no data; safety backup {id}, taken before it began, is kept"
        ),
        Outcome::Aborted => format!(
            ". The data was put back from safety backup {id}, taken before the restore began, which is kept"
        ),
        Outcome::Failed => format!(". The data as it was before this run is in safety backup {id}"),
        _ => format!(
            ". The data it replaced is kept in safety backup {id}: `cutover restore {id}` puts it back"
        ),
    }
}

fn describe_outcome(run: &Run, report: &Report, id: &str) -> (String, Option<String>) {
    let cause = report
        .cause
        .as_ref()
        .map_or(String::new(), |c| format!(": {c}"));
    let backup = report
        .backup
        .as_ref()
        .map_or(String::new(), |b| format!(" (backup {})", b.id));
    match (report.outcome, &run.plan) {
        (Outcome::Upgraded, Plan::Upgrade { to, .. }) => {
            (format!("upgraded to {to}{backup}"), None)
        }
        (Outcome::RolledBack, Plan::Upgrade { to, backup: crate::BackupMode::Skip, .. }) => (
            format!(
                "the upgrade to {to} failed{cause}. The previous image was restored, but NOT the data: the backup was skipped, so the database may hold the new version's migrations"
            ),
            None,
        ),
        (Outcome::RolledBack, Plan::Upgrade { to, .. }) => (
            format!(
                "the upgrade to {to} failed{cause}. It was rolled back: the previous image runs on the data as it was before the upgrade{backup}"
            ),
            None,
        ),
        (Outcome::RolledBack, Plan::Rollback { backup: None, .. }) => (
            "rolled back to the image before the upgrade; the data was NOT restored (that upgrade skipped its backup)".into(),
            None,
        ),
        (Outcome::RolledBack, _) => (
            format!("rolled back to the image and data before the upgrade{backup}"),
            None,
        ),
        (Outcome::Aborted, _) => (
            format!("stopped before changing anything{cause}; the deployment runs as before"),
            None,
        ),
        (Outcome::BackedUp, _) => (format!("backup taken{backup}"), None),
        (Outcome::Restored, _) => ("data restored; the application runs again".into(), None),
        (
            Outcome::Verified,
            Plan::Verify {
                restore_test: true,
                ..
            },
        ) => (
            format!("every part matches its checksum and a restore into a scratch database gave back the same data{backup}"),
            None,
        ),
        (Outcome::Verified, _) => (format!("every part matches its checksum{backup}"), None),
        (Outcome::Pruned, Plan::Prune { keep }) => (
            format!("the newest {keep} backup(s) are kept; the prune step lists what was deleted"),
            None,
        ),
        (Outcome::Failed, _) => {
            let step = report
                .stuck_at
                .map_or("a step".to_string(), |s| s.to_string());
            let state = if let Some(b) = run.data_restored_from() {
                format!(
                    "The data was restored from backup {}; the instances are half restored",
                    b.id
                )
            } else if run.has_changed_deployment() {
                "The deployment may be stopped or half restored".to_string()
            } else {
                "The deployment was not changed".to_string()
            };
            (
                format!(
                    "{step} failed{cause}. {state}; the lock stays held so nothing else changes it. Fix the cause, then resume: it retries {step}"
                ),
                Some(format!("cutover resume {id}")),
            )
        }
        (outcome, _) => (format!("run ended: {outcome}{cause}"), None),
    }
}
