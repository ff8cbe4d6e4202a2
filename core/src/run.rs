//! The kinds of runs and how they end: the vocabulary that the state machine, the
//! journal and the [`crate::event`] stream share.
//!
//! It lives apart from the machine so that events, and with them the driver contract,
//! do not depend on the engine.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of run this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Move the deployment to a new image.
    Upgrade,
    /// Go back to the image and data before an upgrade.
    Rollback,
    /// Take a backup.
    Backup,
    /// Replace the data with a backup.
    Restore,
    /// Check a stored backup (and optionally restore it into a scratch database).
    Verify,
    /// Delete old backups.
    Prune,
}

impl RunKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upgrade => "upgrade",
            Self::Rollback => "rollback",
            Self::Backup => "backup",
            Self::Restore => "restore",
            Self::Verify => "verify",
            Self::Prune => "prune",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The deployment runs the new image.
    Upgraded,
    /// The deployment runs the previous image on the previous data.
    RolledBack,
    /// Nothing was changed (or what was stopped runs again).
    Aborted,
    /// A backup was taken.
    BackedUp,
    /// The data was restored from a backup.
    Restored,
    /// A stored backup passed its checks.
    Verified,
    /// Old backups were deleted.
    Pruned,
    /// A step of a rollback or restore failed: the run needs intervention and `resume`.
    Failed,
}

impl Outcome {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upgraded => "upgraded",
            Self::RolledBack => "rolled_back",
            Self::Aborted => "aborted",
            Self::BackedUp => "backed_up",
            Self::Restored => "restored",
            Self::Verified => "verified",
            Self::Pruned => "pruned",
            Self::Failed => "failed",
        }
    }

    /// Whether the run is over (a failed run can still be resumed).
    pub fn is_terminal(self) -> bool {
        self != Self::Failed
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
