//! What makes a backup of this database impossible to restore as the configured user,
//! found before anything is stored or stopped: the checks `cutover check` and `plan` list
//! and every backup makes (a backup that could not be restored is refused).
//!
//! - `restore`: how a restore would replace the data ([`Replacement`]), and on
//!   PostgreSQL in place, whether its one transaction fits the server's lock table.
//! - `ownership` (PostgreSQL): every object a dump holds is the user's, or it is a
//!   superuser.
//! - `row security` (PostgreSQL): no table forces row-level security on its owner, which
//!   `pg_dump` cannot read whole.
//! - `definers` (MySQL/MariaDB): every `DEFINER` of a view, routine, trigger or event is
//!   the user, or it may set another (`SUPER`, `SET USER`).
//! - `history` (MariaDB): every system-versioned table's history can be dumped.

use crate::database::{Conn, Database};
use crate::manifest::DatabaseEngine;
use crate::restore::{Replacement, replacement};
use cutover_core::check::Check;
use cutover_core::{Error, ErrorKind, Result};

/// The checks, each with what it found.
pub(crate) async fn checks(database: &Database, conn: &mut Conn) -> Vec<Check> {
    let how = replacement(database).await;
    // An admin account loads beside the database and keeps the dump's owners and
    // definers: what it may do counts, not the application user's.
    let admin = database
        .admin()
        .filter(|_| matches!(how, Ok(Replacement::Swap)));
    let mut checks = vec![Check::of("restore", restore_mode(how, conn).await)];
    match database.engine() {
        DatabaseEngine::Postgres => {
            checks.push(Check::of(
                "ownership",
                match &admin {
                    Some(admin) => Ok(format!(
                        "a restore keeps every owner, as the superuser {}",
                        admin.user()
                    )),
                    None => owned_by_the_user(conn, database.user()).await,
                },
            ));
            checks.push(Check::of(
                "row security",
                row_security(conn, database.user()).await,
            ));
        }
        _ => {
            let found = match &admin {
                Some(admin) => match admin.connect_server().await {
                    Ok(mut server) => {
                        let all = conn.definers().await;
                        let found = match all {
                            Ok(all) => definers_of(&mut server, admin.user(), all).await,
                            Err(e) => Err(e),
                        };
                        server.close().await;
                        found
                    }
                    Err(e) => Err(e),
                },
                None => definers(conn, database.user()).await,
            };
            checks.push(Check::of("definers", found));
            checks.push(Check::of("history", history(conn).await));
        }
    }
    checks
}

/// The first failed check's error: what a backup refuses.
pub(crate) async fn refusal(database: &Database, conn: &mut Conn) -> Result<()> {
    cutover_core::check::first_failure(checks(database, conn).await)
}

/// How a restore would replace the data; in place on PostgreSQL, whether it fits the
/// lock table.
async fn restore_mode(how: Result<Replacement>, conn: &mut Conn) -> Result<String> {
    let how = how?;
    if let (Replacement::InPlace { why }, Some(c)) = (&how, conn.postgres()) {
        let (relations, slots): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_class c
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                       AND n.nspname NOT LIKE 'pg\\_temp\\_%'
                       AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'),
                    current_setting('max_locks_per_transaction')::int8
                      * (current_setting('max_connections')::int8
                         + current_setting('max_prepared_transactions')::int8)",
        )
        .fetch_one(c)
        .await
        .map_err(|e| {
            Error::new(ErrorKind::Unavailable, "cannot read the lock settings").with_source(e)
        })?;
        // The emptying locks every relation and the restore every relation it creates,
        // all in one transaction; other sessions need slots too.
        let needed = 2 * relations + 64;
        if needed > slots {
            let per = (needed as f64 / slots as f64 * 64.0).ceil() as i64;
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "a backup of this database could not be restored: a restore in place runs in one transaction, which locks each of the database's {relations} tables, indexes and sequences twice (about {needed} locks), and this server's lock table holds {slots} (max_locks_per_transaction × (max_connections + max_prepared_transactions)). Restore beside the database instead — it is in place because {why} — or raise max_locks_per_transaction to at least {per} (a server restart)",
                ),
            ));
        }
        return Ok(format!(
            "{}; one transaction takes about {needed} of the server's {slots} locks",
            how.describe()
        ));
    }
    // The server's free disk cannot be read over SQL: say what the second copy needs.
    match conn.size().await {
        Ok(size) if how == Replacement::Swap => Ok(format!(
            "{} (about {} now)",
            how.describe(),
            cutover_core::event::human_bytes(size)
        )),
        _ => Ok(how.describe()),
    }
}

/// PostgreSQL: that a restore as this user can replace every object the dump holds, none
/// of which may belong to another role (unless the user is a superuser). Refused
/// otherwise, naming the objects, their owners and the ways out.
async fn owned_by_the_user(conn: &mut Conn, user: &str) -> Result<String> {
    let (named, total) = conn.foreign_owned().await?;
    if named.is_empty() {
        return Ok(format!(
            "{user} owns every object a dump holds, or is a superuser"
        ));
    }
    let more = if total > named.len() as i64 {
        format!(" and {} more", total - named.len() as i64)
    } else {
        String::new()
    };
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "a backup of this database could not be restored as {user}: {}{more} belong to other roles, and a restore can only replace what {user} owns (it would stop at the first of them and roll back). Make {user} their owner (ALTER … OWNER TO {user}, or REASSIGN OWNED BY <role> TO {user} for all of a role's), or connect as a superuser",
            named.join(", ")
        ),
    ))
}

/// PostgreSQL: tables whose row-level security applies to their owner (`FORCE ROW LEVEL
/// SECURITY`), which `pg_dump` refuses to read partially as a user that cannot bypass it.
async fn row_security(conn: &mut Conn, user: &str) -> Result<String> {
    let Some(c) = conn.postgres() else {
        return Ok(String::new());
    };
    let forced: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(c.oid::regclass::text, ', ' ORDER BY 1)
         FROM pg_catalog.pg_class c, pg_catalog.pg_roles r
         WHERE r.rolname = current_user AND NOT (r.rolsuper OR r.rolbypassrls)
           AND c.relrowsecurity AND c.relforcerowsecurity",
    )
    .fetch_one(c)
    .await
    .map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            "cannot read the tables' row security",
        )
        .with_source(e)
    })?;
    match forced {
        None => Ok(format!("{user} reads every row of every table")),
        Some(tables) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "a backup of this database cannot be taken as {user}: tables {tables} force row-level security on their owner, so pg_dump cannot read all their rows. ALTER TABLE … NO FORCE ROW LEVEL SECURITY, or ALTER ROLE {user} BYPASSRLS (as a superuser)"
            ),
        )),
    }
}

/// MariaDB: that every system-versioned table's history can be dumped (timestamp-based
/// versioning; `mariadb-dump --dump-history` cannot read transaction-precise history).
async fn history(conn: &mut Conn) -> Result<String> {
    let tables = conn.versioned_tables().await?;
    let precise: Vec<&str> = tables
        .iter()
        .filter(|(_, trx)| *trx)
        .map(|(t, _)| t.as_str())
        .collect();
    if !precise.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "a backup of this database would lose the history of system-versioned tables {}: their versioning is transaction-precise, and mariadb-dump dumps only timestamp-based history. Version them by timestamp (ALTER TABLE … with ROW START/ROW END columns of type TIMESTAMP(6)), or drop their versioning",
                precise.join(", ")
            ),
        ));
    }
    Ok(if tables.is_empty() {
        "no system-versioned table".into()
    } else {
        format!(
            "{} system-versioned tables, dumped with their history",
            tables.len()
        )
    })
}

/// MySQL/MariaDB: that the user may create every view, routine, trigger and event again
/// with its `DEFINER`.
async fn definers(conn: &mut Conn, user: &str) -> Result<String> {
    let all = conn.definers().await?;
    definers_of(conn, user, all).await
}

/// Whether `user`, connected as `conn`, may create objects with each of `all` as
/// definer.
async fn definers_of(conn: &mut Conn, user: &str, all: Vec<String>) -> Result<String> {
    let foreign = conn.foreign_definers(&all).await?;
    if foreign.is_empty() {
        return Ok(if all.is_empty() {
            "no view, routine, trigger or event names a definer".into()
        } else {
            format!("{user} may define objects as {}", all.join(", "))
        });
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "a backup of this database could not be restored as {user}: its views, routines, triggers or events are defined by {}, and {user} may only create objects defined by itself without the SUPER or SET USER privilege. GRANT SET USER ON *.* TO {user}, or change their DEFINER",
            foreign.join(", ")
        ),
    ))
}
