//! Events: what a run reports while it works, for the CLI, embedders and logs.
//!
//! Every event serialises to one JSON object with a `schema` field
//! ([`EVENT_SCHEMA`]), the time, the run id and a `type`. The schema is versioned: fields
//! may be added within a version; renaming or removing one bumps it.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::Failure;
use crate::run::{Outcome, RunKind};

/// The schema identifier carried by every event.
pub const EVENT_SCHEMA: &str = "cutover.event.v1";

/// One thing that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always [`EVENT_SCHEMA`].
    pub schema: String,
    /// When it happened, RFC 3339 with milliseconds, UTC.
    pub at: String,
    /// The run it belongs to; empty for events outside a run.
    pub run: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The unit of a [`EventKind::Progress`] count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Bytes transferred.
    Bytes,
    /// Instances ready.
    Instances,
    /// Items of another kind (layers, tables).
    Items,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A run began (or resumed).
    RunStarted {
        /// Upgrade, rollback, backup or restore.
        kind: RunKind,
        /// The target's name.
        target: String,
        /// Whether this continues an interrupted run.
        resumed: bool,
    },
    /// A step began.
    StepStarted {
        /// The step's stable name (e.g. `start_leader`).
        step: String,
        /// What it does, for humans.
        about: String,
    },
    /// Progress within the current step.
    Progress {
        /// The step's name.
        step: String,
        /// Done so far.
        done: u64,
        /// The expected total, when known.
        total: Option<u64>,
        /// What is counted.
        unit: Unit,
    },
    /// A step finished.
    StepFinished {
        /// The step's name.
        step: String,
        /// How long it took.
        millis: u64,
        /// A short result, e.g. the backup id or the pulled digest.
        detail: String,
    },
    /// A step failed; the run continues on its abort or rollback branch.
    StepFailed {
        /// The step's name.
        step: String,
        /// How long it ran.
        millis: u64,
        /// What went wrong.
        error: Failure,
    },
    /// Something the operator should know that does not stop the run.
    Warning {
        /// The warning.
        message: String,
    },
    /// The run ended (or stopped needing intervention).
    Outcome {
        /// How it ended.
        outcome: Outcome,
        /// A sentence for humans: what happened and the state of the deployment.
        message: String,
        /// The command to run next, when one is needed.
        next: Option<String>,
    },
}

/// A byte count for people, in binary units: `512 B`, `97.3 MiB`, `1.4 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A transfer rate for people: `97.3 MiB/s`; `bytes` moved in `millis` milliseconds.
pub fn human_rate(bytes: u64, millis: u64) -> String {
    let per_second = bytes as f64 * 1000.0 / millis.max(1) as f64;
    format!("{}/s", human_bytes(per_second as u64))
}

/// Formats a time as RFC 3339 UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

type Subscriber = dyn Fn(&Event) + Send + Sync;

/// Where a run's events go. Cheap to clone; scoped to a run and a step by the engine.
///
/// Drivers and backup engines report progress through the sink they are handed; the
/// engine fills in the run id and the step name.
#[derive(Clone)]
pub struct EventSink {
    subscriber: Arc<Subscriber>,
    run: Arc<str>,
    step: Arc<str>,
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSink")
            .field("run", &self.run)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl EventSink {
    /// A sink that hands every event to `subscriber` (which must not block).
    pub fn new(subscriber: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        Self {
            subscriber: Arc::new(subscriber),
            run: Arc::from(""),
            step: Arc::from(""),
        }
    }

    /// A sink that drops everything.
    pub fn discard() -> Self {
        Self::new(|_| {})
    }

    /// A sink and the unbounded receiver of its events.
    pub fn channel() -> (Self, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Self::new(move |e| {
                let _ = tx.send(e.clone());
            }),
            rx,
        )
    }

    /// The same subscriber, stamping events with `run`.
    pub fn for_run(&self, run: &str) -> Self {
        Self {
            run: Arc::from(run),
            ..self.clone()
        }
    }

    /// The same subscriber, attributing progress to `step`.
    pub fn for_step(&self, step: &str) -> Self {
        Self {
            step: Arc::from(step),
            ..self.clone()
        }
    }

    /// The same sink, showing every event to `tap` (which must not block) before its
    /// subscriber.
    pub fn tapped(&self, tap: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        let inner = self.subscriber.clone();
        Self {
            subscriber: Arc::new(move |e: &Event| {
                tap(e);
                inner(e);
            }),
            ..self.clone()
        }
    }

    /// Sends `kind` now.
    pub fn emit(&self, kind: EventKind) {
        let event = Event {
            schema: EVENT_SCHEMA.to_string(),
            at: timestamp(SystemTime::now()),
            run: self.run.to_string(),
            kind,
        };
        (self.subscriber)(&event);
    }

    /// Reports progress of the current step.
    pub fn progress(&self, done: u64, total: Option<u64>, unit: Unit) {
        self.emit(EventKind::Progress {
            step: self.step.to_string(),
            done,
            total,
            unit,
        });
    }

    /// Reports a warning.
    pub fn warn(&self, message: impl Into<String>) {
        self.emit(EventKind::Warning {
            message: message.into(),
        });
    }
}
