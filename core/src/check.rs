//! The read-only checks a run makes before it changes anything.
//!
//! A run's preflight and `cutover plan` make the same checks through the same code:
//! [`crate::Engine::checks`] lists every check with what it found, and the preflight
//! step fails with the first failed one ([`first_failure`]). A check that needs another
//! which failed (the database's settings, once the database cannot be reached) is left
//! out rather than reported twice.

use crate::error::{Error, Result};

/// One check and what it found.
#[derive(Debug)]
pub struct Check {
    /// What was checked, e.g. `"database"` or `"backup store writable"`.
    pub name: &'static str,
    /// What it found, or why a run would stop. The error is the one the preflight step
    /// fails with, kind and message unchanged.
    pub result: Result<String>,
}

impl Check {
    /// A check whose outcome is `result`, with `detail` describing a pass.
    pub fn of(name: &'static str, result: Result<String>) -> Self {
        Check { name, result }
    }

    /// A passed check.
    pub fn passed(name: &'static str, detail: impl Into<String>) -> Self {
        Check::of(name, Ok(detail.into()))
    }

    /// A failed check.
    pub fn failed(name: &'static str, error: Error) -> Self {
        Check::of(name, Err(error))
    }

    /// Whether it passed.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// The first failed check's error, as the preflight step reports it; `Ok` when every
/// check passed.
pub fn first_failure(checks: Vec<Check>) -> Result<()> {
    match checks.into_iter().find_map(|c| c.result.err()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn the_first_failure_is_reported_unchanged() {
        let checks = vec![
            Check::passed("a", "fine"),
            Check::failed("b", Error::new(ErrorKind::NotFound, "b is missing")),
            Check::failed("c", Error::invalid("c is wrong")),
        ];
        let e = first_failure(checks).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.message(), "b is missing");
        assert!(first_failure(vec![Check::passed("a", "fine")]).is_ok());
        assert!(first_failure(Vec::new()).is_ok());
    }
}
