//! The read-only checks before a run changes anything ([`Engine::checks`], which
//! preflight and `cutover plan` share), and what an abort left behind.

use super::{Bounded, Engine};
use crate::backup::BackupId;
use crate::check::{self, Check};
use crate::driver::Observed;
use crate::event::human_bytes;
use crate::machine::{Baseline, Output, Plan, Report, refuse_upgrade};
use crate::{Error, ErrorKind, Result};

impl Engine {
    /// Read-only checks before a run changes anything: the first failed one of
    /// [`Engine::checks`].
    pub(super) async fn preflight(&self, plan: &Plan) -> Result<Output> {
        let (seen, checks) = self.checks(plan).await;
        check::first_failure(checks)?;
        match seen {
            Some(seen) => Ok(Output::Observed(Baseline::of(&seen))),
            // `checks` lists a failed driver check whenever it has no observation.
            None => Err(Error::new(
                ErrorKind::Other,
                "the deployment could not be observed",
            )),
        }
    }

    /// Every check the preflight step of `plan` makes, in order, with what each found,
    /// and the deployment as observed (`None` when the driver could not observe it).
    /// Changes nothing; `cutover plan` shows these, and preflight fails with the first
    /// failed one.
    pub async fn checks(&self, plan: &Plan) -> (Option<Observed>, Vec<Check>) {
        let driver = self.driver.as_ref();
        let app = self.settings.target.as_str();
        let mut checks = vec![Check::of(
            "settings",
            self.settings
                .health
                .validate()
                .map(|()| "the health check is valid".into()),
        )];
        // Bounded here too: `plan` and `cutover check` call this outside a run's step.
        let observed = Bounded {
            what: "the driver's observe",
            limit: self.settings.call_timeout,
        }
        .run(driver.observe())
        .await;
        let seen = match observed {
            Ok(seen) => {
                checks.push(Check::passed(
                    "driver",
                    format!(
                        "{} answers: the definition runs {} with {} replicas",
                        driver.info().kind,
                        seen.image,
                        seen.replicas
                    ),
                ));
                Some(seen)
            }
            Err(e) => {
                checks.push(Check::failed("driver", e));
                None
            }
        };
        match plan {
            Plan::Upgrade {
                to,
                backup,
                replicas,
                allow_downgrade,
                hooks,
            } => {
                if let Some(seen) = &seen {
                    let replicas = replicas.unwrap_or(seen.replicas);
                    checks.push(
                        match refuse_upgrade(&seen.image, to, *allow_downgrade, replicas) {
                            Some(refusal) => {
                                Check::failed("upgrade", Error::new(refusal.kind, refusal.message))
                            }
                            None => Check::passed(
                                "upgrade",
                                format!("{} to {to}, {replicas} replicas", seen.image),
                            ),
                        },
                    );
                }
                if *backup != crate::BackupMode::Skip {
                    checks.extend(self.backups.checks(driver).await);
                }
                if !hooks.is_none() {
                    checks.push(Check::of(
                        "hooks",
                        super::hooks::check(&self.settings.hooks, *hooks),
                    ));
                }
            }
            Plan::Rollback {
                snapshot,
                backup,
                safety,
            } => {
                let kind = driver.info().kind;
                checks.push(if snapshot.driver != kind {
                    Check::failed(
                        "rollback",
                        Error::invalid(format!(
                            "the snapshot to roll back to was taken by the {} driver, not {kind}",
                            snapshot.driver
                        )),
                    )
                } else if seen.as_ref().is_some_and(|s| s.image == snapshot.image) {
                    Check::failed(
                        "rollback",
                        Error::invalid(format!(
                            "the deployment already runs {}; there is no upgrade to roll back",
                            snapshot.image
                        )),
                    )
                } else {
                    Check::passed(
                        "rollback",
                        format!("back to {}, {} replicas", snapshot.image, snapshot.replicas),
                    )
                });
                if let Some(b) = backup {
                    checks.extend(if *safety {
                        self.backups.checks(driver).await
                    } else {
                        self.backups.read_checks(driver).await
                    });
                    checks.push(self.verified(&b.id, app).await);
                }
            }
            Plan::Backup => checks.extend(self.backups.checks(driver).await),
            Plan::Verify { restore_test, .. } => {
                if *restore_test {
                    checks.extend(self.backups.read_checks(driver).await);
                }
            }
            Plan::Prune { keep } => {
                checks.push(if *keep == 0 {
                    Check::failed(
                        "keep",
                        Error::invalid(
                            "keeping 0 backups would delete every backup, including the one a rollback needs; keep at least 1",
                        ),
                    )
                } else {
                    Check::passed("keep", format!("the newest {keep}"))
                });
            }
            Plan::Restore { backup, safety } => {
                if let Some(seen) = &seen {
                    checks.push(Check::of("image", self.taken_under(backup, seen).await));
                }
                checks.extend(if *safety {
                    self.backups.checks(driver).await
                } else {
                    self.backups.read_checks(driver).await
                });
                checks.push(self.verified(backup, app).await);
            }
        }
        (seen, checks)
    }

    /// Whether backup `id` was taken under the image the deployment `seen` runs: its data
    /// belongs to that image's version, and any other would start on a schema it does not
    /// know (an older one crash-looping on a newer schema). Refused otherwise
    /// (`InvalidInput`: nothing is done), naming the commands that bring that image back
    /// with the data. A backup of another repository, or whose image the store does not
    /// record, is not compared.
    pub async fn taken_under(&self, id: &BackupId, seen: &Observed) -> Result<String> {
        let listed = self.backups.list().await?;
        let Some(summary) = listed.iter().find(|b| &b.id == id) else {
            return Ok("the backup is not listed (see the backup check)".into());
        };
        let running = Baseline::of(seen);
        let Ok(taken) = summary.image.parse::<crate::ImageRef>() else {
            return Ok(format!(
                "the backup records no image to compare ({})",
                summary.image
            ));
        };
        let same_digest = summary.digest.is_some() && summary.digest == running.digest;
        if taken.repository() != running.image.repository()
            || same_digest
            || taken.tag() == running.image.tag()
        {
            return Ok(format!(
                "taken under {}, which runs",
                running.image.without_digest()
            ));
        }
        let tag = taken.tag().unwrap_or("latest");
        let way = if self.rollback_plan(Some(id)).await.is_ok() {
            format!(
                "`cutover rollback --backup {id}` brings {taken} back with this data (it is the backup the upgrade from it took)"
            )
        } else if refuse_upgrade(&running.image, &taken, false, running.replicas.max(1)).is_none() {
            format!(
                "to bring {taken} back with this data, run `cutover upgrade --to {tag}`, then `cutover restore {id}`"
            )
        } else {
            format!(
                "cutover restores it only where {taken} runs, and cannot bring back an older image on this data"
            )
        };
        Err(Error::invalid(format!(
            "backup {id} was taken while {taken} ran, and the deployment runs {} now, which would start on that version's data; {way}; nothing was changed",
            running.image.without_digest()
        )))
    }

    /// [`Engine::taken_under`] against what the deployment runs now, for a command that
    /// refuses before it asks anything; a deployment that cannot be observed is left to
    /// the run's preflight.
    pub async fn restore_fits(&self, id: &BackupId) -> Result<()> {
        let observed = Bounded {
            what: "the driver's observe",
            limit: self.settings.call_timeout,
        }
        .run(self.driver.observe())
        .await;
        match observed {
            Ok(seen) => self.taken_under(id, &seen).await.map(|_| ()),
            Err(_) => Ok(()),
        }
    }

    /// The check that backup `id` of `app` is intact.
    async fn verified(&self, id: &BackupId, app: &str) -> Check {
        Check::of(
            "backup",
            self.backups
                .verify(id, app)
                .await
                .map(|b| format!("{id} is intact ({})", human_bytes(b.bytes))),
        )
    }

    /// After an abort, observes the deployment and compares it with what preflight saw:
    /// the operator is told it runs as before only when it does. `None` when preflight
    /// itself failed (nothing was observed, and nothing changed: preflight only reads).
    pub(super) async fn check_aborted(
        &self,
        id: &str,
        report: &Report,
    ) -> Result<Option<(String, Option<String>)>> {
        let Some(record) = self.journal.run(id).await? else {
            return Ok(None);
        };
        let Some(before) = record.baseline() else {
            return Ok(None);
        };
        let cause = report
            .cause
            .as_ref()
            .map_or(String::new(), |c| format!(": {c}"));
        let bounded = Bounded {
            what: "the driver's observe",
            limit: self.settings.call_timeout,
        };
        let status = Some("cutover status".to_string());
        let checked = match bounded.run(self.driver.observe()).await {
            Ok(now) => {
                let differences = crate::aftermath::differences(before, &now);
                if !differences.is_empty() {
                    (
                        format!(
                            "aborted{cause}, but the deployment is NOT as before: {}. cutover changes nothing more; check it with `cutover status` and put it right by hand",
                            differences.join("; ")
                        ),
                        status,
                    )
                } else if record.started_stop() {
                    (
                        format!(
                            "aborted{cause}; the instances it had stopped were started again and the deployment runs as before (observed)"
                        ),
                        None,
                    )
                } else {
                    (
                        format!(
                            "stopped before changing anything{cause}; the deployment runs as before (observed)"
                        ),
                        None,
                    )
                }
            }
            Err(e) => (
                format!(
                    "aborted{cause}; the deployment could not be observed afterwards ({}), so whether it runs as before is unknown",
                    e.report()
                ),
                status,
            ),
        };
        Ok(Some(checked))
    }
}
