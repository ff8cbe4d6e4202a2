//! What the engine reads back from the journal: the run holding the lock, the upgrade a
//! rollback undoes, the backups retention must keep.

use super::Engine;
use crate::journal::{Entry, RunHeader, RunStatus};
use crate::machine::{KeptBackup, Outcome, Plan};
use crate::{Error, ErrorKind, Output, Result};

impl Engine {
    /// The run that holds the target's lock (running, interrupted or failed), if any.
    pub async fn open_run(&self) -> Result<Option<RunHeader>> {
        let Some(lock) = self.journal.lock(&self.settings.target).await? else {
            return Ok(None);
        };
        Ok(self
            .journal
            .run(&lock.holder.run)
            .await?
            .map(|record| record.header))
    }

    /// The plan that rolls back the newest successful upgrade of the target, or the one
    /// that took `backup`: its snapshot and its backup, from the journal.
    pub async fn rollback_plan(&self, backup: Option<&crate::BackupId>) -> Result<Plan> {
        let target = &self.settings.target;
        // Runs come newest first: a rolled-back rollback plan marks its upgrade as undone.
        let mut undone: Vec<crate::Snapshot> = Vec::new();
        for header in self.journal.runs(target, 1000).await? {
            if let Plan::Rollback { snapshot, .. } = &header.plan
                && header.status == RunStatus::Stopped(Outcome::RolledBack)
            {
                undone.push(snapshot.clone());
                continue;
            }
            if header.kind() != crate::RunKind::Upgrade
                || header.status != RunStatus::Stopped(Outcome::Upgraded)
            {
                continue;
            }
            let Some(record) = self.journal.run(&header.id).await? else {
                continue;
            };
            let mut snapshot = None;
            let mut taken = None;
            for r in &record.records {
                match &r.entry {
                    Entry::Finished {
                        output: Output::Snapshot(s),
                        ..
                    } => snapshot = Some(s.clone()),
                    Entry::Finished {
                        output: Output::Backup(b),
                        ..
                    } => taken = Some(b.clone()),
                    _ => {}
                }
            }
            if backup.is_some_and(|want| taken.as_ref().map(|b| &b.id) != Some(want)) {
                continue;
            }
            if let Some(snapshot) = snapshot {
                if undone.contains(&snapshot) {
                    // That upgrade was rolled back already; older ones are not "the last".
                    break;
                }
                // The data it replaces served since that upgrade: keep a copy.
                return Ok(Plan::Rollback {
                    snapshot,
                    safety: taken.is_some(),
                    backup: taken,
                });
            }
        }
        Err(Error::new(
            ErrorKind::NotFound,
            match backup {
                Some(id) => format!(
                    "no successful upgrade of {target} in the journal took backup {id}; `cutover restore {id}` restores the data alone"
                ),
                None => format!(
                    "the journal records no successful upgrade of {target} to roll back (`cutover history` lists runs)"
                ),
            },
        ))
    }

    /// The backups retention must keep whatever their age, each with why: those that runs
    /// of the target which have not ended (running, interrupted or failed) name in their
    /// plan or took — what `resume` may still need —, the backup `cutover rollback` would
    /// restore, and the safety backup of the newest restore or rollback, which its advice
    /// names.
    pub(super) async fn referenced_backups(&self) -> Result<Vec<KeptBackup>> {
        let mut kept: Vec<KeptBackup> = Vec::new();
        let mut keep = |id: &crate::BackupId, why: String| {
            if !kept.iter().any(|k| &k.id == id) {
                kept.push(KeptBackup {
                    id: id.clone(),
                    why,
                });
            }
        };
        if let Ok(Plan::Rollback {
            backup: Some(b), ..
        }) = self.rollback_plan(None).await
        {
            keep(&b.id, "`cutover rollback` restores it".into());
        }
        let mut newest_safety = true;
        for header in self.journal.runs(&self.settings.target, u32::MAX).await? {
            let ended = matches!(header.status, RunStatus::Stopped(o) if o.is_terminal());
            let undone = !ended;
            if undone {
                match &header.plan {
                    Plan::Rollback {
                        backup: Some(b), ..
                    } => keep(&b.id, format!("run {} needs it", header.id)),
                    Plan::Restore { backup, .. } | Plan::Verify { backup, .. } => {
                        keep(backup, format!("run {} needs it", header.id))
                    }
                    _ => {}
                }
            }
            let safety_run = matches!(header.plan, Plan::Restore { .. } | Plan::Rollback { .. });
            let look = undone || (safety_run && newest_safety);
            if !look {
                continue;
            }
            let Some(record) = self.journal.run(&header.id).await? else {
                continue;
            };
            for r in &record.records {
                if let Entry::Finished {
                    step,
                    output: Output::Backup(b),
                    ..
                } = &r.entry
                {
                    if undone {
                        keep(
                            &b.id,
                            format!("run {} took it and has not ended", header.id),
                        );
                    } else if *step == crate::Step::SafetyBackup {
                        keep(
                            &b.id,
                            format!(
                                "the safety backup of run {}, the newest restore or rollback",
                                header.id
                            ),
                        );
                    }
                }
            }
            if safety_run && ended {
                newest_safety = false;
            }
        }
        Ok(kept)
    }
}
