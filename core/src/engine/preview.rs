//! What an upgrade would do, without doing it: `cutover plan`'s content.
//!
//! [`Engine::preview`] observes the deployment, makes every check the upgrade's preflight
//! makes (the same [`Engine::checks`]), lists the steps the machine would take from what it
//! observed, marks the downtime window, estimates its length from the last upgrade's own
//! timings, and gathers the warnings an operator should read first.

use super::Engine;
use crate::check::Check;
use crate::driver::Observed;
use crate::machine::{BackupMode, Baseline, Effect, Plan, Run, RunKind, Step};
use crate::{Error, ErrorKind, Result};

/// The steps from the stop until the new release's leader is healthy: the application is
/// down in between.
pub const DOWNTIME: [Step; 5] = [
    Step::Stop,
    Step::Backup,
    Step::SetImage,
    Step::StartLeader,
    Step::AwaitLeader,
];

/// How a failed check is worded among the warnings.
pub const PREFLIGHT_STOP: &str = "the upgrade would stop in preflight";

/// An upgrade's preview.
#[derive(Debug)]
pub struct Preview {
    /// The deployment as observed.
    pub seen: Observed,
    /// Every preflight check with what it found.
    pub checks: Vec<Check>,
    /// The steps the run would take if each succeeded.
    pub steps: Vec<Effect>,
    /// The downtime window's length in the last successful upgrade, if one is journaled.
    pub downtime_estimate_ms: Option<u64>,
    /// What the operator should read before upgrading (failed checks first).
    pub warnings: Vec<String>,
}

impl Preview {
    /// Whether `step` is inside the downtime window.
    pub fn is_downtime(step: Step) -> bool {
        DOWNTIME.contains(&step)
    }
}

impl Engine {
    /// Previews `plan` (an upgrade): observes, checks, lists the steps. Changes nothing.
    ///
    /// # Errors
    /// The driver's, when the deployment cannot be observed (there are then no steps to
    /// show); the journal's.
    pub async fn preview(&self, plan: &Plan) -> Result<Preview> {
        let Plan::Upgrade { backup, .. } = plan else {
            return Err(Error::invalid("only an upgrade can be previewed"));
        };
        let (seen, checks) = self.checks(plan).await;
        let Some(seen) = seen else {
            // The driver's error says why.
            let failed = checks.into_iter().find_map(|c| c.result.err());
            return Err(failed.unwrap_or_else(|| {
                Error::new(ErrorKind::Other, "the deployment could not be observed")
            }));
        };
        let mut warnings: Vec<String> = checks
            .iter()
            .filter_map(|c| c.result.as_ref().err().map(|e| (c.name, e)))
            .map(|(name, e)| format!("{PREFLIGHT_STOP} ({name}): {}", e.report()))
            .collect();
        match backup {
            BackupMode::Online => warnings.push(
                "online backup: writes between the backup and the stop are lost if the upgrade rolls back".into(),
            ),
            BackupMode::Skip => warnings.push(
                "NO BACKUP: a rollback restores the image only; the old image may fail on the migrated schema".into(),
            ),
            BackupMode::Offline => {}
        }
        if let Some(open) = self.open_run().await? {
            warnings.push(format!(
                "run {} holds the lock ({}); the upgrade would be refused until it ends",
                open.id,
                open.kind().as_str()
            ));
        }
        let steps = Run::new(plan.clone()).preview(&Baseline::of(&seen));
        Ok(Preview {
            seen,
            checks,
            steps,
            downtime_estimate_ms: self.last_downtime().await?,
            warnings,
        })
    }

    /// The downtime window of the newest upgrade whose leader became healthy.
    async fn last_downtime(&self) -> Result<Option<u64>> {
        for header in self.runs(50).await? {
            if header.kind() != RunKind::Upgrade {
                continue;
            }
            let Some(record) = self.run(&header.id).await? else {
                continue;
            };
            let d = record.step_durations();
            if d.iter()
                .any(|(s, _, failed)| *s == Step::AwaitLeader && !failed)
            {
                return Ok(Some(
                    d.iter()
                        .filter(|(s, _, _)| DOWNTIME.contains(s))
                        .map(|(_, ms, _)| ms)
                        .sum(),
                ));
            }
        }
        Ok(None)
    }
}
