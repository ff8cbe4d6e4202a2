//! The engine: performs the machine's effects against a driver, a backup engine and a
//! journal, and reports events.
//!
//! # The loop
//! 1. Take the target's lock and record the run ([`Journal::begin`]), or take over the
//!    lock of an interrupted run ([`Engine::resume`]).
//! 2. Ask the machine for the next effect; append "started" to the journal.
//! 3. Perform the effect; append "finished" or "failed"; feed the result to the machine.
//! 4. When the machine stops, record the report; release the lock unless the run failed.
//!
//! # Guarantees
//! - The journal holds "started" before any side effect of a step, so a crash at any
//!   instant leaves a journal that [`Engine::resume`] continues from.
//! - A heartbeat refreshes the lock while the run lasts; a second run on the same target
//!   fails at once with [`ErrorKind::Locked`].
//! - Cancellation ([`Engine::cancellation`]) fails the current forward step, which sends
//!   the run down its abort or rollback branch; rollback steps are not cancellable.
//!
//! # Assumptions
//! - One engine drives one run at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backup::{BackupId, BackupScope, Backups};
use crate::check::{self, Check};
use crate::driver::{Driver, Holder, Observed};
use crate::error::Failure;
use crate::event::{EventKind, EventSink, Unit, human_bytes, human_rate};
use crate::health::{HealthCheck, await_ready};
use crate::journal::{Entry, Journal, RunHeader, RunStatus, new_run_id, now_ms, this_host};
use crate::machine::{
    Action, Baseline, Effect, Input, Next, Outcome, Phase, Plan, Report, Run, RunKind, Step,
    refuse_upgrade, step,
};
use crate::{Error, ErrorKind, Output, Result};

/// What an engine needs to know about its target beyond the driver.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The target's name: the lock key and the application identity of its backups.
    pub target: String,
    /// How readiness is checked and how long to wait.
    pub health: HealthCheck,
    /// How many backups to keep at commit.
    pub keep_backups: usize,
    /// A lock whose heartbeat is older than this belongs to a dead run.
    pub stale_after: Duration,
    /// How often the running engine refreshes its lock.
    pub heartbeat: Duration,
    /// How long one driver call that reads or changes the deployment (preflight's
    /// observation, lock, unlock, snapshot, set_image, scale, restore, release) may take
    /// before it counts as failed with a retryable `Timeout`, so that a hung backend ends
    /// the run in its documented aborted, rolled-back or failed state instead of holding
    /// the lock forever. Every such call is idempotent, so the step that follows (or a
    /// `resume`) converges whatever the abandoned call did. Pulls, backups, data restores
    /// and readiness waits have limits of their own.
    pub call_timeout: Duration,
    /// Where the logs of a failed release's instances are kept, one directory per run
    /// (`DIR/RUN/INSTANCE.log`, mode 0600; see [`crate::evidence`]). `None`: they are kept
    /// only in the step's failure (journal, `step_failed` event, report), at most
    /// [`crate::evidence::TAIL_BYTES`] per instance. The CLI sets it to `runs/` beside the
    /// journal.
    pub evidence_dir: Option<std::path::PathBuf>,
}

impl Settings {
    /// Defaults for `target`: health from [`HealthCheck::default`], keep 10 backups,
    /// heartbeat every 5 s, stale after 30 s, driver calls limited to 5 minutes.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            health: HealthCheck::default(),
            keep_backups: 10,
            stale_after: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            evidence_dir: None,
        }
    }
}

/// The default [`Settings::call_timeout`].
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What [`Engine::resume_as`] does with an interrupted run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Re-run the step in flight and carry on.
    Continue,
    /// Fail the step in flight as cancelled: before `stop` the run aborts, after
    /// `set_image` it rolls back. A run already rolling back or committing just finishes.
    RollBack,
}

/// How a run ended, as the engine returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The run's id.
    pub run: String,
    /// What kind of run it was.
    pub kind: RunKind,
    /// Whether going back was what was asked: a rollback run, or `resume` of a run told to
    /// roll back. A `rolled_back` outcome is then a success.
    pub rollback_asked: bool,
    /// The machine's report.
    pub report: Report,
    /// The operator-facing summary (also sent as the outcome event).
    pub message: String,
    /// The command to run next, if any.
    pub next: Option<String>,
}

/// How a finished run ended for whoever asked for it: what a front end reports (the CLI
/// maps each to an exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Class {
    /// It did what was asked (for a rollback, or a resume told to roll back: rolled back).
    Success,
    /// It stopped before changing anything, or put back what it had stopped.
    Aborted,
    /// An upgrade failed and was rolled back: old image, old data.
    RolledBack,
    /// It failed and holds the lock: see [`Finished::next`].
    NeedsIntervention,
}

impl Finished {
    /// How the run ended for whoever asked for it.
    pub fn class(&self) -> Class {
        match self.report.outcome {
            Outcome::RolledBack if self.rollback_asked => Class::Success,
            Outcome::RolledBack => Class::RolledBack,
            Outcome::Aborted => Class::Aborted,
            Outcome::Failed => Class::NeedsIntervention,
            _ => Class::Success,
        }
    }
}

/// Drives runs of the state machine for one target.
#[derive(Debug, Clone)]
pub struct Engine {
    driver: Arc<dyn Driver>,
    backups: Arc<dyn Backups>,
    journal: Arc<dyn Journal>,
    settings: Settings,
    events: EventSink,
    cancel: Arc<std::sync::Mutex<CancellationToken>>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Engine {
    /// An engine for `settings.target` on `driver`, with backups and a journal.
    pub fn new(
        driver: Arc<dyn Driver>,
        backups: Arc<dyn Backups>,
        journal: Arc<dyn Journal>,
        settings: Settings,
    ) -> Self {
        Self {
            driver,
            backups,
            journal,
            settings,
            events: EventSink::discard(),
            cancel: Arc::default(),
        }
    }

    /// Sends events to `events`.
    pub fn with_events(mut self, events: EventSink) -> Self {
        self.events = events;
        self
    }

    /// The token that cancels the current (or next) run's forward steps. Each run ends by
    /// replacing a cancelled token, so a cancellation never leaks into a later run.
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn renew_cancellation(&self) {
        let mut token = self.cancel.lock().unwrap_or_else(|p| p.into_inner());
        if token.is_cancelled() {
            *token = CancellationToken::new();
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The driver.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// The backup engine.
    pub fn backups(&self) -> &Arc<dyn Backups> {
        &self.backups
    }

    fn holder(run: &str) -> Holder {
        Holder {
            run: run.to_string(),
            host: this_host(),
            pid: std::process::id(),
        }
    }

    /// Starts a new run of `plan` and drives it to its end.
    ///
    /// Fails without doing anything when the target is locked ([`ErrorKind::Locked`]) or
    /// an interrupted run must be resumed first ([`ErrorKind::Interrupted`]). Otherwise the
    /// run's outcome is in the returned report; `Err` then means the journal itself failed
    /// and the run must be resumed.
    pub async fn start(&self, plan: Plan) -> Result<Finished> {
        let id = new_run_id();
        let holder = Self::holder(&id);
        let header = RunHeader {
            id: id.clone(),
            target: self.settings.target.clone(),
            plan: plan.clone(),
            started_ms: now_ms(),
            host: holder.host.clone(),
            pid: holder.pid,
            status: RunStatus::Running,
            ended_ms: None,
            report: None,
        };
        match self
            .journal
            .begin(&header, &holder, self.settings.stale_after)
            .await
        {
            Err(e) if e.kind() == ErrorKind::Locked => return Err(self.explain_lock(e).await),
            other => other?,
        }
        self.drive(&holder, Run::new(plan), false, Vec::new()).await
    }

    /// A lock held by a run that stopped as failed needs `resume`, not patience, even
    /// while its process (this one, say) is alive.
    async fn explain_lock(&self, locked: Error) -> Error {
        let Ok(Some(open)) = self.open_run().await else {
            return locked;
        };
        if open.status != RunStatus::Stopped(Outcome::Failed) {
            return locked;
        }
        let step = open
            .report
            .as_ref()
            .and_then(|r| r.stuck_at)
            .map_or("a step".to_string(), |s| s.to_string());
        Error::new(
            ErrorKind::Interrupted,
            format!(
                "{} is held by run {}, which failed at {step} and needs intervention. Fix the cause, then run `cutover resume {}`",
                self.settings.target, open.id, open.id
            ),
        )
    }

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

    /// Continues run `run` (default: the one holding the target's lock) from its journal.
    ///
    /// Re-runs the step that was in flight when it stopped; a failed run retries its
    /// failed step. Fails with [`ErrorKind::Locked`] while the run's process is alive.
    pub async fn resume(&self, run: Option<&str>) -> Result<Finished> {
        self.resume_as(run, Resume::Continue).await
    }

    /// Like [`Engine::resume`], choosing whether an interrupted run continues forward or
    /// aborts / rolls back from where it stopped ([`Resume::RollBack`]).
    pub async fn resume_as(&self, run: Option<&str>, mode: Resume) -> Result<Finished> {
        let target = &self.settings.target;
        let id = match run {
            Some(id) => id.to_string(),
            None => match self.journal.lock(target).await? {
                Some(lock) => lock.holder.run,
                None => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "no interrupted or failed run holds {target}; nothing to resume (`cutover history` lists runs)"
                        ),
                    ));
                }
            },
        };
        let record = self.journal.run(&id).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no run {id:?} in the journal (`cutover history` lists runs)"),
            )
        })?;
        if record.header.target != *target {
            return Err(Error::invalid(format!(
                "run {id} belongs to target {:?}, not {target:?}",
                record.header.target
            )));
        }
        if let RunStatus::Stopped(outcome) = record.header.status
            && outcome.is_terminal()
        {
            {
                // It ended but may have stopped before releasing its lock.
                self.journal.release(target, &id).await?;
                let report = record.header.report.clone().unwrap_or(Report {
                    outcome,
                    cause: None,
                    backup: None,
                    stuck_at: None,
                    safety: None,
                });
                let (message, next) = describe(&record.fold().0, &report, &id);
                let kind = record.header.kind();
                return Ok(Finished {
                    run: id,
                    kind,
                    rollback_asked: kind == RunKind::Rollback || mode == Resume::RollBack,
                    report,
                    message: format!("run already ended: {message}"),
                    next,
                });
            }
        }
        let holder = Self::holder(&id);
        self.journal
            .take_over(target, &holder, self.settings.stale_after)
            .await?;
        let (mut run, in_flight) = record.fold();
        if matches!(run.phase, Phase::Failed { .. }) {
            self.journal.append(&id, &Entry::Retried).await?;
            run = step(run, Input::Retry).0;
        }
        let mut notes = Vec::new();
        match (mode, run.next()) {
            (Resume::RollBack, Next::Perform(effect)) if run.is_cancellable() => {
                // The step in flight (or next) fails as cancelled: the machine then takes
                // the abort or rollback branch that fits where the run stopped.
                let mut error = Failure::from(&Error::new(
                    ErrorKind::Cancelled,
                    "the operator chose to roll back the interrupted run",
                ));
                if let Some(release) = run.new_release() {
                    // The rollback removes the new release's instances: keep what they
                    // printed. Warnings follow the run_started event, like the notes.
                    let (sink, mut warnings) = EventSink::channel();
                    error.evidence = crate::evidence::capture(
                        self.driver.as_ref(),
                        &release,
                        self.settings.evidence_dir.as_deref(),
                        &id,
                        self.settings.call_timeout,
                        &sink,
                    )
                    .await;
                    while let Ok(event) = warnings.try_recv() {
                        if let EventKind::Warning { message } = event.kind {
                            notes.push(message);
                        }
                    }
                }
                notes.push(format!(
                    "run {id} stopped at {}; rolling it back instead of continuing",
                    effect.step
                ));
                self.journal
                    .append(&id, &Entry::Failed { step: effect.step, error: error.clone() })
                    .await?;
                run = step(run, Input::Completed(Err(error))).0;
            }
            (Resume::RollBack, Next::Perform(effect)) => notes.push(format!(
                "run {id} is past the point of rolling forward or back ({}); finishing it as it stands",
                effect.step
            )),
            (_, Next::Perform(effect)) if in_flight == Some(effect.step) => notes.push(format!(
                "run {id} stopped during step {}; running it again",
                effect.step
            )),
            _ => {}
        }
        let mut finished = self.drive(&holder, run, true, notes).await?;
        finished.rollback_asked |= mode == Resume::RollBack;
        Ok(finished)
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

    fn spawn_heartbeat(&self, holder: &Holder) -> AbortOnDrop {
        let journal = self.journal.clone();
        let target = self.settings.target.clone();
        let holder = holder.clone();
        let every = self.settings.heartbeat;
        let span = run_span(&holder.run);
        AbortOnDrop(tokio::spawn(
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = journal.heartbeat(&target, &holder).await {
                        tracing::warn!(error = %e.report(), "lock heartbeat failed");
                    }
                }
            }
            .instrument(span),
        ))
    }

    async fn drive(
        &self,
        holder: &Holder,
        run: Run,
        resumed: bool,
        notes: Vec<String>,
    ) -> Result<Finished> {
        // Whatever core and the driver log during the run names it (see `run_span`).
        let result = self
            .steps(holder, run, resumed, notes)
            .instrument(run_span(&holder.run))
            .await;
        self.renew_cancellation();
        result
    }

    async fn steps(
        &self,
        holder: &Holder,
        mut run: Run,
        resumed: bool,
        notes: Vec<String>,
    ) -> Result<Finished> {
        let id = holder.run.as_str();
        let cancel = self.cancellation();
        let _heartbeat = self.spawn_heartbeat(holder);
        let events = self.events.for_run(id);
        events.emit(EventKind::RunStarted {
            kind: run.plan.kind(),
            target: self.settings.target.clone(),
            resumed,
        });
        for note in notes {
            events.warn(note);
        }
        loop {
            let effect = match run.next() {
                Next::Perform(effect) => effect,
                Next::Stop(report) => return self.finish(id, &run, report, &events).await,
            };
            self.journal
                .append(id, &Entry::Started { step: effect.step })
                .await?;
            events.emit(EventKind::StepStarted {
                step: effect.step.to_string(),
                about: about(&effect),
            });
            let began = tokio::time::Instant::now();
            // The bytes a step reports moving, for the rate in its finished detail.
            let moved = Arc::new(AtomicU64::new(0));
            let step_events = {
                let moved = moved.clone();
                events.for_step(effect.step.as_str()).tapped(move |e| {
                    if let EventKind::Progress {
                        done,
                        unit: Unit::Bytes,
                        ..
                    } = e.kind
                    {
                        moved.fetch_max(done, Ordering::Relaxed);
                    }
                })
            };
            let result = if run.is_cancellable() {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => Err(Error::new(ErrorKind::Cancelled, "cancelled by the operator")),
                    r = self.perform(&run, &effect.action, holder, &step_events) => r,
                }
            } else {
                self.perform(&run, &effect.action, holder, &step_events)
                    .await
            };
            let millis = began.elapsed().as_millis() as u64;
            let mut result = result.map_err(|e| Failure::from(&e));
            if let Err(failure) = &mut result
                && let Some(release) = run.new_release()
            {
                // Before the machine hears of it: its rollback removes these instances.
                failure.evidence = crate::evidence::capture(
                    self.driver.as_ref(),
                    &release,
                    self.settings.evidence_dir.as_deref(),
                    id,
                    self.settings.call_timeout,
                    &step_events,
                )
                .await;
            }
            let entry = match &result {
                Ok(output) => Entry::Finished {
                    step: effect.step,
                    output: output.clone(),
                },
                Err(error) => Entry::Failed {
                    step: effect.step,
                    error: error.clone(),
                },
            };
            self.journal.append(id, &entry).await?;
            match &result {
                Ok(output) => events.emit(EventKind::StepFinished {
                    step: effect.step.to_string(),
                    millis,
                    detail: step_detail(output, moved.load(Ordering::Relaxed), millis),
                }),
                Err(error) if effect.is_best_effort() => events.warn(format!(
                    "{} failed (the run continues): {error}",
                    effect.step
                )),
                Err(error) => events.emit(EventKind::StepFailed {
                    step: effect.step.to_string(),
                    millis,
                    error: error.clone(),
                }),
            }
            run = step(run, Input::Completed(result)).0;
        }
    }

    async fn finish(
        &self,
        id: &str,
        run: &Run,
        report: Report,
        events: &EventSink,
    ) -> Result<Finished> {
        self.journal
            .append(
                id,
                &Entry::Stopped {
                    report: report.clone(),
                },
            )
            .await?;
        self.journal.stop(id, &report).await?;
        if report.outcome.is_terminal() {
            self.journal.release(&self.settings.target, id).await?;
        }
        let (mut message, mut next) = describe(run, &report, id);
        if report.outcome == Outcome::Aborted
            && let Some(checked) = self.check_aborted(id, &report).await?
        {
            (message, next) = checked;
            message.push_str(&safety_note(&report));
        }
        events.emit(EventKind::Outcome {
            outcome: report.outcome,
            message: message.clone(),
            next: next.clone(),
        });
        Ok(Finished {
            run: id.to_string(),
            kind: run.plan.kind(),
            rollback_asked: run.plan.kind() == RunKind::Rollback,
            report,
            message,
            next,
        })
    }

    /// After an abort, observes the deployment and compares it with what preflight saw:
    /// the operator is told it runs as before only when it does. `None` when preflight
    /// itself failed (nothing was observed, and nothing changed: preflight only reads).
    async fn check_aborted(
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

    async fn perform(
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
                .restore(id, app, driver, events)
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
            Action::Prune(keep_id) => {
                let mut protected = self.referenced_backups().await?;
                protected.extend(keep_id.iter().cloned());
                let deleted = self
                    .backups
                    .prune(app, self.settings.keep_backups, &protected)
                    .await?;
                if !deleted.is_empty() {
                    let ids: Vec<_> = deleted.iter().map(|d| d.as_str()).collect();
                    events.warn(format!("pruned old backups: {}", ids.join(", ")));
                }
                let swept = self.backups.sweep(&protected).await?;
                if !swept.is_empty() {
                    let names: Vec<_> = swept.iter().map(ToString::to_string).collect();
                    events.warn(format!(
                        "deleted the leftovers of unfinished backups: {}",
                        names.join(", ")
                    ));
                }
                Ok(Output::Done)
            }
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
            Action::PruneTo(keep) => {
                let protected = self.referenced_backups().await?;
                let deleted = self.backups.prune(app, *keep, &protected).await?;
                let swept = self.backups.sweep(&protected).await?;
                Ok(Output::Pruned { deleted, swept })
            }
        }
    }

    /// The backups that runs of the target which have not ended (running, interrupted or
    /// failed) name in their plan or took: what `resume` or a rollback may still need.
    async fn referenced_backups(&self) -> Result<Vec<crate::BackupId>> {
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

    /// Read-only checks before a run changes anything: the first failed one of
    /// [`Engine::checks`].
    async fn preflight(&self, plan: &Plan) -> Result<Output> {
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
        let seen = match driver.observe().await {
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
            }
            Plan::Rollback {
                snapshot, backup, ..
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
                    checks.extend(self.backups.checks(driver).await);
                    checks.push(self.verified(&b.id, app).await);
                }
            }
            Plan::Backup => checks.extend(self.backups.checks(driver).await),
            Plan::Verify { restore_test, .. } => {
                if *restore_test {
                    checks.extend(self.backups.checks(driver).await);
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
            Plan::Restore { backup, .. } => {
                checks.extend(self.backups.checks(driver).await);
                checks.push(self.verified(backup, app).await);
            }
        }
        (seen, checks)
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
}

/// The tracing span of run `id`: every record core and the driver log while the run
/// performs its steps, or from its lock heartbeat, is inside it, with the field `run`.
/// A subscriber can so attribute a warning to its run (the CLI turns each into the run's
/// `warning` event).
pub fn run_span(id: &str) -> tracing::Span {
    tracing::info_span!("cutover_run", run = id)
}

/// The detail of a finished step: its output's, with the bytes it moved and the average
/// rate for steps that move data (backup, restore, verify).
fn step_detail(output: &Output, moved: u64, millis: u64) -> String {
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
        Action::Prune(_) => "delete backups beyond the retention count".into(),
        Action::Verify {
            backup,
            restore_test: false,
        } => format!("check every part of backup {backup} against its manifest"),
        Action::Verify { backup, .. } => format!(
            "check backup {backup}, restore it into a scratch database and compare fingerprints"
        ),
        Action::PruneTo(keep) => format!("delete backups beyond the newest {keep}"),
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

/// The operator-facing summary of a report and the command to run next.
pub fn describe(run: &Run, report: &Report, id: &str) -> (String, Option<String>) {
    let (message, next) = describe_outcome(run, report, id);
    (
        message + &evidence_note(report, id) + &safety_note(report),
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
/// backup.
fn safety_note(report: &Report) -> String {
    let Some(safety) = &report.safety else {
        return String::new();
    };
    let id = &safety.id;
    match report.outcome {
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
