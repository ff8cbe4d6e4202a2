//! The fingerprint of a database: what "a restore gave back the same data" is checked
//! against. It is computed inside the server on one snapshot and must be a function of
//! the data alone — never of OIDs, physical row order, session settings or the database's
//! own name — so that dump + restore gives it back exactly.
//!
//! It has three parts:
//! - per table a row count and an order-independent checksum of the rows;
//! - a digest of every table's column definitions (`schema`);
//! - `objects`: per schema object (view, materialized view, routine, trigger, event,
//!   index, constraint, enum, domain, generated column) a digest of its definition, and
//!   per sequence or AUTO_INCREMENT counter its value in clear, so that a mismatch says
//!   what differs.
//!
//! # PostgreSQL
//! The transaction pins every setting that changes a value's text (`TimeZone`,
//! `DateStyle`, `IntervalStyle`, `extra_float_digits`, `bytea_output`, `lc_monetary`)
//! and `search_path` (so definitions and `reg*` values print fully qualified names).
//! A table is checksummed by summing `hash_record_extended` over its rows (`h:`) only
//! when every column type, followed through arrays, domains, ranges, multiranges and
//! composites, is built in and hashes by value: an enum hashes its OID, `reg*` types are
//! OIDs that a restore renumbers, and a user-defined or extension type is unknown.
//! Otherwise, and when a type has no hash function (json, point, tsvector, …), it sums an
//! MD5 prefix of each row's text (`m:`), which is stable under the pinned settings.
//! Columns with a nondeterministic collation also use `m:`, since their hash depends on
//! collation keys.
//!
//! # MySQL / MariaDB
//! `COUNT(*)` and `CHECKSUM TABLE … EXTENDED` (`c:`), which read the transaction's
//! snapshot on InnoDB. View definitions are stored by the server with the database's
//! name in them; it is removed before hashing, so a restore into a scratch database
//! (`--restore-test`) compares equal.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::database::{quote_my, quote_pg};
use crate::manifest::{Fingerprint, TableFingerprint};
use crate::pipeline::hex;

type SqlResult<T> = std::result::Result<T, sqlx::Error>;

/// A short digest of a definition: enough to tell two apart, small in the manifest.
fn digest(text: &str) -> String {
    let full = hex(&Sha256::digest(text.as_bytes()));
    format!("sha256:{}", &full[..24])
}

/// Session settings under which every built-in type's text is the same on every run.
const PG_PINNED: &[&str] = &[
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL bytea_output = 'hex'",
    "SET LOCAL lc_monetary = 'C'",
    "SET LOCAL search_path = pg_catalog",
];

/// Schemas that hold the application's objects (not the system's).
const PG_USER_SCHEMA: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

/// Whether a table's rows may be hashed by value: true when some column type (followed
/// through element, base, range and attribute types) is user-defined, an OID-valued
/// built-in type, or has a nondeterministic collation.
const PG_NEEDS_TEXT: &str = "
WITH RECURSIVE ty(oid) AS (
    SELECT a.atttypid FROM pg_attribute a
    WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
  UNION
    SELECT x.oid FROM ty
    JOIN pg_type t ON t.oid = ty.oid
    CROSS JOIN LATERAL unnest(
        ARRAY[t.typelem, t.typbasetype,
              (SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid),
              (SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = t.oid)]
        || ARRAY(SELECT a.atttypid FROM pg_attribute a
                 WHERE a.attrelid = t.typrelid AND t.typrelid <> 0
                   AND a.attnum > 0 AND NOT a.attisdropped)) AS x(oid)
    WHERE x.oid IS NOT NULL AND x.oid <> 0
)
SELECT EXISTS (
    SELECT 1 FROM ty JOIN pg_type t ON t.oid = ty.oid
    WHERE t.oid >= 16384 OR t.typtype = 'e'
       OR (t.typnamespace = 'pg_catalog'::regnamespace
           AND (t.typname IN ('oid', '_oid') OR t.typname LIKE 'reg%' OR t.typname LIKE '\\_reg%'))
) OR EXISTS (
    SELECT 1 FROM pg_attribute a JOIN pg_collation co ON co.oid = a.attcollation
    WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
      AND NOT co.collisdeterministic
)";

/// Objects beyond tables: (name, definition) pairs, hashed into `objects`.
fn pg_object_queries() -> Vec<String> {
    let not_extension = |catalog: &str, oid: &str| {
        format!(
            "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass AND d.objid = {oid} AND d.deptype = 'e')"
        )
    };
    vec![
        // Views and materialized views: definition, options, populated or not (a
        // materialized view's rows are recomputed by the restore, so its content is
        // not compared: a stale one would differ with equal data).
        format!(
            "SELECT CASE c.relkind WHEN 'v' THEN 'view ' ELSE 'materialized view ' END || n.nspname || '.' || c.relname,
                    pg_get_viewdef(c.oid, true) || ' options=' || coalesce(array_to_string(c.reloptions, ','), '')
                    || CASE WHEN c.relkind = 'm' THEN ' populated=' || c.relispopulated ELSE '' END
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('v', 'm') AND {PG_USER_SCHEMA} AND {}",
            not_extension("pg_class", "c.oid")
        ),
        format!(
            "SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END || n.nspname || '.' || p.proname
                    || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                    pg_get_functiondef(p.oid)
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.prokind IN ('f', 'p') AND {PG_USER_SCHEMA} AND {}",
            not_extension("pg_proc", "p.oid")
        ),
        format!(
            "SELECT 'trigger ' || n.nspname || '.' || c.relname || '.' || t.tgname,
                    pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE NOT t.tgisinternal AND {PG_USER_SCHEMA} AND {}",
            not_extension("pg_class", "c.oid")
        ),
        format!(
            "SELECT 'index ' || n.nspname || '.' || ci.relname, pg_get_indexdef(i.indexrelid)
             FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ci.relnamespace
             WHERE {PG_USER_SCHEMA} AND {}",
            not_extension("pg_class", "i.indrelid")
        ),
        format!(
            "SELECT 'constraint ' || n.nspname || '.' || c.relname || '.' || co.conname, pg_get_constraintdef(co.oid)
             FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {PG_USER_SCHEMA} AND {}",
            not_extension("pg_class", "c.oid")
        ),
        format!(
            "SELECT 'enum ' || n.nspname || '.' || t.typname,
                    (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE t.typtype = 'e' AND {PG_USER_SCHEMA} AND {}",
            not_extension("pg_type", "t.oid")
        ),
        format!(
            "SELECT 'domain ' || n.nspname || '.' || t.typname,
                    format_type(t.typbasetype, t.typtypmod) || ' not_null=' || t.typnotnull
                    || ' default=' || coalesce(t.typdefault, '')
                    || ' checks=' || coalesce((SELECT string_agg(pg_get_constraintdef(co.oid), ';' ORDER BY co.conname)
                                               FROM pg_constraint co WHERE co.contypid = t.oid), '')
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE t.typtype = 'd' AND {PG_USER_SCHEMA} AND {}",
            not_extension("pg_type", "t.oid")
        ),
        format!(
            "SELECT 'type ' || n.nspname || '.' || t.typname,
                    coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
                              FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '')
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_class c ON c.oid = t.typrelid
             WHERE t.typtype = 'c' AND c.relkind = 'c' AND {PG_USER_SCHEMA} AND {}",
            not_extension("pg_type", "t.oid")
        ),
    ]
}

/// The fingerprint of the PostgreSQL database `c` is connected to, inside the caller's
/// transaction.
pub(crate) async fn postgres(c: &mut PgConnection) -> SqlResult<Fingerprint> {
    for sql in PG_PINNED {
        sqlx::query(*sql).execute(&mut *c).await?;
    }
    let mut fp = Fingerprint::default();
    let mut schema = Sha256::new();
    let columns = sqlx::query(
        "SELECT table_schema::text, table_name::text, column_name::text, data_type::text, is_nullable::text
         FROM information_schema.columns
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
         ORDER BY table_schema, table_name, ordinal_position",
    )
    .fetch_all(&mut *c)
    .await?;
    for row in &columns {
        for i in 0..5 {
            schema.update(row.try_get::<String, _>(i)?.as_bytes());
            schema.update(b"\x1f");
        }
        schema.update(b"\x1e");
    }
    fp.schema = hex(&schema.finalize());

    let tables = sqlx::query(
        "SELECT n.nspname::text, c.relname::text, c.oid::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
    )
    .fetch_all(&mut *c)
    .await?;
    for t in &tables {
        let (ns, name, oid): (String, String, i64) = (t.try_get(0)?, t.try_get(1)?, t.try_get(2)?);
        let table = format!("{}.{}", quote_pg(&ns), quote_pg(&name));
        let needs_text: bool = sqlx::query_scalar(PG_NEEDS_TEXT)
            .bind(oid)
            .fetch_one(&mut *c)
            .await?;
        let text = format!(
            "SELECT count(*)::int8, 'm:' || coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::int8::numeric), 0)::text FROM {table} AS t"
        );
        let row = if needs_text {
            sqlx::query(AssertSqlSafe(text)).fetch_one(&mut *c).await?
        } else {
            // Hashing each row's values is several times cheaper than MD5 of its text; a
            // type without a hash function makes the query fail, inside a savepoint.
            sqlx::query("SAVEPOINT cutover_fingerprint")
                .execute(&mut *c)
                .await?;
            let hashed = format!(
                "SELECT count(*)::int8, 'h:' || coalesce(sum(hash_record_extended(t, 0)::numeric), 0)::text FROM {table} AS t"
            );
            let row = match sqlx::query(AssertSqlSafe(hashed)).fetch_one(&mut *c).await {
                Ok(row) => row,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42883") => {
                    sqlx::query("ROLLBACK TO SAVEPOINT cutover_fingerprint")
                        .execute(&mut *c)
                        .await?;
                    sqlx::query(AssertSqlSafe(text)).fetch_one(&mut *c).await?
                }
                Err(e) => return Err(e),
            };
            sqlx::query("RELEASE SAVEPOINT cutover_fingerprint")
                .execute(&mut *c)
                .await?;
            row
        };
        fp.tables.insert(
            format!("{ns}.{name}"),
            TableFingerprint {
                rows: row.try_get::<i64, _>(0)? as u64,
                checksum: row.try_get(1)?,
            },
        );
    }

    let mut objects = BTreeMap::new();
    for sql in pg_object_queries() {
        for row in sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *c).await? {
            let name: String = row.try_get(0)?;
            let definition: Option<String> = row.try_get(1)?;
            objects.insert(name, digest(definition.as_deref().unwrap_or("")));
        }
    }
    objects.extend(postgres_counters(c).await?);
    fp.objects = Some(objects);
    Ok(fp)
}

/// Every sequence's value. Sequences are not transactional: read at two moments they
/// may differ although every snapshot sees the same rows.
pub(crate) async fn postgres_counters(c: &mut PgConnection) -> SqlResult<BTreeMap<String, String>> {
    let mut objects = BTreeMap::new();
    let sequences = sqlx::query(AssertSqlSafe(format!(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'S' AND {PG_USER_SCHEMA} ORDER BY 1, 2"
    )))
    .fetch_all(&mut *c)
    .await?;
    for s in &sequences {
        let (ns, name): (String, String) = (s.try_get(0)?, s.try_get(1)?);
        let sql = format!(
            "SELECT last_value::text, is_called FROM {}.{}",
            quote_pg(&ns),
            quote_pg(&name)
        );
        let row = sqlx::query(AssertSqlSafe(sql)).fetch_one(&mut *c).await?;
        let (last, called): (String, bool) = (row.try_get(0)?, row.try_get(1)?);
        objects.insert(
            format!("sequence {ns}.{name}"),
            format!("last_value={last} is_called={called}"),
        );
    }
    Ok(objects)
}

/// Objects beyond tables on MySQL/MariaDB: (name `n`, definition `d`) pairs. The server
/// writes the database's name into view definitions; it is removed before hashing.
const MY_OBJECT_QUERIES: &[&str] = &[
    "SELECT CONCAT('view ', TABLE_NAME) AS n,
            CONCAT_WS('|', VIEW_DEFINITION, CHECK_OPTION, SECURITY_TYPE, DEFINER) AS d
     FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()",
    "SELECT CONCAT(LOWER(r.ROUTINE_TYPE), ' ', r.ROUTINE_NAME) AS n,
            CONCAT_WS('|', r.ROUTINE_DEFINITION, COALESCE(r.DTD_IDENTIFIER, ''), r.SECURITY_TYPE,
                      r.IS_DETERMINISTIC, r.SQL_DATA_ACCESS, r.DEFINER, r.SQL_MODE,
                      COALESCE((SELECT GROUP_CONCAT(CONCAT_WS(' ', COALESCE(p.PARAMETER_MODE, ''), COALESCE(p.PARAMETER_NAME, ''), p.DTD_IDENTIFIER)
                                                    ORDER BY p.ORDINAL_POSITION SEPARATOR ',')
                                FROM information_schema.PARAMETERS p
                                WHERE p.SPECIFIC_SCHEMA = r.ROUTINE_SCHEMA AND p.SPECIFIC_NAME = r.SPECIFIC_NAME
                                  AND p.ROUTINE_TYPE = r.ROUTINE_TYPE), '')) AS d
     FROM information_schema.ROUTINES r WHERE r.ROUTINE_SCHEMA = DATABASE()",
    "SELECT CONCAT('trigger ', TRIGGER_NAME) AS n,
            CONCAT_WS('|', EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_TIMING, ACTION_ORDER,
                      ACTION_STATEMENT, DEFINER, SQL_MODE) AS d
     FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()",
    "SELECT CONCAT('event ', EVENT_NAME) AS n,
            CONCAT_WS('|', EVENT_DEFINITION, EVENT_TYPE, COALESCE(EXECUTE_AT, ''), COALESCE(INTERVAL_VALUE, ''),
                      COALESCE(INTERVAL_FIELD, ''), COALESCE(STARTS, ''), COALESCE(ENDS, ''), ON_COMPLETION,
                      STATUS, DEFINER, SQL_MODE, TIME_ZONE) AS d
     FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()",
    "SELECT CONCAT('index ', TABLE_NAME, '.', INDEX_NAME) AS n,
            CONCAT_WS('|', MAX(NON_UNIQUE), MAX(INDEX_TYPE),
                      GROUP_CONCAT(CONCAT_WS(':', COLUMN_NAME, COALESCE(SUB_PART, ''), COALESCE(COLLATION, ''))
                                   ORDER BY SEQ_IN_INDEX SEPARATOR ',')) AS d
     FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() GROUP BY TABLE_NAME, INDEX_NAME",
    "SELECT CONCAT('generated column ', TABLE_NAME, '.', COLUMN_NAME) AS n,
            CONCAT_WS('|', GENERATION_EXPRESSION, EXTRA) AS d
     FROM information_schema.COLUMNS
     WHERE TABLE_SCHEMA = DATABASE() AND COALESCE(GENERATION_EXPRESSION, '') <> ''",
    "SELECT CONCAT('constraint ', TABLE_NAME, '.', CONSTRAINT_NAME) AS n, CHECK_CLAUSE AS d
     FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()",
];

/// The fingerprint of the MySQL/MariaDB database `c` is connected to, inside the
/// caller's transaction; without `rows`, the tables' content is left out (only the column
/// definitions, objects and counters).
pub(crate) async fn mysql(c: &mut MySqlConnection, rows: bool) -> SqlResult<Fingerprint> {
    // MySQL 8 caches information_schema statistics (AUTO_INCREMENT among them); MariaDB
    // has no such variable and reads them live.
    let _ = sqlx::raw_sql("SET SESSION information_schema_stats_expiry = 0")
        .execute(&mut *c)
        .await;
    let db: String = sqlx::query_scalar("SELECT CAST(DATABASE() AS CHAR)")
        .fetch_one(&mut *c)
        .await?;
    let mut fp = Fingerprint::default();
    let mut schema = Sha256::new();
    let columns = sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), CAST(IS_NULLABLE AS CHAR), CAST(TABLE_TYPE AS CHAR)
         FROM information_schema.COLUMNS JOIN information_schema.TABLES USING (TABLE_SCHEMA, TABLE_NAME)
         WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    .fetch_all(&mut *c)
    .await?;
    // Table → whether it is system-versioned (its history rows are its data too).
    let mut tables = BTreeMap::new();
    for row in &columns {
        let fields: Vec<String> = (0..5)
            .map(|i| row.try_get::<String, _>(i))
            .collect::<SqlResult<_>>()?;
        for f in &fields {
            schema.update(f.as_bytes());
            schema.update(b"\x1f");
        }
        schema.update(b"\x1e");
        match fields[4].as_str() {
            "BASE TABLE" => tables.insert(fields[0].clone(), false),
            "SYSTEM VERSIONED" => tables.insert(fields[0].clone(), true),
            _ => None,
        };
    }
    fp.schema = hex(&schema.finalize());
    for (table, versioned) in tables.iter().filter(|_| rows) {
        // Both read the transaction's snapshot (InnoDB); CHECKSUM TABLE runs in the
        // server over the stored row format, far cheaper than hashing each row's text,
        // and covers a system-versioned table's history rows, which the count then
        // counts too.
        let all = if *versioned {
            " FOR SYSTEM_TIME ALL"
        } else {
            ""
        };
        let count = format!(
            "SELECT CAST(COUNT(*) AS SIGNED) FROM {}{all}",
            quote_my(table)
        );
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(count))
            .fetch_one(&mut *c)
            .await?;
        let checksum = format!("CHECKSUM TABLE {} EXTENDED", quote_my(table));
        let row = sqlx::raw_sql(AssertSqlSafe(checksum))
            .fetch_one(&mut *c)
            .await?;
        let sum: Option<u64> = match row.try_get::<Option<u64>, _>(1) {
            Ok(sum) => sum,
            Err(_) => row.try_get::<Option<i64>, _>(1)?.map(|n| n as u64),
        };
        fp.tables.insert(
            table.clone(),
            TableFingerprint {
                rows: rows as u64,
                checksum: format!("c:{}", sum.unwrap_or(0)),
            },
        );
    }

    let mut objects = BTreeMap::new();
    let qualifier = format!("{}.", quote_my(&db));
    for sql in MY_OBJECT_QUERIES {
        let sql = format!("SELECT CAST(q.n AS CHAR), CAST(q.d AS CHAR) FROM ({sql}) AS q");
        for row in sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *c).await? {
            let name: String = row.try_get(0)?;
            let definition: Option<String> = row.try_get(1)?;
            let definition = definition.unwrap_or_default().replace(&qualifier, "");
            objects.insert(name, digest(&definition));
        }
    }
    objects.extend(mysql_counters(c).await?);
    fp.objects = Some(objects);
    Ok(fp)
}

/// Every AUTO_INCREMENT counter and sequence value: not transactional, like PostgreSQL's
/// sequences.
pub(crate) async fn mysql_counters(c: &mut MySqlConnection) -> SqlResult<BTreeMap<String, String>> {
    let mut objects = BTreeMap::new();
    let counters = sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(AUTO_INCREMENT AS CHAR) FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' AND AUTO_INCREMENT IS NOT NULL",
    )
    .fetch_all(&mut *c)
    .await?;
    for row in &counters {
        let (table, next): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        objects.insert(format!("auto_increment {table}"), format!("next={next}"));
    }
    let sequences: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'SEQUENCE'",
    )
    .fetch_all(&mut *c)
    .await?;
    for s in &sequences {
        let sql = format!(
            "SELECT CAST(next_not_cached_value AS CHAR) FROM {}",
            quote_my(s)
        );
        let next: String = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut *c)
            .await?;
        objects.insert(format!("sequence {s}"), format!("next_not_cached={next}"));
    }
    Ok(objects)
}
