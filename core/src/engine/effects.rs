//! Performing one effect of the machine against the driver, the backup engine and the
//! journal, each driver call bounded by `call_timeout`.

use std::time::Duration;

use super::Engine;
use crate::backup::BackupScope;
use crate::driver::Holder;
use crate::event::{EventSink, human_bytes, human_rate};
use crate::health::await_ready;
use crate::machine::{Action, Run};
use crate::{Error, ErrorKind, Output, Result};

impl Engine {
    pub(super) async fn perform(
        &self,
        run: &Run,
        action: &Action,
        holder: &Holder,
        events: &EventSink,
    ) -> Result<Output> {
        let driver = self.driver.as_ref();
        let caps = driver.capabilities();
        let app = self.settings.target.as_str();
        let bounded = |what: &'static str| Bounded {
            what,
            limit: self.settings.call_timeout,
        };
        match action {
            Action::Preflight => {
                bounded("preflight's checks")
                    .run(self.preflight(&run.plan))
                    .await
            }
            Action::Lock if caps.lock => bounded("the driver's lock")
                .run(driver.lock(holder))
                .await
                .map(|()| Output::Done),
            Action::Unlock if caps.lock => bounded("the driver's unlock")
                .run(driver.unlock(holder))
                .await
                .map(|()| Output::Done),
            Action::Lock | Action::Unlock => Ok(Output::Done),
            Action::Pull(image) => driver.pull(image, events).await.map(Output::Pulled),
            Action::Snapshot => bounded("the driver's snapshot")
                .run(driver.snapshot())
                .await
                .map(Output::Snapshot),
            Action::Backup { image, snapshot } => {
                let scope = BackupScope {
                    app,
                    image,
                    snapshot: snapshot.as_ref(),
                    driver,
                };
                self.backups.backup(scope, events).await.map(Output::Backup)
            }
            Action::Scale(n) => bounded("the driver's scale")
                .run(driver.scale(*n))
                .await
                .map(|()| Output::Done),
            Action::SetImage(image) => bounded("the driver's set_image")
                .run(driver.set_image(image))
                .await
                .map(|()| Output::Done),
            Action::AwaitReady { image, replicas } => {
                let h = &self.settings.health;
                await_ready(driver, image, *replicas, h, h.timeout, events)
                    .await
                    .map(|()| Output::Done)
            }
            Action::RestoreData(id) => self
                .backups
                .restore(id, app, &holder.run, driver, events)
                .await
                .map(|()| Output::Done),
            Action::RestoreDefinition(snapshot) => bounded("the driver's restore")
                .run(driver.restore(snapshot))
                .await
                .map(|()| Output::Done),
            Action::Release(snapshot) => bounded("the driver's release")
                .run(driver.release(snapshot))
                .await
                .map(|()| Output::Done),
            Action::Verify {
                backup,
                restore_test,
            } => {
                let checked = self.backups.verify(backup, app).await?;
                if *restore_test {
                    self.backups
                        .restore_test(backup, app, driver, events)
                        .await?;
                }
                Ok(Output::Backup(checked))
            }
            // The lock keeps other runs of the target out, but a run whose lock was
            // removed with `unlock --force` may still be resumed: its backups stay.
            Action::Prune { keep, protect } => {
                let needed = self.referenced_backups().await?;
                let mut protected: Vec<_> = needed.iter().map(|k| k.id.clone()).collect();
                protected.extend(protect.iter().cloned());
                let keep = keep.unwrap_or(self.settings.keep_backups);
                // Those retention would have deleted but something still needs.
                let beyond: Vec<_> = self
                    .backups
                    .list()
                    .await?
                    .into_iter()
                    .filter(|b| b.app == app)
                    .skip(keep)
                    .map(|b| b.id)
                    .collect();
                let kept = needed
                    .into_iter()
                    .filter(|k| beyond.contains(&k.id))
                    .collect();
                let deleted = self.backups.prune(app, keep, &protected).await?;
                let swept = self.backups.sweep(&protected).await?;
                Ok(Output::Pruned {
                    deleted,
                    swept,
                    kept,
                })
            }
            Action::Hook(call) => {
                super::hooks::run_hook(&self.settings.hooks, call, &holder.run, app).await
            }
        }
    }
}

/// A limit on one driver call ([`Settings::call_timeout`]).
pub(crate) struct Bounded {
    pub(crate) what: &'static str,
    pub(crate) limit: Duration,
}

impl Bounded {
    pub(crate) async fn run<T>(self, call: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.limit, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{} did not return within {} and was abandoned",
                    self.what,
                    humantime::format_duration(self.limit)
                ),
            )
            .retryable(true)),
        }
    }
}

/// The detail of a finished step: its output's, with the bytes it moved and the average
/// rate for steps that move data (backup, restore, verify).
pub(super) fn step_detail(output: &Output, moved: u64, millis: u64) -> String {
    let flow = |bytes| format!("{} at {}", human_bytes(bytes), human_rate(bytes, millis));
    match output {
        // A backup reports the dump's raw bytes as progress; verify reads the stored ones.
        Output::Backup(b) if moved > 0 => {
            format!(
                "{} ({} stored; {})",
                b.id,
                human_bytes(b.bytes),
                flow(moved)
            )
        }
        Output::Backup(b) => format!(
            "{} ({} stored; {} read)",
            b.id,
            human_bytes(b.bytes),
            flow(b.bytes)
        ),
        _ if moved > 0 => {
            let detail = output.detail();
            if detail.is_empty() {
                flow(moved)
            } else {
                format!("{detail} ({})", flow(moved))
            }
        }
        _ => output.detail(),
    }
}
