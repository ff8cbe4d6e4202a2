//! The documented exit codes.

use cutover_core::{Class, ErrorKind};

/// The run did what was asked.
pub const SUCCESS: u8 = 0;
/// An unexpected error (journal unreadable, backend failing outside a run).
pub const ERROR: u8 = 1;
/// Bad usage or configuration: nothing was done.
pub const USAGE: u8 = 2;
/// Another run holds the target's lock: nothing was done.
pub const LOCKED: u8 = 3;
/// The run stopped before changing anything (or put back what it had stopped).
pub const ABORTED: u8 = 4;
/// The upgrade failed and was rolled back: old image, old data.
pub const ROLLED_BACK: u8 = 5;
/// Intervention needed: a failed or interrupted run holds the lock; see `next`.
pub const NEEDS_INTERVENTION: u8 = 6;
/// A `restore` or `rollback` was not confirmed at its question: nothing was done.
pub const DECLINED: u8 = 7;
/// Stopped at once by a second interrupt; `cutover resume` continues.
pub const INTERRUPTED: u8 = 130;

/// The exit code of a finished run's class.
pub fn for_class(class: Class) -> u8 {
    match class {
        Class::Aborted => ABORTED,
        Class::RolledBack => ROLLED_BACK,
        Class::NeedsIntervention => NEEDS_INTERVENTION,
        _ => SUCCESS,
    }
}

/// The exit code of an error outside a run's outcome.
pub fn for_error(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::NotFound => USAGE,
        ErrorKind::Locked => LOCKED,
        ErrorKind::Interrupted => NEEDS_INTERVENTION,
        _ => ERROR,
    }
}
