//! FLOAT values that survive a MySQL/MariaDB dump and restore.
//!
//! `mysqldump`/`mariadb-dump` print a FLOAT (single precision) with 6 significant digits:
//! `0.1234567` is dumped as `0.123457` and `3.4028234e38` as `3.40282e38`, so a restore
//! stores other values, and no dump option changes that. A MySQL/MariaDB backup's
//! `database.zst` is therefore one SQL stream in three parts, which the restore runs as
//! it runs any dump:
//!
//! 1. The dump of everything but the triggers (`--skip-triggers`).
//! 2. The fix-ups ([`Fixups`]): for each base table with FLOAT columns, the rows where
//!    some FLOAT value does not survive its printed text
//!    (`CAST(CAST(f AS CHAR) AS FLOAT) <> f`), addressed by the table's key and written as
//!    batched `UPDATE t SET f = CASE key WHEN … THEN <exact value> … END WHERE key IN
//!    (…)`. They are read on the snapshot the dump reads (the fingerprinting connection's)
//!    once the dump's output is complete, and streamed out as they are read.
//! 3. The triggers, from a second dump run ([`TriggerDump`]). MySQL and MariaDB cannot
//!    disable triggers: one created before the fix-ups would fire on them. Trigger
//!    definitions are not snapshot-isolated, so the second run is as consistent as the
//!    first.
//!
//! # Guarantees
//! - A value is written as the shortest decimal of its exact double widening, in
//!   scientific notation (a double literal), which the server converts back to the same
//!   FLOAT. Key values are exact literals: numbers as the server prints them, strings and
//!   binary strings as hex literals in the column's character set and collation.
//! - The fix-ups fire no trigger (there is none yet), check no foreign key and cascade
//!   none (`foreign_key_checks = 0`), and leave `ON UPDATE CURRENT_TIMESTAMP` columns as
//!   they are (assigned to themselves). Stored generated columns are recomputed from the
//!   exact values, as they were when the rows were written.
//! - At most one batch ([`BATCH_ROWS`] rows, about [`BATCH_BYTES`] of SQL) is held in
//!   memory; they commit every [`COMMIT_EVERY`] statements, not once per statement.
//! - A table with such values and no usable key (a PRIMARY KEY, or a UNIQUE key on NOT
//!   NULL columns, none of them FLOAT or generated) is refused with an
//!   [`ErrorKind::InvalidInput`] error naming it, its columns and how many values would
//!   change: by [`check`] (in preflight, before anything is stopped or stored) and again
//!   on the backup's snapshot.
//!
//! # Assumptions
//! - The server has `CAST(… AS FLOAT)` (MySQL 8.0.17, MariaDB 10.4.5). Only databases with
//!   FLOAT columns run a query that needs it.
//! - The dump prints a FLOAT as `CAST(f AS CHAR)` does, and the server reads that text
//!   back as `CAST(… AS FLOAT)` does.
//! - `FLOAT(M,D)` values are rounded to D decimals when stored, so their printed text
//!   always reads back exactly and they are never fixed up.
//! - System-versioned tables are left alone: an UPDATE would add history rows, and their
//!   dump does not keep history anyway.

use futures_util::TryStreamExt;
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, Row};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use crate::database::{Conn, Database, quote_my};
use crate::manifest::DatabaseEngine;
use crate::pipeline::hex;
use cutover_core::driver::{Driver, ExitStatus};
use cutover_core::{Error, ErrorKind, Result};

/// Rows per UPDATE: the `CASE` of this many branches is evaluated per row, so larger
/// batches cost more than they save (857,143 rows: 3.9 s at 500, 6.0 s at 1,000, 5.0 s
/// at 100).
const BATCH_ROWS: usize = 500;
/// A batch is written early once its SQL is this long (long string keys), far below any
/// `max_allowed_packet`.
const BATCH_BYTES: usize = 1 << 20;
/// UPDATEs per transaction: one commit (and fsync) per statement doubled the time.
const COMMIT_EVERY: usize = 100;

/// What the restore runs before the fix-ups: settings it restores afterwards.
const BEGIN: &str = "
--
-- cutover: FLOAT values printed above with too few digits, set back to their exact
-- values before the triggers below are created
--
SET @cutover_sql_mode = @@SESSION.sql_mode, @cutover_time_zone = @@SESSION.time_zone, @cutover_foreign_key_checks = @@SESSION.foreign_key_checks;
SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO', SESSION time_zone = '+00:00', SESSION foreign_key_checks = 0;
";
const END: &str = "SET SESSION sql_mode = @cutover_sql_mode, SESSION time_zone = @cutover_time_zone, SESSION foreign_key_checks = @cutover_foreign_key_checks;\n";

/// The stream a backup stores: `dump`, then for MySQL/MariaDB the fix-ups and the
/// triggers, written by the two halves returned with it.
pub(crate) fn follow(
    engine: DatabaseEngine,
    dump: Box<dyn AsyncRead + Send + Unpin>,
    pipe: usize,
) -> (
    Box<dyn AsyncRead + Send + Unpin>,
    Option<(Fixups, TriggerDump)>,
) {
    if engine == DatabaseEngine::Postgres {
        return (dump, None);
    }
    let (fixups, fixups_out) = tokio::io::duplex(pipe);
    let (triggers, triggers_out) = tokio::io::duplex(pipe);
    let (dumped_tx, dumped) = oneshot::channel();
    (
        Box::new(dump.chain(fixups).chain(triggers)),
        Some((
            Fixups {
                out: fixups_out,
                dumped,
            },
            TriggerDump {
                out: triggers_out,
                dumped: dumped_tx,
            },
        )),
    )
}

/// The second part of a MySQL/MariaDB backup: the FLOAT fix-ups.
#[derive(Debug)]
pub(crate) struct Fixups {
    out: DuplexStream,
    /// Whether the main dump ended successfully; sent once its output is complete.
    dumped: oneshot::Receiver<bool>,
}

/// The third part of a MySQL/MariaDB backup: the triggers.
#[derive(Debug)]
pub(crate) struct TriggerDump {
    out: DuplexStream,
    dumped: oneshot::Sender<bool>,
}

impl TriggerDump {
    /// Once the main dump ended with `main`: lets the fix-ups be read and, if it
    /// succeeded, dumps the triggers. Returns the first failure, else the trigger dump's
    /// status.
    pub(crate) async fn run(
        self,
        main: Result<ExitStatus>,
        database: &Database,
        driver: &dyn Driver,
    ) -> Result<ExitStatus> {
        let TriggerDump { out, dumped } = self;
        let succeeded = matches!(&main, Ok(status) if status.success());
        let _ = dumped.send(succeeded);
        if !succeeded {
            return main;
        }
        let argv = database.triggers_argv();
        database
            .run_tool(driver, &argv, None, Some(Box::pin(out)))
            .await
    }
}

impl Fixups {
    /// Refuses tables whose lossy FLOAT values have no key, waits until the main dump's
    /// output is complete, then writes the fix-ups, all on `conn`'s snapshot (its own when
    /// [`Conn::pin`] could not pin one). Writes nothing when the dump failed.
    pub(crate) async fn write(self, conn: &mut Conn) -> Result<()> {
        let Fixups { mut out, dumped } = self;
        let Some((c, pinned)) = conn.mysql() else {
            return Ok(());
        };
        if !pinned {
            for sql in [
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            ] {
                raw(c, sql).await.map_err(read_error)?;
            }
        }
        let written = async {
            let tables = float_tables(c).await.map_err(read_error)?;
            refuse_unkeyed(c, &tables).await?;
            // Until the dump's output is complete the stream cannot take the fix-ups: a
            // result read meanwhile would wait on the server (and its net_write_timeout).
            if !dumped.await.unwrap_or(false) {
                return Ok(());
            }
            write_fixups(c, &tables, &mut out).await
        }
        .await;
        if !pinned {
            let _ = raw(c, "COMMIT").await;
        }
        written?;
        out.shutdown().await.map_err(write_error)
    }
}

/// Refuses, before a backup, a database with FLOAT values that a restore would change
/// and no key to correct them by (see the module documentation).
pub(crate) async fn check(conn: &mut Conn) -> Result<()> {
    let Some((c, _)) = conn.mysql() else {
        return Ok(());
    };
    let tables = float_tables(c).await.map_err(read_error)?;
    refuse_unkeyed(c, &tables).await
}

type SqlResult<T> = std::result::Result<T, sqlx::Error>;

async fn raw(c: &mut MySqlConnection, sql: &str) -> SqlResult<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(c)
        .await
        .map(|_| ())
}

fn read_error(e: sqlx::Error) -> Error {
    Error::new(
        ErrorKind::Other,
        "cannot read the FLOAT values the dump prints inexactly",
    )
    .with_operation("dump")
    .with_source(e)
}

fn write_error(e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Other,
        "cannot write the FLOAT fix-ups into the backup",
    )
    .with_operation("dump")
    .with_source(e)
}

/// A base table with FLOAT columns.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FloatTable {
    name: String,
    /// Its FLOAT columns that are not generated.
    floats: Vec<String>,
    /// Its `ON UPDATE CURRENT_TIMESTAMP` columns.
    on_update: Vec<String>,
    /// The key its rows are addressed by, if it has a usable one.
    key: Option<Vec<KeyColumn>>,
}

/// A column of a table's key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyColumn {
    name: String,
    kind: KeyKind,
}

/// How a key column's values are read and written as exact literals.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyKind {
    /// Integers and DECIMAL: their text.
    Number,
    /// BIT: its integer value.
    Bit,
    /// DOUBLE: the shortest decimal that reads back exactly.
    Double,
    /// Dates, times, YEAR, UUID, INET4/INET6: their text, quoted (read with the session
    /// time zone at UTC, as the dump's).
    Text,
    /// Character strings, ENUM and SET: their bytes, as a hex literal of the column's
    /// character set and collation.
    Chars { charset: String, collation: String },
    /// Binary strings: their bytes as a hex literal.
    Bytes,
}

impl KeyKind {
    /// The kind of a column of `data_type`; `None` when its values cannot be addressed
    /// exactly (FLOAT, JSON as a key, geometry, …).
    fn of(data_type: &str, charset: &str, collation: &str) -> Option<Self> {
        let name_ok =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        Some(match data_type {
            "tinyint" | "smallint" | "mediumint" | "int" | "bigint" | "decimal" => Self::Number,
            "bit" => Self::Bit,
            "double" => Self::Double,
            "date" | "datetime" | "timestamp" | "time" | "year" | "uuid" | "inet4" | "inet6" => {
                Self::Text
            }
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set"
                if name_ok(charset) && name_ok(collation) =>
            {
                Self::Chars {
                    charset: charset.to_string(),
                    collation: collation.to_string(),
                }
            }
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => Self::Bytes,
            _ => return None,
        })
    }
}

impl KeyColumn {
    /// What the scan selects for this column.
    fn select(&self) -> String {
        let name = quote_my(&self.name);
        match self.kind {
            KeyKind::Number | KeyKind::Text => format!("CAST({name} AS CHAR)"),
            KeyKind::Bit => format!("CAST({name} + 0 AS CHAR)"),
            KeyKind::Double => name,
            KeyKind::Chars { .. } | KeyKind::Bytes => format!("CAST({name} AS BINARY)"),
        }
    }

    /// The exact literal of the value the scan selected at `i`.
    fn literal(&self, row: &MySqlRow, i: usize) -> Result<String> {
        let unexpected = |what: &str| {
            Error::new(
                ErrorKind::Other,
                format!(
                    "unexpected value of key column {} for the FLOAT fix-ups: {what}",
                    quote_my(&self.name)
                ),
            )
            .with_operation("dump")
        };
        let text = |bytes: &[u8]| {
            std::str::from_utf8(bytes)
                .map(str::to_string)
                .map_err(|_| unexpected(&String::from_utf8_lossy(bytes)))
        };
        match &self.kind {
            KeyKind::Double => {
                let v: f64 = row.try_get(i).map_err(read_error)?;
                double_literal(v).ok_or_else(|| unexpected(&v.to_string()))
            }
            KeyKind::Number | KeyKind::Bit => {
                let s = text(&row.try_get::<Vec<u8>, _>(i).map_err(read_error)?)?;
                if is_number(&s) {
                    Ok(s)
                } else {
                    Err(unexpected(&s))
                }
            }
            KeyKind::Text => {
                let s = text(&row.try_get::<Vec<u8>, _>(i).map_err(read_error)?)?;
                let plain = s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | ' '));
                if plain {
                    Ok(format!("'{s}'"))
                } else {
                    Err(unexpected(&s))
                }
            }
            KeyKind::Chars { charset, collation } => {
                let bytes: Vec<u8> = row.try_get(i).map_err(read_error)?;
                Ok(format!("_{charset} X'{}' COLLATE {collation}", hex(&bytes)))
            }
            KeyKind::Bytes => {
                let bytes: Vec<u8> = row.try_get(i).map_err(read_error)?;
                Ok(format!("X'{}'", hex(&bytes)))
            }
        }
    }
}

/// `-12`, `3.50`: what the server prints for an integer or DECIMAL.
fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && all_digits(fraction)
}

/// A double literal that reads back as exactly `v`: Rust prints the shortest such
/// decimal, and the exponent makes the server read it as a double.
fn double_literal(v: f64) -> Option<String> {
    v.is_finite().then(|| format!("{v:e}"))
}

/// The exact literal of a FLOAT value.
fn float_literal(v: Option<f32>) -> Option<String> {
    match v {
        None => Some("NULL".to_string()),
        Some(v) => double_literal(f64::from(v)),
    }
}

/// The base tables with FLOAT columns, their `ON UPDATE` columns and keys.
async fn float_tables(c: &mut MySqlConnection) -> SqlResult<Vec<FloatTable>> {
    // Stored and virtual generated columns are computed, never assigned.
    let columns = sqlx::query(
        "SELECT CAST(c.TABLE_NAME AS CHAR), CAST(c.COLUMN_NAME AS CHAR),
                CAST(c.DATA_TYPE = 'float' AS SIGNED)
         FROM information_schema.COLUMNS c
         JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
         WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE'
           AND COALESCE(c.GENERATION_EXPRESSION, '') = ''
           AND (c.DATA_TYPE = 'float' OR c.EXTRA LIKE '%on update%')
         ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
    )
    .fetch_all(&mut *c)
    .await?;
    let mut tables: Vec<FloatTable> = Vec::new();
    for row in &columns {
        let (table, column, float): (String, String, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if tables.last().is_none_or(|t| t.name != table) {
            tables.push(FloatTable {
                name: table,
                floats: Vec::new(),
                on_update: Vec::new(),
                key: None,
            });
        }
        let last = tables.last_mut().expect("pushed above");
        if float != 0 {
            last.floats.push(column);
        } else {
            last.on_update.push(column);
        }
    }
    tables.retain(|t| !t.floats.is_empty());
    if tables.is_empty() {
        return Ok(tables);
    }

    // Unique keys, the primary key first; a functional key part has no column.
    let parts = sqlx::query(
        "SELECT CAST(s.TABLE_NAME AS CHAR), CAST(s.INDEX_NAME AS CHAR), CAST(COALESCE(s.COLUMN_NAME, '') AS CHAR),
                CAST(COALESCE(c.DATA_TYPE, '') AS CHAR), CAST(COALESCE(c.IS_NULLABLE, 'YES') AS CHAR),
                CAST(COALESCE(c.GENERATION_EXPRESSION, '') AS CHAR),
                CAST(COALESCE(c.CHARACTER_SET_NAME, '') AS CHAR), CAST(COALESCE(c.COLLATION_NAME, '') AS CHAR)
         FROM information_schema.STATISTICS s
         LEFT JOIN information_schema.COLUMNS c
           ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME
         WHERE s.TABLE_SCHEMA = DATABASE() AND s.NON_UNIQUE = 0
         ORDER BY s.TABLE_NAME, s.INDEX_NAME <> 'PRIMARY', s.INDEX_NAME, s.SEQ_IN_INDEX",
    )
    .fetch_all(&mut *c)
    .await?;
    // (table, index) → its columns, or None once one of them is unusable.
    let mut keys: Vec<(String, String, Option<Vec<KeyColumn>>)> = Vec::new();
    for row in &parts {
        let fields: Vec<String> = (0..8).map(|i| row.try_get(i)).collect::<SqlResult<_>>()?;
        let [
            table,
            index,
            column,
            data_type,
            nullable,
            generated,
            charset,
            collation,
        ] = <[String; 8]>::try_from(fields).expect("eight columns");
        if !tables.iter().any(|t| t.name == table) {
            continue;
        }
        if keys
            .last()
            .is_none_or(|(t, i, _)| *t != table || *i != index)
        {
            keys.push((table, index, Some(Vec::new())));
        }
        let (_, _, columns) = keys.last_mut().expect("pushed above");
        let usable = !column.is_empty() && nullable == "NO" && generated.is_empty();
        match (
            columns.as_mut(),
            KeyKind::of(&data_type, &charset, &collation),
        ) {
            (Some(columns), Some(kind)) if usable => columns.push(KeyColumn { name: column, kind }),
            _ => *columns = None,
        }
    }
    for (table, _, columns) in keys {
        let Some(columns) = columns else { continue };
        if let Some(t) = tables.iter_mut().find(|t| t.name == table)
            && t.key.is_none()
        {
            t.key = Some(columns);
        }
    }
    Ok(tables)
}

/// `CAST(CAST(f AS CHAR) AS FLOAT) <> f`: the value does not survive its printed text.
fn lossy(column: &str) -> String {
    let c = quote_my(column);
    format!("CAST(CAST({c} AS CHAR) AS FLOAT) <> {c}")
}

/// Refuses the tables without a usable key whose FLOAT values a restore would change.
async fn refuse_unkeyed(c: &mut MySqlConnection, tables: &[FloatTable]) -> Result<()> {
    let mut refused = Vec::new();
    for t in tables.iter().filter(|t| t.key.is_none()) {
        let sums: Vec<String> = t
            .floats
            .iter()
            .map(|f| format!("CAST(COALESCE(SUM({}), 0) AS SIGNED)", lossy(f)))
            .collect();
        let sql = format!("SELECT {} FROM {}", sums.join(", "), quote_my(&t.name));
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&mut *c)
            .await
            .map_err(read_error)?;
        let mut columns = Vec::new();
        for (i, f) in t.floats.iter().enumerate() {
            let n: i64 = row.try_get(i).map_err(read_error)?;
            if n > 0 {
                let values = if n == 1 { "value" } else { "values" };
                columns.push(format!("{n} {values} of column {}", quote_my(f)));
            }
        }
        if !columns.is_empty() {
            refused.push(format!(
                "table {} ({})",
                quote_my(&t.name),
                columns.join(", ")
            ));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "a restore would change FLOAT values, which the dump prints with 6 significant digits, and cutover can correct them only by a key: {}; \
             each table needs a PRIMARY KEY (or a UNIQUE key on NOT NULL columns that are neither FLOAT nor generated), \
             or those columns can be changed to DOUBLE, which dumps exactly; no backup was taken",
            refused.join("; ")
        ),
    )
    .with_operation("backup"))
}

/// One UPDATE's rows: key literal and FLOAT value literals per row.
struct Batch<'t> {
    table: &'t FloatTable,
    key: &'t [KeyColumn],
    rows: Vec<(String, Vec<String>)>,
    bytes: usize,
}

impl<'t> Batch<'t> {
    fn new(table: &'t FloatTable, key: &'t [KeyColumn]) -> Self {
        Self {
            table,
            key,
            rows: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds a row of the scan: key columns first, then the FLOAT columns.
    fn push(&mut self, row: &MySqlRow) -> Result<()> {
        let literals: Vec<String> = self
            .key
            .iter()
            .enumerate()
            .map(|(i, k)| k.literal(row, i))
            .collect::<Result<_>>()?;
        let key = match literals.as_slice() {
            [one] => one.clone(),
            many => format!("({})", many.join(", ")),
        };
        let mut values = Vec::with_capacity(self.table.floats.len());
        for (i, f) in self.table.floats.iter().enumerate() {
            let v: Option<f32> = row.try_get(self.key.len() + i).map_err(read_error)?;
            values.push(float_literal(v).ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!(
                        "FLOAT column {} of table {} holds a value that is not finite",
                        quote_my(f),
                        quote_my(&self.table.name)
                    ),
                )
            })?);
        }
        self.bytes +=
            key.len() * (values.len() + 1) + values.iter().map(String::len).sum::<usize>();
        self.rows.push((key, values));
        Ok(())
    }

    fn full(&self) -> bool {
        self.rows.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES
    }

    /// The UPDATE setting every FLOAT column of the rows so far; empties the batch.
    fn take(&mut self) -> String {
        let rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        let key = match self.key {
            [one] => quote_my(&one.name),
            many => format!(
                "({})",
                many.iter()
                    .map(|k| quote_my(&k.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let single = self.key.len() == 1;
        let mut assignments = Vec::new();
        for (i, f) in self.table.floats.iter().enumerate() {
            let f = quote_my(f);
            let mut case = if single {
                format!("{f} = CASE {key}")
            } else {
                format!("{f} = CASE")
            };
            for (k, values) in &rows {
                if single {
                    case.push_str(&format!(" WHEN {k} THEN {}", values[i]));
                } else {
                    case.push_str(&format!(" WHEN {key} = {k} THEN {}", values[i]));
                }
            }
            case.push_str(&format!(" ELSE {f} END"));
            assignments.push(case);
        }
        // Assigned, an ON UPDATE CURRENT_TIMESTAMP column keeps its value.
        for c in &self.table.on_update {
            let c = quote_my(c);
            assignments.push(format!("{c} = {c}"));
        }
        let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        format!(
            "UPDATE {} SET {} WHERE {key} IN ({});\n",
            quote_my(&self.table.name),
            assignments.join(", "),
            keys.join(", ")
        )
    }
}

/// The fix-up script as it is written: settings once, transactions of
/// [`COMMIT_EVERY`] statements.
struct Script<'o> {
    out: &'o mut DuplexStream,
    begun: bool,
    /// Statements in the open transaction.
    open: usize,
}

impl Script<'_> {
    async fn statement(&mut self, sql: &str) -> Result<()> {
        if !self.begun {
            self.out
                .write_all(BEGIN.as_bytes())
                .await
                .map_err(write_error)?;
            self.begun = true;
        }
        if self.open == 0 {
            self.out
                .write_all(b"START TRANSACTION;\n")
                .await
                .map_err(write_error)?;
        }
        self.out
            .write_all(sql.as_bytes())
            .await
            .map_err(write_error)?;
        self.open += 1;
        if self.open == COMMIT_EVERY {
            self.commit().await?;
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<()> {
        if self.open > 0 {
            self.out
                .write_all(b"COMMIT;\n")
                .await
                .map_err(write_error)?;
            self.open = 0;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<()> {
        self.commit().await?;
        if self.begun {
            self.out
                .write_all(END.as_bytes())
                .await
                .map_err(write_error)?;
        }
        Ok(())
    }
}

/// Scans each keyed table for values that do not survive their text and writes their
/// UPDATEs as the rows arrive.
async fn write_fixups(
    c: &mut MySqlConnection,
    tables: &[FloatTable],
    out: &mut DuplexStream,
) -> Result<()> {
    // TIMESTAMP keys print in the session time zone: UTC, as the fix-ups set it.
    raw(
        c,
        "SET @cutover_time_zone = @@SESSION.time_zone, SESSION time_zone = '+00:00'",
    )
    .await
    .map_err(read_error)?;
    let mut script = Script {
        out,
        begun: false,
        open: 0,
    };
    for t in tables {
        let Some(key) = &t.key else { continue };
        let selected: Vec<String> = key
            .iter()
            .map(KeyColumn::select)
            .chain(t.floats.iter().map(|f| quote_my(f)))
            .collect();
        let condition: Vec<String> = t.floats.iter().map(|f| lossy(f)).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            selected.join(", "),
            quote_my(&t.name),
            condition.join(" OR ")
        );
        // A prepared statement: FLOAT values arrive as their 4 bytes, not as text.
        let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut *c);
        let mut batch = Batch::new(t, key);
        while let Some(row) = rows.try_next().await.map_err(read_error)? {
            batch.push(&row)?;
            if batch.full() {
                script.statement(&batch.take()).await?;
            }
        }
        drop(rows);
        if !batch.rows.is_empty() {
            script.statement(&batch.take()).await?;
        }
        script.commit().await?;
    }
    script.finish().await?;
    raw(c, "SET SESSION time_zone = @cutover_time_zone")
        .await
        .map_err(read_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_values_are_written_as_double_literals_that_read_back_exactly() {
        for v in [
            0.1234567f32,
            23.456789,
            3.4028235e38,
            1.1754944e-38,
            1e-45,
            -0.5,
        ] {
            let text = float_literal(Some(v)).unwrap();
            assert!(text.contains('e'), "{text} is a double literal");
            let back: f64 = text.parse().unwrap();
            assert_eq!(back, f64::from(v), "{text}");
            assert_eq!((back as f32).to_bits(), v.to_bits(), "{text}");
        }
        assert_eq!(
            float_literal(Some(0.1234567)).unwrap(),
            "1.2345670163631439e-1"
        );
        assert_eq!(float_literal(None).unwrap(), "NULL");
        assert_eq!(float_literal(Some(f32::NAN)), None);
    }

    #[test]
    fn only_server_printed_numbers_pass_as_number_literals() {
        for ok in ["0", "-12", "18446744073709551615", "3.50", "-0.0000000001"] {
            assert!(is_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "1.", ".5", "1e5", "1 OR 1", "0x10", "1;DROP", "--1",
        ] {
            assert!(!is_number(bad), "{bad}");
        }
    }

    #[test]
    fn key_kinds_cover_exact_types_only() {
        assert_eq!(KeyKind::of("bigint", "", ""), Some(KeyKind::Number));
        assert_eq!(KeyKind::of("float", "", ""), None);
        assert_eq!(KeyKind::of("json", "utf8mb4", "utf8mb4_bin"), None);
        assert_eq!(KeyKind::of("varchar", "utf8mb4", "x' OR '"), None);
        assert_eq!(
            KeyKind::of("varchar", "utf8mb4", "utf8mb4_unicode_ci"),
            Some(KeyKind::Chars {
                charset: "utf8mb4".into(),
                collation: "utf8mb4_unicode_ci".into()
            })
        );
    }

    fn table(key: &[&str]) -> (FloatTable, Vec<KeyColumn>) {
        let key: Vec<KeyColumn> = key
            .iter()
            .map(|k| KeyColumn {
                name: k.to_string(),
                kind: KeyKind::Number,
            })
            .collect();
        let t = FloatTable {
            name: "t`x".into(),
            floats: vec!["f".into(), "g".into()],
            on_update: vec!["changed".into()],
            key: Some(key.clone()),
        };
        (t, key)
    }

    #[test]
    fn a_batch_updates_every_float_column_by_key_and_keeps_on_update_columns() {
        let (t, key) = table(&["id"]);
        let mut batch = Batch::new(&t, &key);
        batch.rows = vec![
            ("1".into(), vec!["1e0".into(), "NULL".into()]),
            ("2".into(), vec!["2e0".into(), "3e0".into()]),
        ];
        assert_eq!(
            batch.take(),
            "UPDATE `t``x` SET `f` = CASE `id` WHEN 1 THEN 1e0 WHEN 2 THEN 2e0 ELSE `f` END, \
             `g` = CASE `id` WHEN 1 THEN NULL WHEN 2 THEN 3e0 ELSE `g` END, \
             `changed` = `changed` WHERE `id` IN (1, 2);\n"
        );
        assert!(batch.rows.is_empty());

        let (t, key) = table(&["a", "b"]);
        let mut batch = Batch::new(&t, &key);
        batch.rows = vec![("(1, 'x')".into(), vec!["1e0".into(), "NULL".into()])];
        assert_eq!(
            batch.take(),
            "UPDATE `t``x` SET `f` = CASE WHEN (`a`, `b`) = (1, 'x') THEN 1e0 ELSE `f` END, \
             `g` = CASE WHEN (`a`, `b`) = (1, 'x') THEN NULL ELSE `g` END, \
             `changed` = `changed` WHERE (`a`, `b`) IN ((1, 'x'));\n"
        );
    }
}
