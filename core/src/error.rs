//! The one error type of cutover-core, shared by drivers, journals and backup engines.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, in terms a caller can act on.
///
/// The kind decides how the engine reacts (for example [`ErrorKind::Locked`] makes the CLI
/// exit with its own code) and whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input (config, image reference, backup id, flag) is not valid. Nothing was changed.
    InvalidInput,
    /// The driver lacks the capability this call needs.
    Unsupported,
    /// The thing asked for (image tag, container, backup, run) does not exist.
    NotFound,
    /// The backend, database or store could not be reached or answered with a passing fault.
    Unavailable,
    /// The backend is in a state that conflicts with the request (e.g. a foreign lock holder).
    Conflict,
    /// Another run holds the lock on this target.
    Locked,
    /// A previous run on this target was interrupted and must be resumed or rolled back first.
    Interrupted,
    /// A deadline passed (for example the leader did not become healthy in time).
    Timeout,
    /// The run was cancelled by the operator.
    Cancelled,
    /// Data failed an integrity check (checksum, fingerprint, application identity).
    Integrity,
    /// The journal could not record or read a run.
    Journal,
    /// Any other failure.
    Other,
}

impl ErrorKind {
    /// The stable kebab-case name used in JSON events and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid-input",
            Self::Unsupported => "unsupported",
            Self::NotFound => "not-found",
            Self::Unavailable => "unavailable",
            Self::Conflict => "conflict",
            Self::Locked => "locked",
            Self::Interrupted => "interrupted",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Integrity => "integrity",
            Self::Journal => "journal",
            Self::Other => "other",
        }
    }

    /// Whether retrying the same call may succeed, absent other information.
    pub fn retryable_by_default(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible operation in cutover-core and of every [`crate::Driver`].
///
/// It carries what failed (`operation`), where (`driver`, `subject`: an instance, host or
/// backup), whether a retry can help, a message for the operator and the source error.
/// Build one with [`Error::new`] and the chained setters:
///
/// ```
/// use cutover_core::{Error, ErrorKind};
/// let err = Error::new(ErrorKind::Unavailable, "docker engine did not answer")
///     .with_driver("docker")
///     .with_operation("observe")
///     .with_subject("host-a");
/// assert!(err.is_retryable());
/// assert_eq!(
///     err.to_string(),
///     "docker observe (host-a): docker engine did not answer"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub struct Error {
    kind: ErrorKind,
    message: String,
    driver: Option<String>,
    operation: Option<String>,
    subject: Option<String>,
    retryable: bool,
    nothing_changed: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with an operator-facing message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            driver: None,
            operation: None,
            subject: None,
            retryable: kind.retryable_by_default(),
            nothing_changed: false,
            source: None,
        }
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The typed "unsupported" error a driver returns for a capability it lacks.
    pub fn unsupported(driver: &str, operation: &str) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            format!("the {driver} driver does not support {operation}"),
        )
        .with_driver(driver)
        .with_operation(operation)
    }

    /// Names the driver (its kind, e.g. `docker`).
    pub fn with_driver(mut self, driver: impl Into<String>) -> Self {
        self.driver = Some(driver.into());
        self
    }

    /// An error of `driver` (its kind, e.g. `docker`) in `operation`, about `subject`
    /// (none when empty): how a driver builds the errors it returns.
    pub fn in_driver(
        driver: &str,
        kind: ErrorKind,
        operation: &str,
        subject: &str,
        message: impl Into<String>,
    ) -> Self {
        let err = Error::new(kind, message)
            .with_driver(driver)
            .with_operation(operation);
        if subject.is_empty() {
            err
        } else {
            err.with_subject(subject)
        }
    }

    /// Names the operation that failed (e.g. `scale`, `pg_dump`).
    pub fn with_operation(mut self, operation: impl Into<String>) -> Self {
        self.operation = Some(operation.into());
        self
    }

    /// Names the instance, host, backup or file the error is about.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Overrides whether a retry can help.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Says that the operation failed before it changed anything: a restore refused or
    /// stopped before it touched the live data, for example. The engine then need not put
    /// anything back.
    pub fn with_nothing_changed(mut self) -> Self {
        self.nothing_changed = true;
        self
    }

    /// Whether the operation is known to have failed before it changed anything (see
    /// [`Error::with_nothing_changed`]).
    pub fn nothing_changed(&self) -> bool {
        self.nothing_changed
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operator-facing message without context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The driver kind, when a driver raised the error.
    pub fn driver(&self) -> Option<&str> {
        self.driver.as_deref()
    }

    /// The failed operation, when known.
    pub fn operation(&self) -> Option<&str> {
        self.operation.as_deref()
    }

    /// The instance, host or object the error is about, when known.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The message with its context and the chain of sources, on one line.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            // Some sources repeat their own cause in their message; say each thing once.
            let text = cause.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = cause.source();
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.driver, &self.operation) {
            (Some(d), Some(o)) => write!(f, "{d} {o}")?,
            (Some(d), None) => write!(f, "{d}")?,
            (None, Some(o)) => write!(f, "{o}")?,
            (None, None) => {}
        }
        if let Some(s) = &self.subject {
            if self.driver.is_some() || self.operation.is_some() {
                f.write_str(" ")?;
            }
            write!(f, "({s})")?;
        }
        if self.driver.is_some() || self.operation.is_some() || self.subject.is_some() {
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

// The journal's database errors; the contract alone (without `engine`) has no database.
#[cfg(feature = "engine")]
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::new(ErrorKind::Journal, "journal database error").with_source(e)
    }
}

#[cfg(feature = "engine")]
impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::new(ErrorKind::Journal, "journal schema migration failed").with_source(e)
    }
}

/// A `Result` with cutover-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A serialisable summary of an [`Error`], as stored in the journal and sent in events.
///
/// It keeps the kind, context and the full message chain, never the source objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The error's kind.
    pub kind: ErrorKind,
    /// The whole message chain, as [`Error::report`] renders it.
    pub message: String,
    /// The instance, host or object concerned, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// What the failed instances printed last, captured before anything removed them
    /// (see the engine's `evidence` module); empty for failures that are not an instance's, and in
    /// journals written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<InstanceLogs>,
    /// The failed step is known to have changed nothing ([`Error::nothing_changed`]);
    /// `false` in journals written before it was recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nothing_changed: bool,
}

/// The last lines one instance printed, kept with the failure of its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceLogs {
    /// The instance ([`crate::Instance::id`]).
    pub instance: String,
    /// The image it ran.
    pub image: String,
    /// Its last lines, oldest first (at most `evidence::TAIL_BYTES` of them).
    pub tail: String,
    /// The file that keeps the lines the driver returned (mode 0600), when the engine has
    /// an evidence directory and could write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Self {
        Failure {
            kind: e.kind,
            message: e.report(),
            subject: e.subject.clone(),
            evidence: Vec::new(),
            nothing_changed: e.nothing_changed,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
