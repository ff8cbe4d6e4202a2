//! The operator's commands around the downtime of an upgrade: which points the plan has
//! hooks at ([`HookPoints`], journaled with the plan) and what the engine is asked to run
//! at one ([`HookCall`]). The commands themselves are the engine's settings, not the
//! plan's: the machine only knows that a point has one.

use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::backup::BackupId;
use crate::image::ImageRef;

/// A point of an upgrade where the operator's command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Right before the upgrade's stop (after pull, snapshot and an online backup). A
    /// failure aborts the upgrade with nothing changed.
    BeforeStop,
    /// Once the new release's leader is healthy, before the other instances start. A
    /// failure is a warning.
    AfterLeader,
    /// When the upgrade ends rolled back, before `after_run`. A failure is a warning.
    OnRollback,
    /// At the end of an upgrade that took its lock, whatever the outcome, right before
    /// the unlock. A failure is a warning.
    AfterRun,
}

impl Hook {
    /// The stable snake_case name, as in `[hooks]` and `CUTOVER_HOOK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BeforeStop => "before_stop",
            Self::AfterLeader => "after_leader",
            Self::OnRollback => "on_rollback",
            Self::AfterRun => "after_run",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which hook points an upgrade has a command at. Journals written before hooks existed
/// read none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HookPoints {
    /// A `before_stop` hook.
    pub before_stop: bool,
    /// An `after_leader` hook.
    pub after_leader: bool,
    /// An `on_rollback` hook.
    pub on_rollback: bool,
    /// An `after_run` hook.
    pub after_run: bool,
}

impl HookPoints {
    /// No hook at all.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `hook` has a command.
    pub fn has(&self, hook: Hook) -> bool {
        match hook {
            Hook::BeforeStop => self.before_stop,
            Hook::AfterLeader => self.after_leader,
            Hook::OnRollback => self.on_rollback,
            Hook::AfterRun => self.after_run,
        }
    }
}

/// What a hook is told about the run (the engine adds the run's id and the application).
#[derive(Debug, Clone, PartialEq)]
pub struct HookCall {
    /// Which hook.
    pub hook: Hook,
    /// The image that ran before the upgrade.
    pub from: ImageRef,
    /// The target image.
    pub to: ImageRef,
    /// The digest `pull` resolved the target to, once known.
    pub to_digest: Option<String>,
    /// The backup this run took, once taken.
    pub backup: Option<BackupId>,
    /// How the run ends (`on_rollback`, `after_run`).
    pub outcome: Option<Outcome>,
}
