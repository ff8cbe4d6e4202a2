//! The SSH driver's errors as cutover's: the driver, the operation, the host, and whether a
//! retry can help. Errors of a host's Docker engine keep their kind and gain the host's
//! name.

use cutover_core::{Error, ErrorKind};

use crate::config::Host;

/// The driver kind in every error and snapshot.
pub(crate) const KIND: &str = "ssh";

/// A driver error without a source.
pub(crate) fn driver(kind: ErrorKind, operation: &str, subject: &str, message: String) -> Error {
    Error::in_driver(KIND, kind, operation, subject, message)
}

/// Another host's Docker error, with the host named first in the message.
pub(crate) fn on_host(host: &Host, operation: &str, e: Error) -> Error {
    let subject = match e.subject() {
        Some(s) if !s.is_empty() => format!("{}/{s}", host.name),
        _ => host.name.clone(),
    };
    let retryable = e.is_retryable();
    Error::new(
        e.kind(),
        format!("on host {}: {}", host.describe(), e.message()),
    )
    .with_driver(KIND)
    .with_operation(operation)
    .with_subject(subject)
    .retryable(retryable)
    .with_source(e)
}

/// An SSH failure reaching `host`.
///
/// A refused host key is permanent (`InvalidInput`): retrying cannot help and the
/// operator must check the key out of band. Everything else (connection refused, timeouts,
/// a dropped connection) is `Unavailable` and retryable. `jump` is what the connection
/// to the host's jump host logged, if any.
pub(crate) fn ssh(host: &Host, operation: &str, e: openssh::Error, jump: &str) -> Error {
    let mut text = chain(&e).trim().replace('\n', "; ");
    if !jump.is_empty() {
        text = format!("{text}; jump host: {}", jump.replace('\n', "; "));
    }
    let key_refused = [
        "Host key verification failed",
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        "host key for",
        "No matching host key",
    ]
    .iter()
    .any(|m| text.contains(m));
    let known = host
        .known_hosts
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.ssh/known_hosts".into());
    let whose = match &host.jump {
        Some(j) => format!("its host key (or that of its jump host {j})"),
        None => "its host key".to_string(),
    };
    let (kind, message) = if key_refused {
        (
            ErrorKind::InvalidInput,
            format!(
                "host {}: {whose} is not the one {known} lists (or is not listed): \
                 refused before anything was changed. Check the key out of band, then add it \
                 to {known} (`ssh-keyscan -p {} {}` shows what the host presents); \
                 `host_key_checking = \"accept-new\"` only accepts hosts not listed yet. ({text})",
                host.describe(),
                host.port,
                host.address,
            ),
        )
    } else {
        (
            ErrorKind::Unavailable,
            format!("host {} is unreachable over SSH: {text}", host.describe()),
        )
    };
    Error::new(kind, message)
        .with_driver(KIND)
        .with_operation(operation)
        .with_subject(host.name.clone())
}

/// An error and its sources on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(text.trim());
        }
        source = s.source();
    }
    out
}
