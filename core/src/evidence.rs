//! Evidence of a failed release: the last lines its instances printed, captured when a
//! step that starts or awaits them fails, before the rollback removes them.
//!
//! # Flow
//! 1. A `start_leader`, `await_leader`, `scale_out` or `await_all` step fails — a crash,
//!    a health deadline, a digest mismatch, also a cancellation (the operator may have
//!    given up on a hung start-up) or `resume --rollback` of a run interrupted there —:
//!    the engine observes the deployment and picks the instances of the new release's
//!    repository and tag, those not running and ready first, at most [`MAX_INSTANCES`]
//!    ([`suspects`]).
//! 2. [`crate::Driver::logs`] reads each one's last [`TAIL_LINES`] lines, concurrently.
//! 3. With an evidence directory ([`crate::Settings::evidence_dir`]), the lines go to
//!    `DIR/RUN/INSTANCE.log`, mode 0600 in a 0700 directory.
//! 4. The failure of the step carries them ([`crate::InstanceLogs`]: the last
//!    [`TAIL_BYTES`] of the lines and the file's path), so the journal, the
//!    `step_failed` event and the run's report keep them.
//!
//! # Guarantees
//! - Best effort: a driver without the `logs` capability, a call that fails or exceeds
//!   the call timeout, a file that cannot be written is a `warning` event; the run's
//!   outcome and the failure's kind and message are unchanged.
//! - Only what the application printed is kept; cutover adds nothing of its own (no
//!   database password, no environment).
//! - Runs before the machine sees the failure, so before `rollback_stop`; a crash during
//!   the capture re-runs the step on `resume`, which fails again and captures again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::driver::{Driver, Instance, Observed};
use crate::error::InstanceLogs;
use crate::event::EventSink;
use crate::image::ImageRef;

/// How many lines are read from each failed instance.
pub const TAIL_LINES: usize = 200;

/// The most of those lines the journal and events keep (the end of them); the file keeps
/// all the driver returned.
pub const TAIL_BYTES: usize = 32 * 1024;

/// The most instances whose logs one failure keeps.
pub const MAX_INSTANCES: usize = 5;

/// The instances of `image`'s repository and tag worth reading: those not running and
/// ready first (they failed), then the others, at most [`MAX_INSTANCES`].
pub fn suspects<'a>(seen: &'a Observed, image: &ImageRef) -> Vec<&'a Instance> {
    let (mut failed, healthy): (Vec<&Instance>, Vec<&Instance>) = seen
        .instances
        .iter()
        .filter(|i| i.image.repository() == image.repository() && i.image.tag() == image.tag())
        .partition(|i| !(i.running && i.ready));
    failed.extend(healthy);
    failed.truncate(MAX_INSTANCES);
    failed
}

/// Reads the logs of the new release's `image` instances (see the module's flow). Every
/// problem is a warning on `events`; returns what could be read.
pub(crate) async fn capture(
    driver: &dyn Driver,
    image: &ImageRef,
    dir: Option<&Path>,
    run: &str,
    limit: Duration,
    events: &EventSink,
) -> Vec<InstanceLogs> {
    let kind = driver.info().kind;
    if !driver.capabilities().logs {
        events.warn(format!(
            "the {kind} driver cannot read instance logs, so the failed instances' output is not kept"
        ));
        return Vec::new();
    }
    let seen = match tokio::time::timeout(limit, driver.observe()).await {
        Ok(Ok(seen)) => seen,
        Ok(Err(e)) => {
            events.warn(format!(
                "could not find the failed instances to keep their logs: {}",
                e.report()
            ));
            return Vec::new();
        }
        Err(_) => {
            events.warn(format!(
                "could not find the failed instances to keep their logs: observe did not return within {}",
                humantime::format_duration(limit)
            ));
            return Vec::new();
        }
    };
    let reads = suspects(&seen, image)
        .into_iter()
        .map(|instance| async move {
            let read = tokio::time::timeout(limit, driver.logs(&instance.id, TAIL_LINES)).await;
            (instance, read)
        });
    let mut kept = Vec::new();
    for (instance, read) in futures_util::future::join_all(reads).await {
        let text = match read {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                events.warn(format!(
                    "could not read the logs of {}: {}",
                    instance.id,
                    e.report()
                ));
                continue;
            }
            Err(_) => {
                events.warn(format!(
                    "could not read the logs of {}: the {kind} driver's logs did not return within {}",
                    instance.id,
                    humantime::format_duration(limit)
                ));
                continue;
            }
        };
        let file = match dir {
            Some(dir) => match write(dir, run, &instance.id, &text).await {
                Ok(path) => Some(path.display().to_string()),
                Err(e) => {
                    events.warn(format!(
                        "could not keep the logs of {} in {}: {e}; they are in the journal only",
                        instance.id,
                        dir.display()
                    ));
                    None
                }
            },
            None => None,
        };
        kept.push(InstanceLogs {
            instance: instance.id.clone(),
            image: instance.image.to_string(),
            tail: tail(&text, TAIL_BYTES).to_string(),
            file,
        });
    }
    kept
}

/// The end of `text`, at most `bytes` long, starting at a line (or at least a character)
/// boundary.
pub fn tail(text: &str, bytes: usize) -> &str {
    if text.len() <= bytes {
        return text;
    }
    let mut start = text.len() - bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let rest = &text[start..];
    if text.as_bytes()[start - 1] == b'\n' {
        return rest;
    }
    match rest.find('\n') {
        Some(nl) if nl + 1 < rest.len() => &rest[nl + 1..],
        _ => rest,
    }
}

/// The file name for an instance id: characters outside `[A-Za-z0-9._-]` (the SSH
/// driver's `host/container`) become `_`, and no name starts with a dot.
pub fn file_name(instance: &str) -> String {
    let mut name: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    name.push_str(".log");
    name
}

/// Writes `text` to `dir/run/<instance>.log`, 0600 in 0700 directories, replacing an
/// earlier capture of the same run (a resumed step).
async fn write(dir: &Path, run: &str, instance: &str, text: &str) -> std::io::Result<PathBuf> {
    let folder = dir.join(file_name(run).trim_end_matches(".log"));
    let path = folder.join(file_name(instance));
    let text = text.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&folder)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        // `mode` is masked by the umask and ignored for an existing file.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        Ok(path)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_starts_at_a_line_and_keeps_the_end() {
        assert_eq!(tail("a\nb\nc\n", 100), "a\nb\nc\n");
        assert_eq!(tail("aaaa\nbb\ncc\n", 7), "bb\ncc\n");
        assert_eq!(tail("aaaa\nbb\ncc\n", 6), "bb\ncc\n");
        assert_eq!(tail("aaaa\nbb\ncc\n", 5), "cc\n");
        assert_eq!(tail("ééé", 3), "é");
    }

    #[test]
    fn file_names_stay_inside_the_run_directory() {
        assert_eq!(file_name("h1/app-1"), "h1_app-1.log");
        assert_eq!(file_name("../x"), "_.._x.log");
        assert_eq!(file_name(".hidden"), "_.hidden.log");
        assert_eq!(file_name(""), "_.log");
    }
}
