//! kube's errors as cutover's: the driver, the operation, the object, and whether a retry
//! can help.

use cutover_core::{Error, ErrorKind};

/// The driver kind in every error and snapshot.
pub(crate) const KIND: &str = "kubernetes";

/// Maps a kube error of `operation` on `subject` (e.g. `deployment default/web`).
///
/// API statuses map by code (404 `NotFound`, 409 `Conflict`, 400/422 `InvalidInput`,
/// 401/403 `Unavailable` with a hint about credentials, 5xx `Unavailable`); transport
/// failures are `Unavailable` (retryable).
pub(crate) fn kube(operation: &str, subject: &str, e: kube::Error) -> Error {
    let (kind, message) = match &e {
        kube::Error::Api(status) => {
            let kind = match status.code {
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                400 | 422 => ErrorKind::InvalidInput,
                401 | 403 => ErrorKind::Unavailable,
                500..=599 => ErrorKind::Unavailable,
                _ => ErrorKind::Other,
            };
            let hint = if matches!(status.code, 401 | 403) {
                " (check the kubeconfig's credentials and that they may get, patch and watch this workload, its pods and leases)"
            } else {
                ""
            };
            (
                kind,
                format!(
                    "the API server answered {}: {}{hint}",
                    status.code, status.message
                ),
            )
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => (
            ErrorKind::Unavailable,
            "cannot reach the Kubernetes API server".to_string(),
        ),
        _ => (
            ErrorKind::Other,
            "the Kubernetes API request failed".to_string(),
        ),
    };
    driver(kind, operation, subject, message).with_source(e)
}

/// A driver error without a kube source.
pub(crate) fn driver(kind: ErrorKind, operation: &str, subject: &str, message: String) -> Error {
    Error::in_driver(KIND, kind, operation, subject, message)
}

/// Whether `e` is the API server's 409 (a stale resourceVersion or a taken name).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether `e` is the API server's 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
