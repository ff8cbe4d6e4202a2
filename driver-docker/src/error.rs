//! Docker's errors as cutover's: the driver, the operation, the container, and whether a
//! retry can help.

use bollard::errors::Error as DockerError;
use cutover_core::{Error, ErrorKind};

/// The driver kind in every error and snapshot.
pub(crate) const KIND: &str = "docker";

/// Maps a bollard error of `operation` on `subject` (a container, image or `""`).
///
/// Connection failures and timeouts are `Unavailable` (retryable); 404 is `NotFound`,
/// 409 `Conflict`, 400 `InvalidInput`; anything else `Other`.
pub(crate) fn docker(operation: &str, subject: &str, e: DockerError) -> Error {
    docker_with_hint(operation, subject, e, "")
}

/// [`docker`] with `hint` (what the failure leaves behind, what to do) after the engine's
/// message.
pub(crate) fn docker_with_hint(
    operation: &str,
    subject: &str,
    e: DockerError,
    hint: &str,
) -> Error {
    let (kind, mut message) = match &e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => (status_kind(*status_code), message.clone()),
        DockerError::DockerStreamError { error } => (stream_kind(error), error.clone()),
        DockerError::RequestTimeoutError => (
            ErrorKind::Unavailable,
            "the Docker engine did not answer in time".into(),
        ),
        DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::SocketNotFoundError(_) => (
            ErrorKind::Unavailable,
            "cannot reach the Docker engine".into(),
        ),
        _ => (ErrorKind::Other, "the Docker engine request failed".into()),
    };
    if !hint.is_empty() {
        message = format!("{message}; {hint}");
    }
    Error::in_driver(KIND, kind, operation, subject, message).with_source(e)
}

/// A driver error without a Docker source.
pub(crate) fn driver(kind: ErrorKind, operation: &str, subject: &str, message: String) -> Error {
    Error::in_driver(KIND, kind, operation, subject, message)
}

fn status_kind(status: u16) -> ErrorKind {
    match status {
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        400 => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    }
}

/// Errors inside a pull's progress stream carry only text; a missing tag reads
/// `manifest for … not found: manifest unknown` or `… not found`.
fn stream_kind(message: &str) -> ErrorKind {
    let m = message.to_ascii_lowercase();
    if m.contains("not found") || m.contains("manifest unknown") || m.contains("does not exist") {
        ErrorKind::NotFound
    } else {
        ErrorKind::Other
    }
}

/// Whether `e` is Docker's 404.
pub(crate) fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether `e` is Docker's 409 (a name in use, a container already stopped, …).
pub(crate) fn is_conflict(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// Whether `e` is Docker's 304 (already started or stopped).
pub(crate) fn is_not_modified(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}
