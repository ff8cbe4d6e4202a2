//! What the engine reads back from the journal: the run holding the lock, the upgrade a
//! rollback undoes, the backups retention must keep.

use super::Engine;
use crate::journal::{Entry, RunHeader, RunStatus};
use crate::machine::{Outcome, Plan};
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

    /// The backups that runs of the target which have not ended (running, interrupted or
    /// failed) name in their plan or took: what `resume` or a rollback may still need.
    pub(super) async fn referenced_backups(&self) -> Result<Vec<crate::BackupId>> {
        let mut ids = Vec::new();
        for header in self.journal.runs(&self.settings.target, u32::MAX).await? {
            if matches!(header.status, RunStatus::Stopped(o) if o.is_terminal()) {
                continue;
            }
            match &header.plan {
                Plan::Rollback {
                    backup: Some(b), ..
                } => ids.push(b.id.clone()),
                Plan::Restore { backup, .. } | Plan::Verify { backup, .. } => {
                    ids.push(backup.clone())
                }
                _ => {}
            }
            let Some(record) = self.journal.run(&header.id).await? else {
                continue;
            };
            for r in &record.records {
                if let Entry::Finished {
                    output: Output::Backup(b),
                    ..
                } = &r.entry
                {
                    ids.push(b.id.clone());
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}
