//! The default journal: one SQLite file, WAL mode, `synchronous=FULL`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};

use super::rows::{header_from_row, lock_from_row, record_from_row, status_name, to_json};
use super::{Entry, Journal, LockInfo, RunHeader, RunRecord, RunStatus, lock_error, now_ms};
use crate::driver::Holder;
use crate::machine::Report;
use crate::{Error, ErrorKind, Result};

/// A [`Journal`] in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteJournal {
    pool: SqlitePool,
}

impl SqliteJournal {
    /// Opens (creating if missing) the journal at `path` and applies its migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::new(
                    ErrorKind::Journal,
                    format!("cannot create the journal directory {}", dir.display()),
                )
                .with_source(e)
            })?;
        }
        create_private(path).map_err(|e| {
            Error::new(
                ErrorKind::Journal,
                format!("cannot create the journal {}", path.display()),
            )
            .with_source(e)
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(options).await.map_err(|e| {
            Error::new(
                ErrorKind::Journal,
                format!("cannot open the journal {}", path.display()),
            )
            .with_source(e)
        })
    }

    /// Opens a journal from a `sqlite://PATH` URL.
    pub async fn open_url(url: &str) -> Result<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "journal url {url:?} is not a sqlite:// URL (set [journal] url)"
                ))
            })?;
        Self::open(path).await
    }

    /// An in-memory journal, for tests and dry runs.
    pub async fn in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self> {
        // sqlx logs a statement slower than a second (one waiting on another process's
        // write lock, under load) as a warning: not the operator's business.
        let options = options.disable_statement_logging();
        // Switching a new database to WAL needs an exclusive lock and SQLite answers
        // SQLITE_BUSY at once, without the busy handler, when another process is doing the
        // same: retry the connection like the migration below.
        let mut attempt = 0;
        let pool = loop {
            let connected = SqlitePoolOptions::new()
                // One connection serialises writers within the process; other processes are
                // serialised by SQLite's own locking (busy_timeout) and BEGIN IMMEDIATE.
                .max_connections(1)
                .connect_with(options.clone())
                .await;
            match connected {
                Ok(pool) => break pool,
                Err(sqlx::Error::Database(e))
                    if attempt < 20 && e.code().is_some_and(|c| c == "5" || c == "6") =>
                {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "journal busy while opening; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(25 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        // Two processes creating a new journal at once both see no migration applied and
        // both apply it; the loser fails. Running the migrator again then finds the
        // schema in place, so retry a few times before giving up.
        let migrator = sqlx::migrate!("./migrations/sqlite");
        let mut attempt = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "journal migration raced; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self { pool })
    }
}

/// Creates `path` empty with mode 0600, whatever the umask, unless it exists.
///
/// The journal names hosts, pids, images and backups: it is its owner's alone. SQLite
/// gives a database's `-wal` and `-shm` files the database file's mode, so creating that
/// file before SQLite does covers all three. An existing journal keeps the mode its owner
/// gave it (a team may share one through its group on purpose).
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // `mode` is masked by the umask; a umask like 0277 would leave it unwritable.
        Ok(file) => file.set_permissions(std::fs::Permissions::from_mode(0o600)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

const SELECT_LOCK: &str =
    "SELECT target, run_id, host, pid, acquired_ms, heartbeat_ms FROM locks WHERE target = ?";

#[async_trait]
impl Journal for SqliteJournal {
    async fn begin(
        &self,
        header: &RunHeader,
        holder: &Holder,
        stale_after: Duration,
    ) -> Result<()> {
        // IMMEDIATE takes the write lock up front, so the check and the insert are atomic
        // against other processes sharing the file.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
            "INSERT INTO locks (target, run_id, host, pid, acquired_ms, heartbeat_ms) VALUES (?, ?, ?, ?, ?, ?)",
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
            "INSERT INTO runs (id, target, kind, plan, started_ms, host, pid, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
            "INSERT INTO locks (target, run_id, host, pid, acquired_ms, heartbeat_ms) VALUES (?, ?, ?, ?, ?, ?)
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
            "UPDATE locks SET heartbeat_ms = ? WHERE target = ? AND run_id = ? AND pid = ?",
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
        sqlx::query("DELETE FROM locks WHERE target = ? AND run_id = ?")
            .bind(target)
            .bind(run)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn force_release(&self, target: &str) -> Result<Option<LockInfo>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(SELECT_LOCK)
            .bind(target)
            .fetch_optional(&mut *tx)
            .await?;
        let info = row.map(|r| lock_from_row(&r)).transpose()?;
        sqlx::query("DELETE FROM locks WHERE target = ?")
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
             VALUES (?, (SELECT COALESCE(MAX(seq) + 1, 0) FROM entries WHERE run_id = ?), ?, ?)",
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
        sqlx::query("UPDATE runs SET status = ?, ended_ms = ?, report = ? WHERE id = ?")
            .bind(status_name(RunStatus::Stopped(report.outcome)))
            .bind(ended)
            .bind(to_json(report)?)
            .bind(run)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn run(&self, run: &str) -> Result<Option<RunRecord>> {
        let Some(row) = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(run)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let header = header_from_row(&row)?;
        let rows =
            sqlx::query("SELECT seq, at_ms, entry FROM entries WHERE run_id = ? ORDER BY seq")
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
            "SELECT * FROM runs WHERE target = ? ORDER BY started_ms DESC, id DESC LIMIT ?",
        )
        .bind(target)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(header_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Entry, new_run_id};
    use crate::machine::{Plan, Step};

    fn header(id: &str) -> RunHeader {
        RunHeader {
            id: id.into(),
            target: "app".into(),
            plan: Plan::Backup,
            started_ms: now_ms(),
            host: crate::journal::this_host(),
            pid: std::process::id(),
            status: RunStatus::Running,
            ended_ms: None,
            report: None,
        }
    }

    fn holder(run: &str, pid: u32) -> Holder {
        Holder {
            run: run.into(),
            host: "elsewhere".into(),
            pid,
        }
    }

    const LIVE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn the_journal_contract_holds_on_sqlite() {
        use crate::testkit::journal as contract;
        let j = SqliteJournal::in_memory().await.unwrap();
        contract::a_live_holder_locks_out_a_second_run_and_a_dead_one_asks_for_resume(&j, "a")
            .await;
        contract::take_over_is_only_for_the_same_run_and_a_dead_holder(&j, "b").await;
        contract::entries_come_back_in_order_and_runs_newest_first(&j, "c").await;
    }

    #[tokio::test]
    async fn entries_come_back_in_order_and_runs_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/journal.db");
        let j = SqliteJournal::open(&path).await.unwrap();
        let first = new_run_id();
        j.begin(&header(&first), &holder(&first, 1), LIVE)
            .await
            .unwrap();
        j.append(
            &first,
            &Entry::Started {
                step: Step::Preflight,
            },
        )
        .await
        .unwrap();
        j.append(&first, &Entry::Retried).await.unwrap();
        j.release("app", &first).await.unwrap();
        let mut second = header("zz-second");
        second.started_ms += 1;
        j.begin(&second, &holder("zz-second", 2), LIVE)
            .await
            .unwrap();
        drop(j);

        // Durable across connections.
        let j = SqliteJournal::open(&path).await.unwrap();
        let record = j.run(&first).await.unwrap().unwrap();
        let seqs: Vec<u32> = record.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 1]);
        assert_eq!(record.records[1].entry, Entry::Retried);
        let ids: Vec<String> = j
            .runs("app", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, ["zz-second".to_string(), first]);
        let mode = std::fs::metadata(&path).unwrap();
        assert!(mode.len() > 0);
    }

    #[tokio::test]
    async fn a_new_journal_and_its_wal_and_shm_files_are_created_0600() {
        use rustix::fs::Mode;
        use std::os::unix::fs::PermissionsExt;
        let mode_of = |path: &std::path::Path| {
            std::fs::metadata(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .permissions()
                .mode()
                & 0o777
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        // Under the usual umask SQLite creates its files 0644, readable by everyone.
        let umask = rustix::process::umask(Mode::from_raw_mode(0o022));
        let written = async {
            let j = SqliteJournal::open(&path).await?;
            j.begin(&header("r1"), &holder("r1", 1), LIVE).await?;
            Ok::<_, Error>(j)
        }
        .await;
        rustix::process::umask(umask);
        let j = written.unwrap();
        for name in ["journal.db", "journal.db-wal", "journal.db-shm"] {
            let mode = mode_of(&dir.path().join(name));
            assert_eq!(mode, 0o600, "{name} is {mode:o}");
        }
        drop(j);

        // An existing journal keeps the mode its owner gave it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        SqliteJournal::open(&path).await.unwrap();
        assert_eq!(mode_of(&path), 0o640);
    }
}

#[cfg(test)]
mod concurrency {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_openers_of_a_new_journal_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqliteJournal::open(&path).await.map(|_| ()) })
            })
            .collect();
        for o in openers {
            o.await.unwrap().unwrap();
        }
    }
}
