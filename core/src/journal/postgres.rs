//! The journal on PostgreSQL: the SQLite journal's contract and schema, shared by every
//! machine that reaches the server, so a second machine sees the lock, the history and
//! what `resume` continues.
//!
//! Lock changes (`begin`, `take_over`, `force_release`) run in one transaction holding
//! the target's transaction-level advisory lock, so two machines starting at the same
//! instant are serialised: one inserts the lock, the other reads it and is refused. The
//! schema's migrations are embedded (`core/migrations/postgres`) and applied by sqlx's
//! migrator, which takes its own advisory lock. The password comes from the caller (the
//! environment or a file), never from the URL.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Postgres, Transaction};

use super::rows::{header_from_row, lock_from_row, record_from_row, status_name, to_json};
use super::{Entry, Journal, LockInfo, RunHeader, RunRecord, RunStatus, lock_error, now_ms};
use crate::driver::Holder;
use crate::machine::Report;
use crate::{Error, ErrorKind, Result};

/// A [`Journal`] in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgJournal {
    pool: PgPool,
}

impl PgJournal {
    /// Connects to `url` (`postgres://user@host:port/database`, no password) with
    /// `password`, and applies the journal's migrations.
    ///
    /// # Errors
    /// `InvalidInput` for a URL that holds a password or is not a PostgreSQL URL;
    /// `Journal` when the server cannot be reached or the schema not applied.
    pub async fn connect(url: &str, password: Option<&str>) -> Result<Self> {
        let shown = url.split('?').next().unwrap_or(url);
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "postgres" | "postgresql"))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "journal url {shown:?} is not a postgres://user@host/database URL"
                ))
            })?;
        if parsed.password().is_some() {
            return Err(Error::invalid(
                "the journal's URL must not hold a password; set CUTOVER_JOURNAL__PASSWORD or [journal] password_file",
            ));
        }
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid(format!("journal url {shown:?}: {e}")))?
            .disable_statement_logging();
        if let Some(password) = password {
            options = options.password(password);
        }
        let journal_error = |what: &str, e: sqlx::Error| {
            Error::new(ErrorKind::Journal, format!("{what} the journal at {shown}")).with_source(e)
        };
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| journal_error("cannot connect to", e))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Journal,
                    format!("cannot apply the journal's schema at {shown}"),
                )
                .with_source(e)
            })?;
        Ok(Self { pool })
    }
}

/// Holds `target`'s advisory lock until the transaction ends.
async fn target_lock(tx: &mut Transaction<'_, Postgres>, target: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("cutover journal lock {target}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const SELECT_LOCK: &str =
    "SELECT target, run_id, host, pid, acquired_ms, heartbeat_ms FROM locks WHERE target = $1";

#[async_trait]
impl Journal for PgJournal {
    async fn begin(
        &self,
        header: &RunHeader,
        holder: &Holder,
        stale_after: Duration,
    ) -> Result<()> {
        // The target's advisory lock makes the check and the insert one step against
        // every other machine sharing the journal.
        let mut tx = self.pool.begin().await?;
        target_lock(&mut tx, &header.target).await?;
        if let Some(row) = sqlx::query(SELECT_LOCK)
            .bind(&header.target)
            .fetch_optional(&mut *tx)
            .await?
        {
            let info = lock_from_row(&row)?;
            return Err(lock_error(&info, stale_after));
        }
        let now = now_ms() as i64;
        sqlx::query(
            "INSERT INTO locks (target, run_id, host, pid, acquired_ms, heartbeat_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&header.target)
        .bind(&holder.run)
        .bind(&holder.host)
        .bind(holder.pid as i64)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO runs (id, target, kind, plan, started_ms, host, pid, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'running')",
        )
        .bind(&header.id)
        .bind(&header.target)
        .bind(header.kind().as_str())
        .bind(to_json(&header.plan)?)
        .bind(header.started_ms as i64)
        .bind(&header.host)
        .bind(header.pid as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_over(&self, target: &str, holder: &Holder, stale_after: Duration) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        target_lock(&mut tx, target).await?;
        let row = sqlx::query(SELECT_LOCK)
            .bind(target)
            .fetch_optional(&mut *tx)
            .await?;
        match row.map(|r| lock_from_row(&r)).transpose()? {
            Some(info) if info.holder.run != holder.run => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "{target} is locked by another run: {info}. Resume that run instead (`cutover resume {}`)",
                        info.holder.run
                    ),
                ));
            }
            Some(info) if info.holder != *holder && info.is_live(stale_after) => {
                return Err(lock_error(&info, stale_after));
            }
            _ => {}
        }
        let now = now_ms() as i64;
        sqlx::query(
            "INSERT INTO locks (target, run_id, host, pid, acquired_ms, heartbeat_ms) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (target) DO UPDATE SET host = excluded.host, pid = excluded.pid, heartbeat_ms = excluded.heartbeat_ms",
        )
        .bind(target)
        .bind(&holder.run)
        .bind(&holder.host)
        .bind(holder.pid as i64)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn heartbeat(&self, target: &str, holder: &Holder) -> Result<()> {
        sqlx::query(
            "UPDATE locks SET heartbeat_ms = $1 WHERE target = $2 AND run_id = $3 AND pid = $4",
        )
        .bind(now_ms() as i64)
        .bind(target)
        .bind(&holder.run)
        .bind(holder.pid as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release(&self, target: &str, run: &str) -> Result<()> {
        sqlx::query("DELETE FROM locks WHERE target = $1 AND run_id = $2")
            .bind(target)
            .bind(run)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn force_release(&self, target: &str) -> Result<Option<LockInfo>> {
        let mut tx = self.pool.begin().await?;
        target_lock(&mut tx, target).await?;
        let row = sqlx::query(SELECT_LOCK)
            .bind(target)
            .fetch_optional(&mut *tx)
            .await?;
        let info = row.map(|r| lock_from_row(&r)).transpose()?;
        sqlx::query("DELETE FROM locks WHERE target = $1")
            .bind(target)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn lock(&self, target: &str) -> Result<Option<LockInfo>> {
        let row = sqlx::query(SELECT_LOCK)
            .bind(target)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| lock_from_row(&r)).transpose()
    }

    async fn append(&self, run: &str, entry: &Entry) -> Result<()> {
        sqlx::query(
            "INSERT INTO entries (run_id, seq, at_ms, entry)
             VALUES ($1, (SELECT COALESCE(MAX(seq) + 1, 0) FROM entries WHERE run_id = $2), $3, $4)",
        )
        .bind(run)
        .bind(run)
        .bind(now_ms() as i64)
        .bind(to_json(entry)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn stop(&self, run: &str, report: &Report) -> Result<()> {
        let ended = report.outcome.is_terminal().then(|| now_ms() as i64);
        sqlx::query("UPDATE runs SET status = $1, ended_ms = $2, report = $3 WHERE id = $4")
            .bind(status_name(RunStatus::Stopped(report.outcome)))
            .bind(ended)
            .bind(to_json(report)?)
            .bind(run)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn run(&self, run: &str) -> Result<Option<RunRecord>> {
        let Some(row) = sqlx::query("SELECT * FROM runs WHERE id = $1")
            .bind(run)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let header = header_from_row(&row)?;
        let rows =
            sqlx::query("SELECT seq, at_ms, entry FROM entries WHERE run_id = $1 ORDER BY seq")
                .bind(run)
                .fetch_all(&self.pool)
                .await?;
        let records = rows
            .iter()
            .map(record_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RunRecord { header, records }))
    }

    async fn runs(&self, target: &str, limit: u32) -> Result<Vec<RunHeader>> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE target = $1 ORDER BY started_ms DESC, id DESC LIMIT $2",
        )
        .bind(target)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(header_from_row).collect()
    }
}
