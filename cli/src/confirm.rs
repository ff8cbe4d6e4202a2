//! The question `restore` and `rollback` ask before they replace data: which backup comes
//! back (when it was taken, how long ago), which runs of the target came since, and that
//! every write made since is thrown away.
//!
//! Only a person at a terminal is asked: standard input and standard error are terminals
//! and the output is for people. Scripts (no terminal, or `--output json`) pass `--yes`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, UNIX_EPOCH};

use cutover_core::journal::{RunHeader, now_ms};
use cutover_core::{
    BackupId, BackupRef, Engine, Error, ErrorKind, Plan, Result, RunKind, Snapshot,
};

use crate::commands::status_name;
use crate::render::Output;

/// How many runs the question lists; the rest are counted.
const RUNS_SHOWN: usize = 5;

/// How far back the journal is read for runs since the backup.
const RUNS_READ: u32 = 1000;

/// Why nobody can be asked, or `None` when someone can.
pub fn cannot_ask(output: Output) -> Option<&'static str> {
    if output == Output::Json {
        return Some("--output json is for scripts, which never get a question");
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Some(
            "there is no terminal to ask on (standard input and standard error are not both terminals)",
        );
    }
    None
}

/// Prints `question` on standard error and reads one line from standard input: `true`
/// only for `yes` or `y` (any case). End of input is a no.
pub async fn ask(question: String) -> Result<bool> {
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut err = std::io::stderr().lock();
        write!(err, "{question}")?;
        err.flush()?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line)
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Other, "the question was interrupted").with_source(e))?
    .map_err(|e| Error::new(ErrorKind::Other, "cannot read the answer").with_source(e))?;
    let answer = answer.trim().to_ascii_lowercase();
    Ok(answer == "yes" || answer == "y")
}

/// The question before `cutover restore ID`. A backup the store does not list is
/// `NotFound`: the restore would refuse it anyway.
pub async fn restore(
    engine: &Engine,
    id: &BackupId,
    safety: bool,
    paths: &[String],
) -> Result<String> {
    let target = &engine.settings().target;
    let taken = Taken::find(engine, id).await?;
    let mut out = format!(
        "`cutover restore` replaces the data of {target} with backup {id},\n{}.\n",
        taken.describe()
    );
    if let Some(at) = taken.at_ms {
        out.push_str(&runs_since(engine, at, Some(id)).await?);
    }
    out.push_str(&thrown_away(taken.at_ms, paths));
    out.push_str(&kept_aside(safety, true));
    out.push_str(
        "The application is stopped meanwhile and started again on the image it runs now.\n",
    );
    out.push_str("Restore this backup? Type yes to go on, anything else to stop: ");
    Ok(out)
}

/// The question before `cutover rollback`: what the rollback plan (`snapshot` and
/// `backup` from `Engine::rollback_plan`) brings back, and from when.
pub async fn rollback(
    engine: &Engine,
    snapshot: &Snapshot,
    backup: Option<&BackupRef>,
    safety: bool,
    paths: &[String],
) -> Result<String> {
    let target = &engine.settings().target;
    let upgrade = undone_upgrade(engine, snapshot, backup).await?;
    let mut out = String::from("`cutover rollback` undoes ");
    match &upgrade {
        Some(u) => {
            let to = match &u.plan {
                Plan::Upgrade { to, .. } => format!(" to {to}"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "the upgrade of {target}{to} (run {}, started {}, {}):\n",
                u.id,
                utc(u.started_ms),
                ago(u.started_ms, now_ms())
            ));
        }
        // Not expected: the plan came from the same journal entries.
        None => out.push_str(&format!(
            "an upgrade of {target} recorded in the journal:\n"
        )),
    }
    out.push_str(&format!(
        "it brings back {} with {} replica(s)",
        snapshot.image, snapshot.replicas
    ));
    let since = match backup {
        Some(b) => {
            let taken = Taken::find(engine, &b.id).await?;
            out.push_str(&format!(
                " and restores backup {},\n{}.\n",
                b.id,
                taken.describe()
            ));
            taken.at_ms
        }
        None => {
            out.push_str(
                ".\nThat upgrade took no backup (--backup skip), so NO DATA WILL BE RESTORED: the \
database stays as it is now, with what the new version migrated and wrote, and the old \
version must work with it.\n",
            );
            upgrade.as_ref().map(|u| u.started_ms)
        }
    };
    if let Some(at) = since {
        out.push_str(&runs_since(engine, at, backup.map(|b| &b.id)).await?);
    }
    if backup.is_some() {
        out.push_str(&thrown_away(since, paths));
        out.push_str(&kept_aside(safety, false));
    }
    out.push_str("Roll back? Type yes to go on, anything else to stop: ");
    Ok(out)
}

/// When a backup was taken: the store's manifest, or else when the run that took it
/// journaled it.
struct Taken {
    at_ms: Option<u64>,
    /// The image that was running, from the manifest.
    image: Option<String>,
    /// Why the time is unknown or came from the journal.
    note: Option<String>,
}

impl Taken {
    async fn find(engine: &Engine, id: &BackupId) -> Result<Taken> {
        let listed = match engine.backups().list().await {
            Ok(list) => {
                let Some(found) = list.into_iter().find(|b| &b.id == id) else {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "no backup {id} in the store (see `cutover backups list`); nothing was done"
                        ),
                    ));
                };
                let at_ms = humantime::parse_rfc3339_weak(&found.created)
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64);
                if at_ms.is_some() {
                    return Ok(Taken {
                        at_ms,
                        image: Some(found.image).filter(|i| !i.is_empty()),
                        note: None,
                    });
                }
                None
            }
            Err(e) => Some(e),
        };
        let journaled = journaled_at(engine, id).await?;
        let note = match (&listed, journaled) {
            (Some(e), Some(_)) => format!(
                "time from the journal: the store's list failed: {}",
                e.report()
            ),
            (Some(e), None) => format!(
                "when is unknown: the store's list failed ({}) and the journal does not record it",
                e.report()
            ),
            (None, Some(_)) => "time from the journal".to_string(),
            (None, None) => "when is unknown: neither the store nor the journal says".to_string(),
        };
        Ok(Taken {
            at_ms: journaled,
            image: None,
            note: Some(note),
        })
    }

    /// "taken 2026-11-30 14:02 UTC, 3 h ago (while … ran)".
    fn describe(&self) -> String {
        let mut out = match self.at_ms {
            Some(at) => format!("taken {}, {}", utc(at), ago(at, now_ms())),
            None => "taken at an unknown time".to_string(),
        };
        let mut notes = Vec::new();
        if let Some(image) = &self.image {
            notes.push(format!("while {image} ran"));
        }
        if let Some(note) = &self.note {
            notes.push(note.clone());
        }
        if !notes.is_empty() {
            out.push_str(&format!(" ({})", notes.join("; ")));
        }
        out
    }
}

/// When the run that took backup `id` finished its backup step, from the journal.
async fn journaled_at(engine: &Engine, id: &BackupId) -> Result<Option<u64>> {
    for header in engine.runs(RUNS_READ).await? {
        if header
            .report
            .as_ref()
            .and_then(|r| r.backup.as_ref())
            .is_none_or(|b| &b.id != id)
        {
            continue;
        }
        if let Some(record) = engine.run(&header.id).await?
            && let Some((_, at)) = record.backup_taken()
        {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

/// The upgrade a rollback to `snapshot` and `backup` undoes: the newest upgrade that
/// journaled both (as `Engine::rollback_plan` chose it).
async fn undone_upgrade(
    engine: &Engine,
    snapshot: &Snapshot,
    backup: Option<&BackupRef>,
) -> Result<Option<RunHeader>> {
    for header in engine.runs(RUNS_READ).await? {
        if header.kind() != RunKind::Upgrade {
            continue;
        }
        let Some(record) = engine.run(&header.id).await? else {
            continue;
        };
        if record.snapshot_taken() == Some(snapshot)
            && record.backup_taken().map(|(b, _)| b) == backup
        {
            return Ok(Some(header));
        }
    }
    Ok(None)
}

/// The runs of the target that ended at or after `since_ms` (or have not ended), oldest
/// first, without the `backup` run that took `backup` itself.
async fn runs_since(engine: &Engine, since_ms: u64, backup: Option<&BackupId>) -> Result<String> {
    let headers = engine.runs(RUNS_READ).await?;
    // Newest first: once the oldest run read ended before the backup, none is missing.
    let all_read = headers.len() < RUNS_READ as usize
        || headers
            .last()
            .is_some_and(|h| h.ended_ms.is_some_and(|end| end < since_ms));
    let mut since: Vec<RunHeader> = headers
        .into_iter()
        .filter(|h| h.ended_ms.is_none_or(|end| end >= since_ms))
        .filter(|h| {
            let took = h.report.as_ref().and_then(|r| r.backup.as_ref());
            let is_the_taking =
                h.kind() == RunKind::Backup && backup.is_some() && took.map(|b| &b.id) == backup;
            !is_the_taking
        })
        .collect();
    since.reverse();
    Ok(list_runs(&engine.settings().target, &since, all_read))
}

/// The runs as lines, at most [`RUNS_SHOWN`] of them, then how many more.
fn list_runs(target: &str, runs: &[RunHeader], all_read: bool) -> String {
    if runs.is_empty() {
        return format!("No run of {target} since then.\n");
    }
    let mut out = format!("Runs of {target} since then:\n");
    for h in runs.iter().take(RUNS_SHOWN) {
        let to = match &h.plan {
            Plan::Upgrade { to, .. } => format!("  to {to}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {}  {:<8} {}{to}\n",
            utc(h.started_ms),
            h.kind().as_str(),
            status_name(h.status),
        ));
    }
    if runs.len() > RUNS_SHOWN {
        let more = runs.len() - RUNS_SHOWN;
        let at_least = if all_read { "" } else { "at least " };
        out.push_str(&format!(
            "  and {at_least}{more} more (`cutover history` lists them)\n"
        ));
    }
    out
}

/// Whether the data being replaced is kept: the safety backup, or its absence.
/// `restore`: the run is a restore (whose failure puts the safety backup back).
fn kept_aside(safety: bool, restore: bool) -> String {
    match (safety, restore) {
        (true, true) => {
            "First, after the stop, a safety backup of the data as it is now is taken: \
`cutover restore` of it undoes this, and a restore that fails midway is put back from it.\n"
                .to_string()
        }
        (true, false) => {
            "First, after the stop, a safety backup of the data as it is now is taken: \
`cutover restore` of it brings that data back.\n"
                .to_string()
        }
        (false, _) => {
            "NO safety backup is taken (--no-safety-backup): what is thrown away is gone.\n"
                .to_string()
        }
    }
}

/// What replacing the data throws away.
fn thrown_away(since_ms: Option<u64>, paths: &[String]) -> String {
    let since = since_ms.map_or_else(|| "that backup".to_string(), utc);
    let mut out = format!("Every write made to the database since {since} is thrown away");
    if !paths.is_empty() {
        out.push_str(&format!(
            ", and the files under {} go back to that time too",
            paths.join(", ")
        ));
    }
    out.push_str(".\n");
    out
}

/// Milliseconds since the epoch as `2026-11-30 14:02 UTC`.
fn utc(ms: u64) -> String {
    let stamp =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string();
    // `2026-11-30T14:02:05Z`
    format!("{} {} UTC", &stamp[..10], &stamp[11..16])
}

/// How long before `now_ms` the time `ms` was, roughly: `40 s ago`, `12 min ago`,
/// `3 h ago`, `5 days ago`.
fn ago(ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(ms) / 1000;
    match s {
        0 => "just now".to_string(),
        1..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::journal::RunStatus;
    use cutover_core::{BackupMode, Outcome};

    fn ms(rfc3339: &str) -> u64 {
        let t = humantime::parse_rfc3339(rfc3339).unwrap();
        t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
    }

    #[test]
    fn times_read_as_utc_minutes_and_a_rough_age() {
        let at = ms("2026-11-30T14:02:59Z");
        assert_eq!(utc(at), "2026-11-30 14:02 UTC");
        assert_eq!(ago(at, at), "just now");
        assert_eq!(ago(at, at + 42_000), "42 s ago");
        assert_eq!(ago(at, at + 12 * 60_000 + 5_000), "12 min ago");
        assert_eq!(ago(at, at + 3 * 3_600_000 + 59 * 60_000), "3 h ago");
        assert_eq!(ago(at, at + 47 * 3_600_000), "47 h ago");
        assert_eq!(ago(at, at + 5 * 86_400_000), "5 days ago");
        // A clock behind the backup's does not make it "in the future".
        assert_eq!(ago(at, at - 10_000), "just now");
    }

    fn header(n: u64, kind: RunKind) -> RunHeader {
        let (plan, outcome) = match kind {
            RunKind::Upgrade => (
                Plan::Upgrade {
                    to: "registry.example.com/apidog/server:v2.7.81"
                        .parse()
                        .unwrap(),
                    backup: BackupMode::Offline,
                    replicas: None,
                    allow_downgrade: false,
                    hooks: Default::default(),
                },
                Outcome::Upgraded,
            ),
            _ => (Plan::Backup, Outcome::BackedUp),
        };
        RunHeader {
            id: format!("run{n}"),
            target: "apidog".into(),
            plan,
            started_ms: ms("2026-11-30T14:00:00Z") + n * 60_000,
            host: "h".into(),
            pid: 1,
            status: RunStatus::Stopped(outcome),
            ended_ms: None,
            report: None,
        }
    }

    #[test]
    fn a_handful_of_runs_is_listed_and_the_rest_counted() {
        assert_eq!(
            list_runs("apidog", &[], true),
            "No run of apidog since then.\n"
        );
        let runs: Vec<_> = (0..8)
            .map(|n| {
                header(
                    n,
                    if n == 0 {
                        RunKind::Upgrade
                    } else {
                        RunKind::Backup
                    },
                )
            })
            .collect();
        let text = list_runs("apidog", &runs, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Runs of apidog since then:");
        assert_eq!(
            lines[1],
            "  2026-11-30 14:00 UTC  upgrade  upgraded  to registry.example.com/apidog/server:v2.7.81"
        );
        assert_eq!(lines[2], "  2026-11-30 14:01 UTC  backup   backed_up");
        assert_eq!(lines.len(), 1 + RUNS_SHOWN + 1, "{text}");
        assert_eq!(lines[6], "  and 3 more (`cutover history` lists them)");
        let partial = list_runs("apidog", &runs, false);
        assert!(partial.contains("and at least 3 more"), "{partial}");
    }

    #[test]
    fn what_is_thrown_away_names_the_time_and_the_files() {
        let at = ms("2026-11-30T14:02:00Z");
        assert_eq!(
            thrown_away(Some(at), &[]),
            "Every write made to the database since 2026-11-30 14:02 UTC is thrown away.\n"
        );
        assert_eq!(
            thrown_away(None, &["/data/storage".into()]),
            "Every write made to the database since that backup is thrown away, and the files under /data/storage go back to that time too.\n"
        );
    }
}
