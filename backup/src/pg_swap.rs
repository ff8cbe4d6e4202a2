//! PostgreSQL: a restore beside the live database, swapped in by renaming both databases
//! in one transaction.
//!
//! # Steps (see `restore` for the guarantees)
//! 1. On a connection to the server's `postgres` (or `template1`) database: if this
//!    restore's `…_old` exists beside the live database, an earlier attempt already
//!    swapped; only the check remains.
//! 2. Drop what earlier restores left beside this database: side databases of killed runs
//!    and the databases they replaced (kept until the next restore: retention).
//! 3. `CREATE DATABASE …_new` from `template0` with the live database's encoding, locale,
//!    tablespace, connection limit and owner, then its privileges, settings and comment,
//!    which a dump does not hold (they belong to the database, not to its content).
//! 4. `pg_restore --dbname=…_new`, entry by entry: no single huge transaction, so any
//!    number of tables restores on a server with default lock settings.
//! 5. Compare its fingerprint with the backup's.
//! 6. End the sessions on both databases and, in one transaction, `ALTER DATABASE live
//!    RENAME TO …_old; ALTER DATABASE …_new RENAME TO live`. A session that connects in
//!    between makes the rename fail ("being accessed by other users"); it is ended and the
//!    transaction tried again, a few times.
//!
//! # Assumptions
//! The user is a superuser, or owns the live database, has `CREATEDB`, and nothing in the
//! database belongs to another role that only a superuser could recreate
//! ([`replacement`] checks this and otherwise restores in place).

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

use crate::database::{Database, quote_pg};
use crate::restore::{Beside, Job, Replacement, check_restored, load, unchanged};
use cutover_core::{Error, ErrorKind, Result};

/// Whether a restore into `database` can work beside it, and if not, why.
pub(crate) async fn replacement(database: &Database) -> Result<Replacement> {
    if let Some(admin) = database.admin() {
        let mut conn = admin.connect().await?;
        let superuser = conn.is_superuser().await;
        conn.close().await;
        return Ok(if superuser? {
            Replacement::Swap
        } else {
            Replacement::InPlace {
                why: format!(
                    "[database] admin_user {} is not a superuser, which a restore beside the database needs to keep every owner",
                    admin.user()
                ),
            }
        });
    }
    let mut conn = database.connect().await?;
    let Some(c) = conn.postgres() else {
        return Err(Error::invalid("not a PostgreSQL database"));
    };
    let row: (
        bool,
        bool,
        bool,
        String,
        Option<String>,
        Option<String>,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT r.rolsuper, r.rolcreatedb, d.datdba = r.oid, pg_get_userbyid(d.datdba)::text,
                (SELECT string_agg(quote_ident(n.nspname), ', ' ORDER BY n.nspname)
                 FROM pg_catalog.pg_namespace n
                 WHERE n.nspowner <> r.oid
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
                   -- A new database's public schema belongs to pg_database_owner too.
                   AND NOT (n.nspname = 'public'
                            AND pg_get_userbyid(n.nspowner) = 'pg_database_owner')),
                (SELECT string_agg(quote_ident(e.extname), ', ' ORDER BY e.extname)
                 FROM pg_catalog.pg_extension e
                 WHERE e.extowner <> r.oid
                   AND e.extnamespace <> 'pg_catalog'::regnamespace),
                (SELECT count(*) FROM pg_catalog.pg_default_acl a WHERE a.defaclrole <> r.oid),
                (SELECT count(*) FROM pg_catalog.pg_db_role_setting s
                 WHERE s.setdatabase = d.oid AND s.setrole <> 0)
             FROM pg_catalog.pg_roles r, pg_catalog.pg_database d
             WHERE r.rolname = current_user AND d.datname = current_database()",
    )
    .fetch_one(c)
    .await
    .map_err(|e| read_error("what the user may do with the database", e))?;
    conn.close().await;
    let (superuser, createdb, owns, owner, schemas, extensions, defaults, role_settings) = row;
    let user = database.user();
    let name = database.name();
    let why = if superuser {
        None
    } else if !createdb {
        Some(format!(
            "{user} may not create databases (ALTER ROLE {user} CREATEDB gives it the right)"
        ))
    } else if !owns {
        Some(format!(
            "database {name} belongs to {owner}, and only its owner may rename it (ALTER DATABASE {name} OWNER TO {user} gives it the right)"
        ))
    } else if let Some(schemas) = schemas {
        Some(format!(
            "schemas {schemas} belong to other roles, and a new database would have them owned by {user}"
        ))
    } else if let Some(extensions) = extensions {
        Some(format!(
            "extensions {extensions} were created by other roles, which {user} may not be able to create again"
        ))
    } else if defaults > 0 {
        Some(format!(
            "other roles set default privileges in {name}, which {user} cannot set again"
        ))
    } else if role_settings > 0 {
        Some(format!(
            "{name} has settings for particular roles (ALTER ROLE … IN DATABASE), which {user} cannot set again"
        ))
    } else {
        None
    };
    if let Some(why) = why {
        return Ok(Replacement::InPlace { why });
    }
    match database.connect_server().await {
        Ok(server) => {
            server.close().await;
            Ok(Replacement::Swap)
        }
        Err(e) => Ok(Replacement::InPlace {
            why: format!(
                "{}: a swap renames the database from another one",
                e.message()
            ),
        }),
    }
}

/// The restore beside the live database and the swap; see the module's steps.
pub(crate) async fn restore(database: &Database, job: &Job<'_>, key: &str) -> Result<()> {
    let beside = Beside::new(database.name(), key);
    let mut server = database.connect_server().await.map_err(unchanged)?;
    let c = server.postgres().expect("a PostgreSQL connection");
    let present = existing(c, &beside).await.map_err(unchanged)?;
    if present.contains(&beside.old) && present.contains(&beside.live) {
        // An earlier attempt of this restore swapped; the live database is the backup.
        server.close().await;
        return check_restored(database, job.manifest, job.events).await;
    }
    if present.contains(&beside.new) {
        drop_database(c, &beside.new).await.map_err(unchanged)?;
        job.points.at("postgres: a database beside dropped").await;
    }
    // What earlier restores left (retention) is dropped on a connection of its own while
    // the backup loads: it takes time in proportion to its size, and nothing waits on it.
    let others: Vec<&String> = present.iter().filter(|n| beside.is_other(n)).collect();
    let retention = async {
        if others.is_empty() {
            return Ok(());
        }
        let mut server = database.connect_server().await?;
        let c = server.postgres().expect("a PostgreSQL connection");
        // No checkpoint here: these drops run beside the load, and a kill in either is
        // a kill in both.
        for name in others {
            tracing::info!(database = %name, "dropping what an earlier restore left beside the live database");
            drop_database(c, name).await?;
        }
        server.close().await;
        Ok::<(), Error>(())
    };
    let properties = if present.contains(&beside.live) {
        Some(properties(c, &beside.live).await.map_err(unchanged)?)
    } else {
        None
    };
    create(c, &beside.new, properties.as_ref())
        .await
        .map_err(unchanged)?;
    job.points.at("postgres: side database created").await;
    let side = database.beside_as().with_name(&beside.new);
    let loaded = async {
        load(&side, job).await?;
        job.points.at("postgres: side database loaded").await;
        check_restored(&side, job.manifest, job.events).await
    };
    let (loaded, retained) = tokio::join!(loaded, retention);
    if let Err(e) = retained {
        job.events.warn(format!(
            "cannot drop what an earlier restore kept beside {}: {}",
            beside.live,
            e.report()
        ));
    }
    if let Err(e) = loaded {
        // Nothing to keep: the side database is dropped now, or by the next attempt.
        let _ = drop_database(c, &beside.new).await;
        return Err(unchanged(Error::new(
            e.kind(),
            format!(
                "{}; the backup was being loaded beside the live database, which is untouched",
                e.message()
            ),
        )));
    }
    job.points.at("postgres: before the swap").await;
    let swapped = swap(c, &beside, present.contains(&beside.live)).await;
    server.close().await;
    swapped.map_err(unchanged)?;
    job.points.at("postgres: swapped").await;
    tracing::info!(
        live = %beside.live,
        kept = %beside.old,
        "the restored database is live; the data it replaced is kept until the next restore"
    );
    Ok(())
}

fn read_error(what: &str, e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("cannot read {what}")).with_source(e)
}

fn sql_error(what: String, e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Other, what).with_source(e)
}

/// The live database and those beside it that exist.
async fn existing(c: &mut PgConnection, beside: &Beside) -> Result<BTreeSet<String>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_catalog.pg_database WHERE datname = $1 OR datname LIKE $2",
    )
    .bind(&beside.live)
    .bind(beside.like())
    .fetch_all(c)
    .await
    .map_err(|e| read_error("the server's databases", e))?;
    Ok(names.into_iter().collect())
}

/// Ends the sessions on `databases` that this user may end (its own roles', or any with
/// `pg_signal_backend`; a superuser's only as a superuser).
async fn end_sessions(c: &mut PgConnection, databases: &[&str]) -> Result<()> {
    sqlx::query(
        "SELECT pg_terminate_backend(a.pid) FROM pg_catalog.pg_stat_activity a
         JOIN pg_catalog.pg_roles r ON r.oid = a.usesysid
         WHERE a.datname = ANY($1) AND a.pid <> pg_backend_pid()
           AND (NOT r.rolsuper
                OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user))
           AND (pg_has_role(a.usesysid, 'USAGE') OR pg_has_role('pg_signal_backend', 'USAGE'))",
    )
    .bind(databases)
    .execute(c)
    .await
    .map_err(|e| sql_error("cannot end the sessions on the databases".into(), e))?;
    Ok(())
}

async fn drop_database(c: &mut PgConnection, name: &str) -> Result<()> {
    end_sessions(c, &[name]).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {}",
        quote_pg(name)
    )))
    .execute(c)
    .await
    .map_err(|e| sql_error(format!("cannot drop database {name}"), e))?;
    Ok(())
}

/// What a database has that a dump does not hold.
#[derive(Debug)]
struct Properties {
    /// `WITH …` options of `CREATE DATABASE`.
    options: String,
    /// Statements that give the new database its privileges, settings and comment;
    /// `{db}` stands for its quoted name.
    then: Vec<String>,
}

/// A string literal that means the same whatever `standard_conforming_strings` says.
fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Settings whose value is a list the server prints as SQL (`"$user", public`): written
/// as such; any other is one literal.
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
];

async fn properties(c: &mut PgConnection, live: &str) -> Result<Properties> {
    type Row = (
        String,
        String,
        String,
        String,
        Option<String>,
        bool,
        Option<String>,
    );
    let (db, owner, encoding, tablespace, comment, has_acl, acl): Row = sqlx::query_as(
        // to_jsonb: the locale columns differ between server versions.
        "SELECT to_jsonb(d)::text, quote_ident(pg_get_userbyid(d.datdba)),
                pg_encoding_to_char(d.encoding)::text, quote_ident(t.spcname),
                pg_catalog.shobj_description(d.oid, 'pg_database'), d.datacl IS NOT NULL,
                (SELECT string_agg(format('GRANT %s ON DATABASE {db} TO %s%s', a.privilege_type,
                            CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                 ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                            CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), E'\\n')
                 FROM aclexplode(d.datacl) a)
         FROM pg_catalog.pg_database d JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace
         WHERE d.datname = $1",
    )
    .bind(live)
    .fetch_one(&mut *c)
    .await
    .map_err(|e| read_error(&format!("the properties of database {live}"), e))?;
    let settings: Vec<(Option<String>, String)> = sqlx::query_as(
        "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE quote_ident(pg_get_userbyid(s.setrole)) END,
                c::text
         FROM pg_catalog.pg_db_role_setting s, pg_catalog.pg_database d, unnest(s.setconfig) c
         WHERE d.datname = $1 AND s.setdatabase = d.oid
         ORDER BY s.setrole",
    )
    .bind(live)
    .fetch_all(&mut *c)
    .await
    .map_err(|e| read_error(&format!("the settings of database {live}"), e))?;

    let db: serde_json::Value = serde_json::from_str(&db)
        .map_err(|e| Error::new(ErrorKind::Other, "cannot read pg_database").with_source(e))?;
    let text = |key: &str| db.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let mut options = format!(
        "TEMPLATE template0 OWNER {owner} ENCODING {}",
        literal(&encoding)
    );
    // Naming the default tablespace would need the right to create in it.
    if tablespace != "pg_default" {
        options.push_str(&format!(" TABLESPACE {tablespace}"));
    }
    for (option, key) in [("LC_COLLATE", "datcollate"), ("LC_CTYPE", "datctype")] {
        if let Some(value) = text(key) {
            options.push_str(&format!(" {option} {}", literal(&value)));
        }
    }
    // PostgreSQL 15 and 16 name the ICU locale daticulocale, 17 datlocale.
    let locale = text("datlocale").or_else(|| text("daticulocale"));
    match (text("datlocprovider").as_deref(), locale) {
        (Some("i"), Some(locale)) => {
            options.push_str(&format!(
                " LOCALE_PROVIDER icu ICU_LOCALE {}",
                literal(&locale)
            ));
            if let Some(rules) = text("daticurules") {
                options.push_str(&format!(" ICU_RULES {}", literal(&rules)));
            }
        }
        (Some("b"), Some(locale)) => {
            options.push_str(&format!(
                " LOCALE_PROVIDER builtin BUILTIN_LOCALE {}",
                literal(&locale)
            ));
        }
        _ => {}
    }
    if let Some(limit) = db.get("datconnlimit").and_then(|v| v.as_i64()) {
        options.push_str(&format!(" CONNECTION LIMIT {limit}"));
    }

    let mut then = Vec::new();
    if has_acl {
        // A new database has the default privileges; the live one had these instead.
        then.push(format!(
            "REVOKE ALL ON DATABASE {{db}} FROM PUBLIC; REVOKE ALL ON DATABASE {{db}} FROM {owner}"
        ));
        then.extend(
            acl.into_iter()
                .flat_map(|a| a.lines().map(str::to_owned).collect::<Vec<_>>()),
        );
    }
    for (role, setting) in settings {
        let Some((name, value)) = setting.split_once('=') else {
            continue;
        };
        let value = if LIST_SETTINGS.contains(&name) {
            value.to_string()
        } else {
            literal(value)
        };
        let target = match role {
            Some(role) => format!("ALTER ROLE {role} IN DATABASE {{db}}"),
            None => "ALTER DATABASE {db}".to_string(),
        };
        then.push(format!("{target} SET {} TO {value}", quote_pg(name)));
    }
    if let Some(comment) = comment {
        then.push(format!(
            "COMMENT ON DATABASE {{db}} IS {}",
            literal(&comment)
        ));
    }
    Ok(Properties { options, then })
}

/// Creates database `name`: with `properties` those of the live database, else the
/// server's defaults.
async fn create(c: &mut PgConnection, name: &str, properties: Option<&Properties>) -> Result<()> {
    let quoted = quote_pg(name);
    let options = properties.map_or(String::new(), |p| format!(" WITH {}", p.options));
    let mut statements = vec![format!("CREATE DATABASE {quoted}{options}")];
    statements.extend(
        properties
            .iter()
            .flat_map(|p| p.then.iter().map(|s| s.replace("{db}", &quoted))),
    );
    for statement in statements {
        sqlx::raw_sql(AssertSqlSafe(statement.clone()))
            .execute(&mut *c)
            .await
            .map_err(|e| {
                sql_error(
                    format!("cannot create database {name} beside the live one ({statement})"),
                    e,
                )
            })?;
    }
    Ok(())
}

/// How often the rename is tried while sessions end or keep connecting (a session ended a
/// moment ago may still be exiting).
const SWAP_ATTEMPTS: u32 = 20;

/// Renames the live database to `…_old` and `…_new` to the live name, in one transaction
/// (only `…_new` when there is no live database).
async fn swap(c: &mut PgConnection, beside: &Beside, live_exists: bool) -> Result<()> {
    let (live, new, old) = (
        quote_pg(&beside.live),
        quote_pg(&beside.new),
        quote_pg(&beside.old),
    );
    let mut statements = Vec::new();
    if live_exists {
        statements.push(format!("ALTER DATABASE {live} RENAME TO {old}"));
    }
    statements.push(format!("ALTER DATABASE {new} RENAME TO {live}"));
    let mut attempt = 0;
    loop {
        attempt += 1;
        end_sessions(c, &[&beside.live, &beside.new]).await?;
        let renamed = async {
            let mut tx = c.begin().await?;
            for statement in &statements {
                sqlx::raw_sql(AssertSqlSafe(statement.clone()))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
        .await;
        match renamed {
            Ok(()) => return Ok(()),
            Err(e) if in_use(&e) && attempt < SWAP_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
            }
            Err(e) => {
                let who = sessions(c, &[&beside.live, &beside.new]).await;
                return Err(sql_error(
                    format!(
                        "cannot swap the restored database in for {}{who}; the live database is untouched",
                        beside.live
                    ),
                    e,
                ));
            }
        }
    }
}

/// Whether the server refused because another session uses the database.
fn in_use(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "55006")
}

/// The sessions on `databases`, for an error message (`: sessions of …`), or nothing.
async fn sessions(c: &mut PgConnection, databases: &[&str]) -> String {
    let found: Result<Vec<String>, _> = sqlx::query_scalar(
        "SELECT DISTINCT format('%s (%s)', usename, coalesce(nullif(application_name, ''), client_addr::text, 'local'))
         FROM pg_catalog.pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
    )
    .bind(databases)
    .fetch_all(c)
    .await;
    match found {
        Ok(who) if !who.is_empty() => format!(
            ": sessions of {} stay connected, which this user may not end; end them and run the command again",
            who.join(", ")
        ),
        _ => String::new(),
    }
}
