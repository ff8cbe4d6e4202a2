//! MySQL/MariaDB: a restore beside the live database, swapped in by one `RENAME TABLE`.
//!
//! MySQL and MariaDB cannot rename a database, and `RENAME TABLE` moves tables but not
//! views, routines or events (they belong to the database), nor a table with triggers into
//! another database ("Trigger in wrong schema"). So the tables — the data — move in one
//! atomic statement, and the definitions are dropped just before and created just after
//! it from copies saved in the side database first, by a procedure that a kill can
//! interrupt anywhere and a second attempt finishes.
//!
//! # Steps
//! 1. Fresh: drop what earlier restores left beside the live database (see
//!    `restore::Beside`), create `…_new` with the live database's character set and
//!    collation, load the dump into it, compare its fingerprint with the backup's. Then,
//!    in one transaction, write the bookkeeping table `#cutover-swap` into it: its tables
//!    and the definitions of its routines, views, triggers and events (`SHOW CREATE …`,
//!    with the `sql_mode`, collation and time zone each was created under), and the state
//!    `prepared`. A kill before that commit leaves a side database without it, which the
//!    next attempt drops and loads again.
//! 2. Prepared: create `…_old`; drop the triggers of both databases' tables; then one
//!    statement, `RENAME TABLE live.t TO old.t, …, new.s TO live.s, …, new.#cutover-swap
//!    TO old.#cutover-swap`: every table of the live database moves out and every table
//!    of the backup moves in, or none does. Named foreign-key constraints are unique per
//!    database, so the replaced tables cannot stay in the live database under other names.
//! 3. Swapped (the bookkeeping table is in `…_old`): drop the live database's views,
//!    routines, events and triggers (those of the replaced data, and any a killed attempt
//!    of this step created), create the saved ones — routines, views (in rounds, a view may
//!    read another), triggers in their order, events — then mark the state `finished`.
//! 4. Finished: drop `…_new` (what is left there are its views, routines and events,
//!    which moved nowhere) and compare the live database's definitions with the backup's
//!    (its content moved whole from the side database, compared in step 1).
//!
//! # Guarantees
//! - Before step 2's drops the live database is untouched. Its triggers are dropped right
//!   before the rename, and the tables move atomically; from then on every attempt
//!   finishes the swap (step 3 is repeatable), never goes back.
//! - The replaced tables are kept in `…_old` (without their views, routines, triggers and
//!   events) until the next restore of this database starts.

use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::database::{Database, quote_my};
use crate::restore::{
    Beside, Job, Replacement, check_definitions, check_restored, load, unchanged,
};
use cutover_core::{Error, ErrorKind, Result};

/// The bookkeeping table's name: no application names a table so.
const BOOK: &str = "#cutover-swap";

/// Whether a restore into `database` can work beside it: the user may create and drop a
/// database of the names a restore uses (tried once with a name no restore uses).
pub(crate) async fn replacement(database: &Database) -> Result<Replacement> {
    let mut server = database.connect_server().await?;
    let c = server.mysql().expect("a MySQL connection").0;
    let probe = Beside::new(database.name(), "000000").new;
    let tried = async {
        exec(
            c,
            &format!("CREATE DATABASE IF NOT EXISTS {}", quote_my(&probe)),
        )
        .await?;
        exec(c, &format!("DROP DATABASE IF EXISTS {}", quote_my(&probe))).await
    }
    .await;
    server.close().await;
    Ok(match tried {
        Ok(()) => Replacement::Swap,
        Err(e) => Replacement::InPlace {
            why: format!(
                "{} may not create database {probe} ({}); GRANT ALL ON `{}`.* TO the user gives it the right",
                database.beside_as().user(),
                first_line(&e.to_string()),
                Beside::new(database.name(), "000000").like()
            ),
        },
    })
}

/// The in-place restore's first step: drop and create the database again, empty, with the
/// character set and collation it had (or the backup recorded). Each statement can run
/// again after a kill: the connection selects no database, the drop is `IF EXISTS`, the
/// create `IF NOT EXISTS`.
pub(crate) async fn recreate(database: &Database, job: &Job<'_>) -> Result<()> {
    let manifest = job.manifest;
    let mut server = database.connect_server().await.map_err(unchanged)?;
    let c = server.mysql().expect("a MySQL connection").0;
    let name = database.name();
    let (charset, collation) = charset_or_recorded(c, name, manifest)
        .await
        .map_err(unchanged)?;
    let quoted = quote_my(name);
    job.points.at("mariadb: before the drop").await;
    exec(c, &format!("DROP DATABASE IF EXISTS {quoted}"))
        .await
        .map_err(|e| unchanged(sql_error(format!("cannot drop database {name}"), e)))?;
    job.points.at("mariadb: dropped").await;
    exec(c, &create_database(&quoted, &charset, &collation))
        .await
        .map_err(|e| sql_error(format!("cannot create database {name} again"), e))?;
    job.points.at("mariadb: created again").await;
    server.close().await;
    Ok(())
}

/// The restore beside the live database and the swap; see the module's steps.
pub(crate) async fn restore(database: &Database, job: &Job<'_>, key: &str) -> Result<()> {
    let beside = Beside::new(database.name(), key);
    let mut server = database.connect_server().await.map_err(unchanged)?;
    let c = server.mysql().expect("a MySQL connection").0;
    let mut at = book_state(c, &beside).await.map_err(unchanged)?;
    if at == At::Fresh {
        let prepared = prepare(c, database, &beside, job).await;
        if let Err(e) = prepared {
            // Nothing to keep: the side database is dropped now, or by the next attempt.
            let _ = exec(
                c,
                &format!("DROP DATABASE IF EXISTS {}", quote_my(&beside.new)),
            )
            .await;
            return Err(unchanged(Error::new(
                e.kind(),
                format!(
                    "{}; the backup was being loaded beside the live database, which is untouched",
                    e.message()
                ),
            )));
        }
        at = At::Prepared;
    }
    if at == At::Prepared {
        swap_tables(c, &beside, job).await?;
        at = At::Swapped;
    }
    if at == At::Swapped {
        recreate_definitions(c, &beside, job).await?;
    }
    exec(
        c,
        &format!("DROP DATABASE IF EXISTS {}", quote_my(&beside.new)),
    )
    .await
    .map_err(|e| sql_error(format!("cannot drop database {}", beside.new), e))?;
    job.points.at("mariadb: side database dropped").await;
    server.close().await;
    tracing::info!(
        live = %beside.live,
        kept = %beside.old,
        "the restored tables are live; the tables they replaced are kept until the next restore"
    );
    check_definitions(database, job.manifest, job.events).await
}

/// Where a restore keyed as `beside` is, by where its bookkeeping table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Nothing usable beside the live database.
    Fresh,
    /// The side database is loaded, checked and described.
    Prepared,
    /// The tables were swapped; the definitions may not be.
    Swapped,
    /// Done but for dropping the side database and the final check.
    Finished,
}

async fn book_state(c: &mut MySqlConnection, beside: &Beside) -> Result<At> {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_SCHEMA AS CHAR) FROM information_schema.TABLES
         WHERE TABLE_NAME = ? AND TABLE_SCHEMA IN (?, ?, ?)",
    )
    .bind(BOOK)
    .bind(&beside.new)
    .bind(&beside.live)
    .bind(&beside.old)
    .fetch_all(&mut *c)
    .await
    .map_err(|e| read_error("where an earlier attempt of this restore got to", e))?;
    let Some(schema) = schemas.first() else {
        return Ok(At::Fresh);
    };
    let state: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT CAST(name AS CHAR) FROM {}.{} WHERE kind = 'state'",
        quote_my(schema),
        quote_my(BOOK)
    )))
    .fetch_optional(&mut *c)
    .await
    .map_err(|e| read_error("the restore's bookkeeping", e))?;
    Ok(match (schema.as_str(), state.as_deref()) {
        (s, Some("finished")) if s == beside.old => At::Finished,
        (s, _) if s == beside.old => At::Swapped,
        (s, Some("prepared")) if s == beside.new => At::Prepared,
        _ => At::Fresh,
    })
}

/// Step 1.
async fn prepare(
    c: &mut MySqlConnection,
    database: &Database,
    beside: &Beside,
    job: &Job<'_>,
) -> Result<()> {
    let manifest = job.manifest;
    let like = beside.like();
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?",
    )
    .bind(&like)
    .fetch_all(&mut *c)
    .await
    .map_err(|e| read_error("the server's databases", e))?;
    for name in present
        .iter()
        .filter(|n| beside.is_other(n) || **n == beside.new || **n == beside.old)
    {
        tracing::info!(database = %name, "dropping what an earlier restore left beside the live database");
        exec(c, &format!("DROP DATABASE IF EXISTS {}", quote_my(name)))
            .await
            .map_err(|e| sql_error(format!("cannot drop database {name}"), e))?;
        job.points.at("mariadb: a database beside dropped").await;
    }
    let (charset, collation) = charset_or_recorded(c, &beside.live, manifest).await?;
    exec(
        c,
        &create_database(&quote_my(&beside.new), &charset, &collation),
    )
    .await
    .map_err(|e| sql_error(format!("cannot create database {}", beside.new), e))?;
    job.points.at("mariadb: side database created").await;
    let side = database.beside_as().with_name(&beside.new);
    load(&side, job).await?;
    job.points.at("mariadb: side database loaded").await;
    check_restored(&side, manifest, job.events).await?;
    describe(&side, beside).await?;
    job.points.at("mariadb: prepared").await;
    Ok(())
}

/// Writes the bookkeeping table into the side database: its tables, its definitions and
/// the state `prepared`, in one transaction.
async fn describe(side: &Database, beside: &Beside) -> Result<()> {
    let mut conn = side.connect().await?;
    let c = conn.mysql().expect("a MySQL connection").0;
    let book = quote_my(BOOK);
    exec(
        c,
        &format!(
            "CREATE TABLE {book} (seq INT PRIMARY KEY, kind VARCHAR(16) NOT NULL, name VARCHAR(256) NOT NULL,
                 definition LONGTEXT, sql_mode TEXT, collation VARCHAR(64), time_zone VARCHAR(64))
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        ),
    )
    .await
    .map_err(|e| sql_error(format!("cannot write the restore's bookkeeping into {}", beside.new), e))?;
    let mut rows: Vec<Saved> = Vec::new();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE <> 'VIEW' AND TABLE_NAME <> ?
         ORDER BY TABLE_NAME",
    )
    .bind(BOOK)
    .fetch_all(&mut *c)
    .await
    .map_err(|e| read_error("the restored tables", e))?;
    rows.extend(tables.into_iter().map(Saved::table));
    for kind in [Kind::Routine, Kind::View, Kind::Trigger, Kind::Event] {
        for (object, name) in kind.list(c).await? {
            rows.push(kind.show(c, &object, name).await?);
        }
    }
    let mut tx = c
        .begin()
        .await
        .map_err(|e| sql_error("cannot begin".into(), e))?;
    let insert = format!(
        "INSERT INTO {book} (seq, kind, name, definition, sql_mode, collation, time_zone) VALUES (?, ?, ?, ?, ?, ?, ?)"
    );
    for (seq, row) in rows.iter().chain([&Saved::state("prepared")]).enumerate() {
        sqlx::query(AssertSqlSafe(insert.clone()))
            .bind(seq as i64)
            .bind(row.kind)
            .bind(&row.name)
            .bind(&row.definition)
            .bind(&row.sql_mode)
            .bind(&row.collation)
            .bind(&row.time_zone)
            .execute(&mut *tx)
            .await
            .map_err(|e| sql_error("cannot write the restore's bookkeeping".into(), e))?;
    }
    tx.commit()
        .await
        .map_err(|e| sql_error("cannot write the restore's bookkeeping".into(), e))?;
    conn.close().await;
    Ok(())
}

/// Step 2.
async fn swap_tables(c: &mut MySqlConnection, beside: &Beside, job: &Job<'_>) -> Result<()> {
    let (live, new, old) = (
        quote_my(&beside.live),
        quote_my(&beside.new),
        quote_my(&beside.old),
    );
    let saved = read_book(c, &beside.new).await.map_err(unchanged)?;
    let (charset, collation) = charset_or_recorded(c, &beside.live, job.manifest)
        .await
        .map_err(unchanged)?;
    exec(c, &create_database(&old, &charset, &collation))
        .await
        .map_err(|e| {
            unchanged(sql_error(
                format!("cannot create database {}", beside.old),
                e,
            ))
        })?;
    job.points
        .at("mariadb: database for the replaced tables created")
        .await;
    let live_tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'VIEW' ORDER BY TABLE_NAME",
    )
    .bind(&beside.live)
    .fetch_all(&mut *c)
    .await
    .map_err(|e| unchanged(read_error("the live database's tables", e)))?;
    for (schema, quoted) in [(&beside.new, &new), (&beside.live, &live)] {
        for trigger in triggers_of(c, schema).await? {
            exec(
                c,
                &format!("DROP TRIGGER IF EXISTS {quoted}.{}", quote_my(&trigger)),
            )
            .await
            .map_err(|e| sql_error(format!("cannot drop trigger {schema}.{trigger}"), e))?;
            job.points
                .at("mariadb: a trigger dropped before the swap")
                .await;
        }
    }
    let mut moves: Vec<String> = live_tables
        .iter()
        .map(|t| format!("{live}.{q} TO {old}.{q}", q = quote_my(t)))
        .collect();
    moves.extend(
        saved
            .iter()
            .filter(|s| s.kind == "table")
            .map(|s| format!("{new}.{q} TO {live}.{q}", q = quote_my(&s.name))),
    );
    // The bookkeeping moves with them: where it is says whether the swap happened.
    moves.push(format!("{new}.{q} TO {old}.{q}", q = quote_my(BOOK)));
    exec(c, &format!("RENAME TABLE {}", moves.join(", ")))
        .await
        .map_err(|e| {
            sql_error(
                format!(
                    "cannot move the restored tables into {}; its tables are as they were, without their triggers, and running the command again finishes the restore",
                    beside.live
                ),
                e,
            )
        })?;
    job.points.at("mariadb: tables swapped").await;
    Ok(())
}

/// Step 3.
async fn recreate_definitions(
    c: &mut MySqlConnection,
    beside: &Beside,
    job: &Job<'_>,
) -> Result<()> {
    let live = quote_my(&beside.live);
    for kind in [Kind::Event, Kind::Trigger, Kind::View, Kind::Routine] {
        for (object, name) in kind.list_in(c, &beside.live).await? {
            exec(c, &kind.drop(&live, &object, &name))
                .await
                .map_err(|e| {
                    sql_error(format!("cannot drop {object} {name} of {}", beside.live), e)
                })?;
            job.points
                .at("mariadb: a replaced definition dropped")
                .await;
        }
    }
    let saved = read_book(c, &beside.old).await?;
    exec(c, &format!("USE {live}"))
        .await
        .map_err(|e| sql_error(format!("cannot use {}", beside.live), e))?;
    let session = sqlx::query_as::<_, (String, String, String)>(
        "SELECT CAST(@@SESSION.sql_mode AS CHAR), CAST(@@SESSION.collation_connection AS CHAR), CAST(@@SESSION.time_zone AS CHAR)",
    )
    .fetch_one(&mut *c)
    .await
    .map_err(|e| read_error("the session's settings", e))?;
    let definitions: Vec<&Saved> = saved.iter().filter(|s| s.definition.is_some()).collect();
    let (views, others): (Vec<&Saved>, Vec<&Saved>) =
        definitions.into_iter().partition(|s| s.kind == "view");
    let routines = others.iter().filter(|s| s.kind == "routine");
    for saved in routines {
        create(c, saved).await?;
        job.points.at("mariadb: a definition created").await;
    }
    // A view may read another: create what can be created, round after round.
    let mut pending = views;
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last_error = None;
        for saved in &pending {
            match create(c, saved).await {
                Ok(()) => job.points.at("mariadb: a definition created").await,
                Err(e) => {
                    failed.push(*saved);
                    last_error = Some(e);
                }
            }
        }
        if failed.len() == pending.len() {
            return Err(last_error.expect("a view failed"));
        }
        pending = failed;
    }
    for kind in ["trigger", "event"] {
        for saved in others.iter().filter(|s| s.kind == kind) {
            create(c, saved).await?;
            job.points.at("mariadb: a definition created").await;
        }
    }
    let (sql_mode, collation, time_zone) = session;
    restore_session(c, &sql_mode, &collation, &time_zone).await?;
    let book = format!("{}.{}", quote_my(&beside.old), quote_my(BOOK));
    exec(
        c,
        &format!("UPDATE {book} SET name = 'finished' WHERE kind = 'state'"),
    )
    .await
    .map_err(|e| sql_error("cannot write the restore's bookkeeping".into(), e))?;
    job.points.at("mariadb: finished").await;
    Ok(())
}

/// Runs a saved `CREATE` under the settings it was made with.
async fn create(c: &mut MySqlConnection, saved: &Saved) -> Result<()> {
    let definition = saved.definition.as_deref().unwrap_or_default();
    restore_session(
        c,
        saved.sql_mode.as_deref().unwrap_or(""),
        saved.collation.as_deref().unwrap_or("utf8mb4_general_ci"),
        saved.time_zone.as_deref().unwrap_or("SYSTEM"),
    )
    .await?;
    exec(c, definition).await.map_err(|e| {
        sql_error(
            format!("cannot create {} {} again", saved.kind, saved.name),
            e,
        )
    })
}

async fn restore_session(
    c: &mut MySqlConnection,
    sql_mode: &str,
    collation: &str,
    time_zone: &str,
) -> Result<()> {
    sqlx::query("SET SESSION sql_mode = ?, collation_connection = ?, time_zone = ?")
        .bind(sql_mode)
        .bind(collation)
        .bind(time_zone)
        .execute(&mut *c)
        .await
        .map(|_| ())
        .map_err(|e| {
            sql_error(
                "cannot set the session's sql_mode, collation and time zone".into(),
                e,
            )
        })
}

/// A row of the bookkeeping table.
#[derive(Debug, Clone)]
struct Saved {
    kind: &'static str,
    name: String,
    definition: Option<String>,
    sql_mode: Option<String>,
    collation: Option<String>,
    time_zone: Option<String>,
}

impl Saved {
    fn table(name: String) -> Self {
        Self::bare("table", name)
    }

    fn state(state: &str) -> Self {
        Self::bare("state", state.to_string())
    }

    fn bare(kind: &'static str, name: String) -> Self {
        Self {
            kind,
            name,
            definition: None,
            sql_mode: None,
            collation: None,
            time_zone: None,
        }
    }
}

async fn read_book(c: &mut MySqlConnection, schema: &str) -> Result<Vec<Saved>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT CAST(kind AS CHAR), CAST(name AS CHAR), CAST(definition AS CHAR), CAST(sql_mode AS CHAR),
                CAST(collation AS CHAR), CAST(time_zone AS CHAR)
         FROM {}.{} ORDER BY seq",
        quote_my(schema),
        quote_my(BOOK)
    )))
    .fetch_all(&mut *c)
    .await
    .map_err(|e| read_error("the restore's bookkeeping", e))?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get(0)?;
            let kind = match kind.as_str() {
                "table" => "table",
                "routine" => "routine",
                "view" => "view",
                "trigger" => "trigger",
                "event" => "event",
                _ => "state",
            };
            Ok(Saved {
                kind,
                name: row.try_get(1)?,
                definition: row.try_get(2)?,
                sql_mode: row.try_get(3)?,
                collation: row.try_get(4)?,
                time_zone: row.try_get(5)?,
            })
        })
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(|e| read_error("the restore's bookkeeping", e))
}

/// The kinds of definition that live in a database rather than in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Routine,
    View,
    Trigger,
    Event,
}

impl Kind {
    /// What of this kind the selected database holds: (`PROCEDURE`/`FUNCTION`/…, name),
    /// triggers in the order they fire.
    async fn list(self, c: &mut MySqlConnection) -> Result<Vec<(String, String)>> {
        self.query(c, None).await
    }

    /// The same for database `schema`.
    async fn list_in(self, c: &mut MySqlConnection, schema: &str) -> Result<Vec<(String, String)>> {
        self.query(c, Some(schema)).await
    }

    async fn query(
        self,
        c: &mut MySqlConnection,
        schema: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        let sql = match self {
            Self::Routine => {
                "SELECT CAST(ROUTINE_TYPE AS CHAR), CAST(ROUTINE_NAME AS CHAR) FROM information_schema.ROUTINES
                 WHERE ROUTINE_SCHEMA = COALESCE(?, DATABASE()) AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION')
                 ORDER BY ROUTINE_TYPE, ROUTINE_NAME"
            }
            Self::View => {
                "SELECT 'VIEW', CAST(TABLE_NAME AS CHAR) FROM information_schema.VIEWS
                 WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) ORDER BY TABLE_NAME"
            }
            Self::Trigger => {
                "SELECT 'TRIGGER', CAST(TRIGGER_NAME AS CHAR) FROM information_schema.TRIGGERS
                 WHERE TRIGGER_SCHEMA = COALESCE(?, DATABASE())
                 ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER"
            }
            Self::Event => {
                "SELECT 'EVENT', CAST(EVENT_NAME AS CHAR) FROM information_schema.EVENTS
                 WHERE EVENT_SCHEMA = COALESCE(?, DATABASE()) ORDER BY EVENT_NAME"
            }
        };
        sqlx::query_as(sql)
            .bind(schema)
            .fetch_all(&mut *c)
            .await
            .map_err(|e| read_error("the database's definitions", e))
    }

    /// Its definition in the selected database, with the settings it was created under.
    async fn show(self, c: &mut MySqlConnection, object: &str, name: String) -> Result<Saved> {
        let sql = format!("SHOW CREATE {object} {}", quote_my(&name));
        let row = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_one(&mut *c)
            .await
            .map_err(|e| read_error(&format!("the definition of {object} {name}"), e))?;
        let text = |i: usize| -> Option<String> {
            row.try_get_unchecked::<Option<Vec<u8>>, _>(i)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        // SHOW CREATE PROCEDURE/FUNCTION: name, sql_mode, definition, charset, collation;
        // VIEW: name, definition, charset, collation; TRIGGER: name, sql_mode,
        // definition, charset, collation; EVENT: name, sql_mode, time zone, definition,
        // charset, collation.
        let (kind, sql_mode, definition, collation, time_zone) = match self {
            Self::Routine => ("routine", text(1), text(2), text(4), None),
            Self::View => ("view", None, text(1), text(3), None),
            Self::Trigger => ("trigger", text(1), text(2), text(4), None),
            Self::Event => ("event", text(1), text(3), text(5), text(2)),
        };
        if definition.is_none() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("the server does not show the definition of {object} {name} to this user"),
            ));
        }
        Ok(Saved {
            kind,
            name,
            definition,
            sql_mode,
            collation,
            time_zone,
        })
    }

    fn drop(self, schema: &str, object: &str, name: &str) -> String {
        let what = match self {
            Self::Routine => object,
            Self::View => "VIEW",
            Self::Trigger => "TRIGGER",
            Self::Event => "EVENT",
        };
        format!("DROP {what} IF EXISTS {schema}.{}", quote_my(name))
    }
}

async fn triggers_of(c: &mut MySqlConnection, schema: &str) -> Result<Vec<String>> {
    Ok(Kind::Trigger
        .list_in(c, schema)
        .await?
        .into_iter()
        .map(|(_, name)| name)
        .collect())
}

/// The character set and collation of database `name`; when it is gone, those the backup
/// recorded (utf8mb4 and the server's default collation in a manifest from before they
/// were recorded).
async fn charset_or_recorded(
    c: &mut MySqlConnection,
    name: &str,
    manifest: &crate::Manifest,
) -> Result<(String, String)> {
    Ok(match character_set(c, name).await? {
        Some(found) => found,
        None => (
            manifest
                .database
                .charset
                .clone()
                .unwrap_or_else(|| "utf8mb4".into()),
            manifest.database.collation.clone().unwrap_or_default(),
        ),
    })
}

/// The character set and collation of database `name`, if it exists.
async fn character_set(c: &mut MySqlConnection, name: &str) -> Result<Option<(String, String)>> {
    sqlx::query_as(
        "SELECT CAST(DEFAULT_CHARACTER_SET_NAME AS CHAR), CAST(DEFAULT_COLLATION_NAME AS CHAR)
         FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(name)
    .fetch_optional(c)
    .await
    .map_err(|e| read_error(&format!("the character set of database {name}"), e))
}

fn create_database(quoted: &str, charset: &str, collation: &str) -> String {
    let mut sql = format!(
        "CREATE DATABASE IF NOT EXISTS {quoted} CHARACTER SET {}",
        quote_my(charset)
    );
    if !collation.is_empty() {
        sql.push_str(&format!(" COLLATE {}", quote_my(collation)));
    }
    sql
}

async fn exec(c: &mut MySqlConnection, sql: &str) -> std::result::Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(c)
        .await
        .map(|_| ())
}

fn read_error(what: &str, e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("cannot read {what}")).with_source(e)
}

fn sql_error(what: String, e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Other, what).with_source(e)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
