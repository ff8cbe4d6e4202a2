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

mod effects;
mod history;
mod hooks;
mod preflight;
pub mod preview;
mod queries;
mod text;

pub(crate) use effects::Bounded;
use effects::step_detail;
pub use hooks::{DEFAULT_HOOK_TIMEOUT, HookCommand, Hooks};
use text::safety_note;
pub use text::{about, describe};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backup::Backups;
use crate::driver::{Driver, Holder};
use crate::error::Failure;
use crate::event::{EventKind, EventSink, Unit};
use crate::health::HealthCheck;
use crate::journal::{Entry, Journal, RunHeader, RunStatus, new_run_id, now_ms, this_host};
use crate::machine::{Input, Next, Outcome, Phase, Plan, Report, Run, RunKind, step};
use crate::{Error, ErrorKind, Result};

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
    /// The commands at an upgrade's hook points. An upgrade's plan records which points
    /// have one ([`Hooks::points`]); a point the plan has but these lack fails its step.
    pub hooks: Hooks,
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
            hooks: Hooks::default(),
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
                    safety_under: None,
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
                Err(error) if run.is_best_effort() => events.warn(format!(
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
            message.push_str(&safety_note(run, &report));
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
}

/// The tracing span of run `id`: every record core and the driver log while the run
/// performs its steps, or from its lock heartbeat, is inside it, with the field `run`.
/// A subscriber can so attribute a warning to its run (the CLI turns each into the run's
/// `warning` event).
pub fn run_span(id: &str) -> tracing::Span {
    tracing::info_span!("cutover_run", run = id)
}
