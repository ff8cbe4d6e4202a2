//! The durable record of every run, and the lock that keeps one run per target.
//!
//! A run is a header (its [`Plan`]) followed by [`Entry`]s: each step is appended as
//! started before its side effect and as finished (or failed) after it. Folding the
//! entries through [`crate::machine::step`] rebuilds the run's state; the step that was
//! started but not finished is the one to re-run.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::backup::BackupRef;
use crate::driver::{Holder, Snapshot};
use crate::error::Failure;
use crate::machine::{Baseline, Input, Output, Plan, Report, Run, RunKind, Step, step};
use crate::{Error, ErrorKind, Result};

mod postgres;
mod rows;
mod sqlite;

pub use postgres::PgJournal;
pub use sqlite::SqliteJournal;

/// One record of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    /// A step is about to perform its effect.
    Started {
        /// The step.
        step: Step,
    },
    /// The step's effect completed.
    Finished {
        /// The step.
        step: Step,
        /// Its result.
        output: Output,
    },
    /// The step's effect failed.
    Failed {
        /// The step.
        step: Step,
        /// Why.
        error: Failure,
    },
    /// A failed run was resumed: its failed step runs again.
    Retried,
    /// The run stopped (terminally, or as [`crate::Outcome::Failed`]).
    Stopped {
        /// How.
        report: Report,
    },
}

/// A stored entry with its position and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position within the run, from 0.
    pub seq: u32,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The entry.
    pub entry: Entry,
}

/// The state of a run in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not stopped: running now, or interrupted.
    Running,
    /// Stopped with this outcome.
    Stopped(crate::Outcome),
}

/// A run's header and status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// The run's id.
    pub id: String,
    /// The target (the application's name).
    pub target: String,
    /// What the run was asked to do.
    pub plan: Plan,
    /// When it started, milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// The host and pid that started it.
    pub host: String,
    /// The pid that started it.
    pub pid: u32,
    /// Where it is.
    pub status: RunStatus,
    /// When it stopped terminally.
    pub ended_ms: Option<u64>,
    /// Its report, once stopped.
    pub report: Option<Report>,
}

impl RunHeader {
    /// The kind of run.
    pub fn kind(&self) -> RunKind {
        self.plan.kind()
    }
}

/// A run with all its records.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The header.
    pub header: RunHeader,
    /// The records, in order.
    pub records: Vec<Record>,
}

impl RunRecord {
    /// Rebuilds the run's state by folding its records through the machine.
    ///
    /// Returns the run and, when the last record is a started step without an end, that
    /// step: it is the one that was in flight when the process stopped.
    pub fn fold(&self) -> (Run, Option<Step>) {
        let mut run = Run::new(self.header.plan.clone());
        let mut in_flight = None;
        for record in &self.records {
            match &record.entry {
                Entry::Started { step } => in_flight = Some(*step),
                Entry::Finished { output, .. } => {
                    in_flight = None;
                    run = step(run, Input::Completed(Ok(output.clone()))).0;
                }
                Entry::Failed { error, .. } => {
                    in_flight = None;
                    run = step(run, Input::Completed(Err(error.clone()))).0;
                }
                Entry::Retried => run = step(run, Input::Retry).0,
                Entry::Stopped { .. } => {}
            }
        }
        (run, in_flight)
    }

    /// The backup this run took and when its `backup` step finished (milliseconds since
    /// the Unix epoch). A verify run's checked backup is not one it took.
    pub fn backup_taken(&self) -> Option<(&BackupRef, u64)> {
        self.records.iter().rev().find_map(|r| match &r.entry {
            Entry::Finished {
                step: Step::Backup,
                output: Output::Backup(b),
            } => Some((b, r.at_ms)),
            _ => None,
        })
    }

    /// The deployment as this run's preflight saw it.
    pub fn baseline(&self) -> Option<&Baseline> {
        self.records.iter().find_map(|r| match &r.entry {
            Entry::Finished {
                step: Step::Preflight,
                output: Output::Observed(b),
            } => Some(b),
            _ => None,
        })
    }

    /// Whether this run started a step that stops instances (`stop`, `rollback_stop`).
    pub fn started_stop(&self) -> bool {
        self.records.iter().any(|r| {
            matches!(
                r.entry,
                Entry::Started {
                    step: Step::Stop | Step::RollbackStop
                }
            )
        })
    }

    /// The deployment as this run's `snapshot` step found it, before it changed anything.
    pub fn snapshot_taken(&self) -> Option<&Snapshot> {
        self.records.iter().rev().find_map(|r| match &r.entry {
            Entry::Finished {
                step: Step::Snapshot,
                output: Output::Snapshot(s),
            } => Some(s),
            _ => None,
        })
    }

    /// How long each finished step took, in order: (step, milliseconds, failed).
    pub fn step_durations(&self) -> Vec<(Step, u64, bool)> {
        let mut out = Vec::new();
        let mut started: Option<(Step, u64)> = None;
        for r in &self.records {
            match &r.entry {
                Entry::Started { step } => started = Some((*step, r.at_ms)),
                Entry::Finished { step, .. } | Entry::Failed { step, .. } => {
                    let failed = matches!(r.entry, Entry::Failed { .. });
                    let begin = started.take().map_or(r.at_ms, |(_, at)| at);
                    out.push((*step, r.at_ms.saturating_sub(begin), failed));
                }
                _ => {}
            }
        }
        out
    }
}

/// The lock on a target, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The target.
    pub target: String,
    /// Who holds it.
    pub holder: Holder,
    /// When it was taken, ms since the epoch.
    pub acquired_ms: u64,
    /// The holder's last heartbeat, ms since the epoch.
    pub heartbeat_ms: u64,
}

impl LockInfo {
    /// Whether the holder is still alive: a recent heartbeat, and on this host a process
    /// that still exists.
    pub fn is_live(&self, stale_after: Duration) -> bool {
        if self.holder.host == this_host() && !process_exists(self.holder.pid) {
            return false;
        }
        now_ms().saturating_sub(self.heartbeat_ms) < stale_after.as_millis() as u64
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} holds {} since {}, last heartbeat {}",
            self.holder,
            self.target,
            crate::event::timestamp(UNIX_EPOCH + Duration::from_millis(self.acquired_ms)),
            crate::event::timestamp(UNIX_EPOCH + Duration::from_millis(self.heartbeat_ms)),
        )
    }
}

/// Durable storage of runs and target locks.
///
/// # Behavior
/// - Every write is durable when the call returns (the engine relies on "started" being
///   on disk before a side effect happens).
/// - [`Journal::begin`] takes the target's lock and records the run atomically: two
///   concurrent callers on one target never both succeed.
/// - Locks are never taken from a live holder; taking over a dead holder's lock is only
///   possible for the same run ([`Journal::take_over`]) or by force.
#[async_trait]
pub trait Journal: fmt::Debug + Send + Sync {
    /// Takes the lock on `header.target` for `holder` and records the run.
    ///
    /// Fails with [`ErrorKind::Locked`] (holder alive) or [`ErrorKind::Interrupted`]
    /// (holder dead: its run must be resumed or rolled back first), naming the holder.
    async fn begin(&self, header: &RunHeader, holder: &Holder, stale_after: Duration)
    -> Result<()>;

    /// Moves the lock of `target`, held by the dead process of run `holder.run`, to
    /// `holder`. Fails with [`ErrorKind::Locked`] if that process is still alive.
    async fn take_over(&self, target: &str, holder: &Holder, stale_after: Duration) -> Result<()>;

    /// Refreshes the holder's heartbeat.
    async fn heartbeat(&self, target: &str, holder: &Holder) -> Result<()>;

    /// Releases the lock if `run` holds it.
    async fn release(&self, target: &str, run: &str) -> Result<()>;

    /// Removes the lock whoever holds it; returns what was removed.
    async fn force_release(&self, target: &str) -> Result<Option<LockInfo>>;

    /// The lock on `target`, if any.
    async fn lock(&self, target: &str) -> Result<Option<LockInfo>>;

    /// Appends an entry to run `run`.
    async fn append(&self, run: &str, entry: &Entry) -> Result<()>;

    /// Records how the run stopped (its status; terminal outcomes also set the end time).
    async fn stop(&self, run: &str, report: &Report) -> Result<()>;

    /// A run with its records.
    async fn run(&self, run: &str) -> Result<Option<RunRecord>>;

    /// The newest `limit` runs of `target`, newest first, without records.
    async fn runs(&self, target: &str, limit: u32) -> Result<Vec<RunHeader>>;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This machine's host name.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn process_exists(pid: u32) -> bool {
    // Where /proc is missing (not Linux) we cannot tell: assume alive, rely on heartbeats.
    !std::path::Path::new("/proc/self").exists()
        || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A new run id: sortable by time, unique across processes.
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let compact: String = stamp
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("{compact}-{:06x}", h.finish() & 0xff_ffff)
}

pub(crate) fn lock_error(info: &LockInfo, stale_after: Duration) -> Error {
    if info.is_live(stale_after) {
        Error::new(
            ErrorKind::Locked,
            format!(
                "{} is locked: {info}. Wait for that run to finish (`cutover status` shows it)",
                info.target
            ),
        )
    } else {
        Error::new(
            ErrorKind::Interrupted,
            format!(
                "{} is locked by {}, which stopped without finishing (last heartbeat {}). Run `cutover resume {}` to finish it or `cutover resume --rollback {}` to roll it back; `cutover unlock --force` discards it and risks leaving the deployment half-changed",
                info.target,
                info.holder,
                crate::event::timestamp(UNIX_EPOCH + Duration::from_millis(info.heartbeat_ms)),
                info.holder.run,
                info.holder.run,
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageRef;

    fn record(plan: Plan, entries: Vec<(u64, Entry)>) -> RunRecord {
        RunRecord {
            header: RunHeader {
                id: "r".into(),
                target: "app".into(),
                plan,
                started_ms: 1000,
                host: "h".into(),
                pid: 1,
                status: RunStatus::Running,
                ended_ms: None,
                report: None,
            },
            records: entries
                .into_iter()
                .enumerate()
                .map(|(seq, (at_ms, entry))| Record {
                    seq: seq as u32,
                    at_ms,
                    entry,
                })
                .collect(),
        }
    }

    #[test]
    fn what_a_run_took_is_its_snapshot_and_backup_steps_output() {
        let image: ImageRef = "registry.example.com/app:v1".parse().unwrap();
        let snapshot = Snapshot {
            driver: "fake".into(),
            image: image.clone(),
            replicas: 2,
            data: serde_json::Value::Null,
        };
        let backup = BackupRef {
            id: "b1".parse().unwrap(),
            bytes: 10,
        };
        let upgrade = record(
            Plan::Upgrade {
                to: image,
                backup: crate::BackupMode::Offline,
                replicas: None,
                allow_downgrade: false,
                hooks: Default::default(),
            },
            vec![
                (
                    1100,
                    Entry::Started {
                        step: Step::Snapshot,
                    },
                ),
                (
                    1200,
                    Entry::Finished {
                        step: Step::Snapshot,
                        output: Output::Snapshot(snapshot.clone()),
                    },
                ),
                (1300, Entry::Started { step: Step::Backup }),
                (
                    1400,
                    Entry::Finished {
                        step: Step::Backup,
                        output: Output::Backup(backup.clone()),
                    },
                ),
            ],
        );
        assert_eq!(upgrade.snapshot_taken(), Some(&snapshot));
        assert_eq!(upgrade.backup_taken(), Some((&backup, 1400)));

        // Verifying a backup reports it from the verify step: that run took none.
        let verify = record(
            Plan::Verify {
                backup: backup.id.clone(),
                restore_test: false,
            },
            vec![(
                1500,
                Entry::Finished {
                    step: Step::Verify,
                    output: Output::Backup(backup),
                },
            )],
        );
        assert_eq!(verify.backup_taken(), None);
        assert_eq!(verify.snapshot_taken(), None);
    }
}
