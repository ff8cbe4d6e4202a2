//! Replacing the live database with a backup's dump.
//!
//! # Beside, then swapped (the default)
//! 1. Leftovers of earlier restores of this database are dropped: a partial side database
//!    of a killed run, the database an earlier restore replaced (kept until the next
//!    restore starts, as retention).
//! 2. A new database beside the live one is created with the live one's properties and
//!    the dump is loaded into it.
//! 3. Its fingerprint is compared with the backup's.
//! 4. One atomic step swaps it in: PostgreSQL renames both databases in one transaction
//!    (`pg_swap`); MySQL/MariaDB moves every table in one `RENAME TABLE` statement and
//!    then recreates views, routines, triggers and events (`my_swap`). The replaced data
//!    is kept beside as `…_cutover_KEY_old`.
//!
//! # Guarantees
//! - Until the swap the live database is untouched: any failure before it — the server
//!   refusing a statement, a full disk, a killed tool, a fingerprint that differs — is
//!   reported with [`Error::nothing_changed`].
//! - The names beside are a function of the run and the backup (`key`), so a restore
//!   run again after a kill finds its own work: a side database not yet swapped is loaded
//!   again from scratch; a swap already made is finished, not repeated.
//! - Nothing is ever emptied before a complete, verified copy of the backup exists.
//!
//! # In place (where the server gives no right to create a database)
//! PostgreSQL empties and loads in one transaction (`pg_empty.sql`, then the script of
//! `pg_restore --use-list`, whose list leaves out what other roles own, see `pg_list`):
//! a failure rolls it back. MySQL/MariaDB drops and recreates the database with the
//! character set and collation of the backup, each statement one that can run again
//! after a kill (`DROP DATABASE IF EXISTS`, `CREATE DATABASE IF NOT EXISTS`, on a
//! connection that selects no database). [`replacement`] says which applies and why.

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::database::Database;
use crate::manifest::{DatabaseEngine, Manifest, PartKind};
use crate::pg_list::{Kept, leave_out};
use crate::pipeline::{Hashing, decompress};
use crate::store::Store;
use crate::{my_swap, pg_swap};
use cutover_core::driver::Driver;
use cutover_core::event::{EventSink, Unit};
use cutover_core::{BackupId, Error, ErrorKind, Result};

/// What the in-memory pipe between the decompressor and a tool holds at most.
const PIPE: usize = 256 * 1024;

/// How a restore replaces the live database, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replacement {
    /// Loaded into a new database beside the live one, checked there, swapped in by one
    /// atomic step.
    Swap,
    /// Emptied and loaded in place, because the server gives no right to work beside:
    /// `why` says what is missing.
    InPlace {
        /// What the user lacks, and how to give it.
        why: String,
    },
}

impl Replacement {
    /// One line for `cutover check` and `plan`.
    pub fn describe(&self) -> String {
        match self {
            Self::Swap => {
                "beside the live database, swapped in by one atomic step once verified; the server needs room for a second copy".into()
            }
            Self::InPlace { why } => format!(
                "in place (the live database is emptied, then loaded; a safety backup is taken first): {why}; an account that may create databases, as [database] admin_user, makes it work beside"
            ),
        }
    }
}

/// Which way a restore into `database` replaces its data.
pub async fn replacement(database: &Database) -> Result<Replacement> {
    match database.engine() {
        DatabaseEngine::Postgres => pg_swap::replacement(database).await,
        _ => my_swap::replacement(database).await,
    }
}

/// The names a restore keyed `key` uses beside the live database `live`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Beside {
    /// The live database.
    pub live: String,
    /// Where the backup is loaded.
    pub new: String,
    /// Where the replaced data is kept.
    pub old: String,
    /// What every name beside this live database starts with.
    prefix: String,
}

/// The longest database name of both engines (PostgreSQL's 63 bytes).
const NAME_MAX: usize = 63;
const KEY_LEN: usize = 6;

impl Beside {
    pub(crate) fn new(live: &str, key: &str) -> Self {
        // `{live}_cutover_{key}_new`, the live name cut to fit (names are ASCII).
        let room = NAME_MAX - "_cutover_".len() - KEY_LEN - "_new".len();
        let prefix = format!("{}_cutover_", &live[..live.len().min(room)]);
        Self {
            live: live.to_string(),
            new: format!("{prefix}{key}_new"),
            old: format!("{prefix}{key}_old"),
            prefix,
        }
    }

    /// Whether `name` is a database beside this live one of another restore (a side
    /// database or a replaced one).
    pub(crate) fn is_other(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(&self.prefix) else {
            return false;
        };
        let Some((key, kind)) = rest.split_once('_') else {
            return false;
        };
        key.len() == KEY_LEN
            && key.bytes().all(|b| b.is_ascii_hexdigit())
            && matches!(kind, "new" | "old")
            && name != self.new
            && name != self.old
    }

    /// The `LIKE` pattern that finds the names [`Beside::is_other`] then checks.
    pub(crate) fn like(&self) -> String {
        format!("{}%", self.prefix.replace('_', "\\_"))
    }
}

/// The key of the databases a restore of `backup` by run `run` makes beside the live one.
pub(crate) fn restore_key(run: &str, backup: &BackupId) -> String {
    let digest = Sha256::digest(format!("{run}\n{backup}").as_bytes());
    crate::pipeline::hex(&digest)[..KEY_LEN].to_string()
}

/// What a restore works with: the backup, where it is stored, the driver its tools may
/// run through, where progress goes, and the points a test may stop it at.
pub(crate) struct Job<'a> {
    pub store: &'a dyn Store,
    pub manifest: &'a Manifest,
    pub driver: &'a dyn Driver,
    pub events: &'a EventSink,
    pub points: &'a Checkpoints,
}

/// The named points of the restore path — between two statements that change
/// something — where a test stops it as a kill would: the hook is awaited there, and a
/// test that never lets it finish drops the restore mid-way, running none of its error
/// handling. Nothing is done at them unless a hook is set
/// ([`crate::DumpBackups::with_checkpoints`]).
#[derive(Clone, Default)]
pub struct Checkpoints(Option<CheckpointHook>);

/// What [`Checkpoints`] calls at each point, with the point's name.
pub type CheckpointHook = std::sync::Arc<
    dyn Fn(&'static str) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
>;

impl Checkpoints {
    /// Points that call `hook`.
    pub fn new(hook: CheckpointHook) -> Self {
        Self(Some(hook))
    }

    pub(crate) async fn at(&self, point: &'static str) {
        if let Some(hook) = &self.0 {
            hook(point).await;
        }
    }
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Checkpoints(hooked)"
        } else {
            "Checkpoints(none)"
        })
    }
}

/// Marks an error as one that left the live data as it was.
pub(crate) fn unchanged(e: Error) -> Error {
    e.with_nothing_changed()
}

/// Replaces the data of `database` with the backup's dump; `key` names what is made
/// beside it (see [`restore_key`]). Verifies the result against the backup's fingerprint
/// (a difference only warns when the backup was taken online under writes). `how` is
/// [`replacement`]'s answer for `database`.
pub(crate) async fn restore_database(
    database: &Database,
    job: &Job<'_>,
    key: &str,
    how: Replacement,
) -> Result<()> {
    match (&how, database.engine()) {
        (Replacement::Swap, DatabaseEngine::Postgres) => pg_swap::restore(database, job, key).await,
        (Replacement::Swap, _) => my_swap::restore(database, job, key).await,
        (Replacement::InPlace { why }, _) => {
            tracing::info!(why = %why, "restoring in place");
            in_place(database, job).await?;
            check_restored(database, job.manifest, job.events).await
        }
    }
}

/// Loads the backup's dump into `target`, a new and empty database.
///
/// PostgreSQL, as a user that is not a superuser: default privileges that other roles set
/// (`ALTER DEFAULT PRIVILEGES FOR ROLE dba …`) are left out, since only those roles may
/// set them; a restore beside the live database is chosen only where there are none
/// ([`replacement`]), so this matters to restore tests.
pub(crate) async fn load(target: &Database, job: &Job<'_>) -> Result<()> {
    match load_all(target, job).await {
        // A damaged part makes a tool fail before the stream's checksum is known: say
        // which it was.
        Err(e) if e.kind() != ErrorKind::Integrity => match damaged(job).await {
            Some(damage) => Err(damage),
            None => Err(e),
        },
        other => other,
    }
}

async fn load_all(target: &Database, job: &Job<'_>) -> Result<()> {
    if target.engine() != DatabaseEngine::Postgres {
        return load_with(target, &target.restore_argv(), job).await;
    }
    let mut conn = target.connect().await?;
    let superuser = conn.is_superuser().await?;
    let user = if superuser {
        None
    } else {
        Some(conn.kept_by_emptying().await?.user)
    };
    conn.close().await;
    let Some(user) = user else {
        return load_with(target, &target.load_argv(None), job).await;
    };
    let list = table_of_contents(target, job).await?;
    let (list, left_out) = leave_out(
        &list,
        &Kept {
            user,
            ..Kept::default()
        },
    );
    if left_out == 0 {
        return load_with(target, &target.load_argv(None), job).await;
    }
    let path = target.put_file(job.driver, list.into_bytes()).await?;
    let loaded = load_with(target, &target.load_argv(Some(&path)), job).await;
    target.remove_file(job.driver, &path).await;
    loaded
}

async fn load_with(target: &Database, argv: &[String], job: &Job<'_>) -> Result<()> {
    let (reader, feed) = open_dump(job.store, job.manifest, job.events).await?;
    let run = target.run_tool(job.driver, argv, Some(Box::pin(reader)), None);
    let (fed, status) = tokio::join!(feed, run);
    status
        .and_then(|status| target.check_exit(argv, &status, "restore"))
        .and(fed.map(|_| ()))
}

/// The error that the backup's database part is damaged, if it is (read whole).
async fn damaged(job: &Job<'_>) -> Option<Error> {
    let part = job
        .manifest
        .parts
        .iter()
        .find(|p| p.kind == PartKind::Database)?;
    let source = job.store.read(&job.manifest.id, &part.name).await.ok()?;
    let (bytes, sha) = crate::pipeline::hash(source).await.ok()?;
    part.damage(&job.manifest.id, bytes, &sha)
}

/// The backup's dump, decompressed: what a tool reads, and the future that feeds it.
async fn open_dump<'a>(
    store: &'a dyn Store,
    manifest: &'a Manifest,
    events: &'a EventSink,
) -> Result<(
    tokio::io::DuplexStream,
    impl Future<Output = Result<u64>> + 'a,
)> {
    let part = manifest
        .parts
        .iter()
        .find(|p| p.kind == PartKind::Database)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Integrity,
                format!("backup {} has no database part", manifest.id),
            )
        })?;
    let source = store.read(&manifest.id, &part.name).await?;
    // Checked on the way against the manifest: a damaged part fails the load.
    let (source, seen) = Hashing::new(source);
    let (reader, writer) = tokio::io::duplex(PIPE);
    let total = Some(part.raw_bytes);
    let feed = async move {
        let raw = decompress(source, writer, move |n| {
            events.progress(n, total, Unit::Bytes)
        })
        .await?;
        let (bytes, sha) = seen.digest();
        match part.damage(&manifest.id, bytes, &sha) {
            Some(damage) => Err(damage),
            None => Ok(raw),
        }
    };
    Ok((reader, feed))
}

/// Compares `database` with the backup's fingerprint; a difference only warns when the
/// backup was taken online while the data changed.
pub(crate) async fn check_restored(
    database: &Database,
    manifest: &Manifest,
    events: &EventSink,
) -> Result<()> {
    match compare(database, manifest).await {
        Err(e) if !manifest.fingerprint_exact => {
            events.warn(format!(
                "{} (the backup was taken online while the data changed)",
                e.message()
            ));
            Ok(())
        }
        other => other,
    }
}

/// Compares the definitions of `database` — column definitions, objects, counters — with
/// the backup's: after MariaDB's swap, whose tables moved whole from a side database
/// whose content was compared already.
pub(crate) async fn check_definitions(
    database: &Database,
    manifest: &Manifest,
    events: &EventSink,
) -> Result<()> {
    let mut conn = database.connect().await?;
    let now = conn.definitions().await;
    conn.close().await;
    let differences = manifest.fingerprint.definition_differences(&now?);
    if differences.is_empty() {
        return Ok(());
    }
    let e = Error::new(
        ErrorKind::Integrity,
        format!(
            "after restoring backup {} the definitions differ from the backup's: {}",
            manifest.id,
            differences.join(", ")
        ),
    );
    if manifest.fingerprint_exact {
        return Err(e);
    }
    events.warn(format!(
        "{} (the backup was taken online while the data changed)",
        e.message()
    ));
    Ok(())
}

/// Compares `database` with the backup's fingerprint.
pub(crate) async fn compare(database: &Database, manifest: &Manifest) -> Result<()> {
    let mut conn = database.connect().await?;
    let now = conn.fingerprint().await;
    conn.close().await;
    let differences = manifest.fingerprint.differences(&now?);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "after restoring backup {} the data differs from the backup: {}",
                manifest.id,
                differences.join(", ")
            ),
        ))
    }
}

/// The in-place restore: see the module's documentation.
async fn in_place(database: &Database, job: &Job<'_>) -> Result<()> {
    if database.engine() != DatabaseEngine::Postgres {
        my_swap::recreate(database, job).await?;
        return load(database, job).await;
    }
    let mut conn = database.connect().await.map_err(unchanged)?;
    let superuser = conn.is_superuser().await.map_err(unchanged)?;
    let kept = if superuser {
        None
    } else {
        Some(conn.kept_by_emptying().await.map_err(unchanged)?)
    };
    conn.close().await;
    // What the emptying keeps, and what only others may grant, is left out through
    // pg_restore's own table of contents (a superuser's restore leaves nothing out).
    let list = match &kept {
        Some(kept) => {
            let list = table_of_contents(database, job).await?;
            let (list, left_out) = leave_out(&list, kept);
            if left_out == 0 {
                None
            } else {
                tracing::info!(
                    left_out,
                    schemas = ?kept.schemas,
                    extensions = ?kept.extensions,
                    "the restore keeps what other roles own"
                );
                Some(
                    database
                        .put_file(job.driver, list.into_bytes())
                        .await
                        .map_err(unchanged)?,
                )
            }
        }
        None => None,
    };
    job.points.at("postgres: before the transaction").await;
    let restored = in_one_transaction(database, job, list.as_deref())
        .await
        .map_err(|e| {
            unchanged(Error::new(
                e.kind(),
                format!(
                    "{}; the restore ran in one transaction, which was rolled back: the database holds what it held before",
                    e.message()
                ),
            ))
        });
    if let Some(path) = &list {
        database.remove_file(job.driver, path).await;
    }
    restored
}

/// PostgreSQL: `BEGIN;`, the emptying, then the script of the archive (the entries of the
/// list file `list`, or all), run by `psql` stopping at the first error.
async fn in_one_transaction(database: &Database, job: &Job<'_>, list: Option<&str>) -> Result<()> {
    let (reader, feed) = open_dump(job.store, job.manifest, job.events).await?;
    let script_argv = database.script_argv(list);
    let argv = database.restore_argv();
    let (script, script_out) = tokio::io::duplex(PIPE);
    let prelude = format!("BEGIN;\n{}", Database::PG_EMPTY);
    let input = std::io::Cursor::new(prelude).chain(script);
    let translate = database.run_tool(
        job.driver,
        &script_argv,
        Some(Box::pin(reader)),
        Some(Box::pin(script_out)),
    );
    let run = database.run_tool(job.driver, &argv, Some(Box::pin(input)), None);
    let (fed, translated, status) = tokio::join!(feed, translate, run);
    database.check_exit(&argv, &status?, "restore")?;
    database.check_exit(&script_argv, &translated?, "restore")?;
    fed.map(|_| ())
}

/// PostgreSQL: the archive's table of contents, as `pg_restore --list` prints it.
async fn table_of_contents(database: &Database, job: &Job<'_>) -> Result<String> {
    let quiet = EventSink::discard();
    let (reader, feed) = open_dump(job.store, job.manifest, &quiet)
        .await
        .map_err(unchanged)?;
    let argv = database.list_argv();
    let (out, out_in) = tokio::io::duplex(PIPE);
    let run = database.run_tool(
        job.driver,
        &argv,
        Some(Box::pin(reader)),
        Some(Box::pin(out_in)),
    );
    let read = async {
        let mut text = String::new();
        tokio::io::BufReader::new(out)
            .read_to_string(&mut text)
            .await
            .map(|_| text)
    };
    // pg_restore stops reading once it has the table of contents: the feed then ends on
    // a closed pipe, which is no failure.
    let (_, status, text) = tokio::join!(feed, run, read);
    database
        .check_exit(&argv, &status.map_err(unchanged)?, "restore")
        .map_err(unchanged)?;
    text.map_err(|e| {
        unchanged(
            Error::new(
                ErrorKind::Other,
                "cannot read pg_restore's table of contents",
            )
            .with_source(e),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_beside_fit_the_engines_and_find_only_their_own_kind() {
        let b = Beside::new("apidog", "a1b2c3");
        assert_eq!(b.new, "apidog_cutover_a1b2c3_new");
        assert_eq!(b.old, "apidog_cutover_a1b2c3_old");
        assert!(b.is_other("apidog_cutover_000000_old"));
        assert!(b.is_other("apidog_cutover_ffffff_new"));
        assert!(!b.is_other(&b.new) && !b.is_other(&b.old));
        assert!(!b.is_other("apidog"));
        assert!(!b.is_other("apidog_cutover_a1b2c3_older"));
        assert!(!b.is_other("apidog_cutover_xyzxyz_old"));
        assert!(!b.is_other("apidog2_cutover_a1b2c3_old"));
        assert_eq!(b.like(), "apidog\\_cutover\\_%");

        let long = "x".repeat(63);
        let b = Beside::new(&long, "a1b2c3");
        assert_eq!(b.new.len(), NAME_MAX);
        assert!(b.new.ends_with("_cutover_a1b2c3_new"));

        let key = restore_key("20261208T000000Z-abcdef", &"b1".parse().unwrap());
        assert_eq!(key.len(), KEY_LEN);
        assert_eq!(
            key,
            restore_key("20261208T000000Z-abcdef", &"b1".parse().unwrap())
        );
        assert_ne!(
            key,
            restore_key("20261208T000000Z-abcdef", &"b2".parse().unwrap())
        );
    }
}
