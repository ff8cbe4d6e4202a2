//! How runs and locks are written to and read from a SQL journal's rows: the encoding both
//! backends ([`super::SqliteJournal`], [`super::PgJournal`]) share, so a journal's content
//! means the same whichever database holds it.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{LockInfo, Record, RunHeader, RunStatus};
use crate::driver::Holder;
use crate::{Error, ErrorKind, Outcome, Result};

/// A record as the JSON text a row stores.
pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| {
        Error::new(ErrorKind::Journal, "cannot encode a journal record").with_source(e)
    })
}

/// A record from the JSON text of a row.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| {
        Error::new(
            ErrorKind::Journal,
            "cannot decode a journal record (written by a newer cutover?)",
        )
        .with_source(e)
    })
}

/// A run's `status` column.
pub(super) fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Stopped(o) => o.as_str(),
    }
}

pub(super) const OUTCOMES: [Outcome; 8] = [
    Outcome::Upgraded,
    Outcome::RolledBack,
    Outcome::Aborted,
    Outcome::BackedUp,
    Outcome::Restored,
    Outcome::Verified,
    Outcome::Pruned,
    Outcome::Failed,
];

/// A `status` column read back.
pub(super) fn parse_status(s: &str) -> RunStatus {
    OUTCOMES
        .into_iter()
        .find(|o| o.as_str() == s)
        .map_or(RunStatus::Running, RunStatus::Stopped)
}

/// A row of `locks`.
pub(super) fn lock_from_row<'r, R>(row: &'r R) -> Result<LockInfo>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(LockInfo {
        target: row.try_get("target")?,
        holder: Holder {
            run: row.try_get("run_id")?,
            host: row.try_get("host")?,
            pid: row.try_get::<i64, _>("pid")? as u32,
        },
        acquired_ms: row.try_get::<i64, _>("acquired_ms")? as u64,
        heartbeat_ms: row.try_get::<i64, _>("heartbeat_ms")? as u64,
    })
}

/// A row of `runs`.
pub(super) fn header_from_row<'r, R>(row: &'r R) -> Result<RunHeader>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let report: Option<String> = row.try_get("report")?;
    Ok(RunHeader {
        id: row.try_get("id")?,
        target: row.try_get("target")?,
        plan: from_json(&row.try_get::<String, _>("plan")?)?,
        started_ms: row.try_get::<i64, _>("started_ms")? as u64,
        host: row.try_get("host")?,
        pid: row.try_get::<i64, _>("pid")? as u32,
        status: parse_status(&row.try_get::<String, _>("status")?),
        ended_ms: row.try_get::<Option<i64>, _>("ended_ms")?.map(|v| v as u64),
        report: report.as_deref().map(from_json).transpose()?,
    })
}

/// A row of `entries` (`seq`, `at_ms`, `entry`).
pub(super) fn record_from_row<'r, R>(row: &'r R) -> Result<Record>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Record {
        seq: row.try_get::<i64, _>("seq")? as u32,
        at_ms: row.try_get::<i64, _>("at_ms")? as u64,
        entry: from_json(&row.try_get::<String, _>("entry")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_reads_back_as_stored() {
        // A missing name would read back as running: a verify or prune run that never ends.
        // The match stops compiling when an outcome is added: add it to both lists.
        let _exhaustive = |o: Outcome| match o {
            Outcome::Upgraded
            | Outcome::RolledBack
            | Outcome::Aborted
            | Outcome::BackedUp
            | Outcome::Restored
            | Outcome::Verified
            | Outcome::Pruned
            | Outcome::Failed => (),
        };
        let every = [
            Outcome::Upgraded,
            Outcome::RolledBack,
            Outcome::Aborted,
            Outcome::BackedUp,
            Outcome::Restored,
            Outcome::Verified,
            Outcome::Pruned,
            Outcome::Failed,
        ];
        for outcome in every {
            let status = RunStatus::Stopped(outcome);
            assert_eq!(parse_status(status_name(status)), status, "{outcome}");
        }
        assert_eq!(parse_status("running"), RunStatus::Running);
    }
}
