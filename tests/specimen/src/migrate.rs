//! Start-up migrations, run the way the reference application runs them: every instance
//! checks what is applied and applies the rest, with no lock. Running two at once is
//! therefore unsafe, which is what cutover must prevent and what the tests must be able
//! to see. Each run is recorded in `specimen_migrations` (run id, version, instance,
//! start and end in microseconds since the epoch, outcome); each applied version in
//! `specimen_schema`, one row per application, so a double application shows twice.
//!
//! No migration uses a transaction: MySQL commits DDL implicitly, and the vendor's
//! migrations do not either, so a crash mid-way leaves a half-migrated schema.

use std::time::Duration;

use sqlx::Row;

use crate::config::{Config, Variant, parse_triple};
use crate::db::{Db, Param};
use crate::log::{Log, now_micros};

/// Every release that changes the schema, oldest first.
pub const RELEASES: [(u32, u32, u32); 3] = [(1, 0, 0), (1, 1, 0), (1, 2, 0)];

/// Why start-up must stop.
#[derive(Debug)]
pub enum Failure {
    /// The database refused a statement.
    Database(sqlx::Error),
    /// This is a `-broken` build; it did the damage it exists to do.
    Broken,
    /// The schema belongs to a newer release, as after an image-only rollback.
    SchemaNewer {
        /// Newest version recorded in the database.
        schema: String,
    },
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// Brings the schema to this build's version.
pub async fn run(db: &Db, config: &Config, log: &Log) -> Result<(), Failure> {
    bootstrap(db).await?;
    let applied = applied(db).await?;
    let own = config.version.base;
    if let Some(newest) = applied.iter().max().filter(|v| **v > own) {
        return Err(Failure::SchemaNewer {
            schema: dotted(*newest),
        });
    }
    for release in RELEASES
        .into_iter()
        .filter(|r| *r <= own && !applied.contains(r))
    {
        let partial = config.version.variant == Variant::Broken && release == own;
        apply(db, config, log, release, partial).await?;
    }
    if config.version.variant == Variant::Broken {
        // Its own migration was already there: a broken release still crashes.
        return Err(Failure::Broken);
    }
    Ok(())
}

/// Versions recorded as applied.
pub async fn applied(db: &Db) -> Result<Vec<(u32, u32, u32)>, sqlx::Error> {
    let rows = db
        .fetch_all("SELECT DISTINCT version FROM specimen_schema", &[])
        .await?;
    let mut versions = Vec::with_capacity(rows.len());
    for row in rows {
        let text: String = row.try_get(0)?;
        versions.extend(parse_triple(&text));
    }
    Ok(versions)
}

/// The newest applied version, or none on an empty database.
pub async fn schema_version(db: &Db) -> Result<Option<String>, sqlx::Error> {
    Ok(applied(db).await?.into_iter().max().map(dotted))
}

async fn bootstrap(db: &Db) -> Result<(), sqlx::Error> {
    let options = db.table_options();
    db.execute(&format!(
        "CREATE TABLE IF NOT EXISTS specimen_migrations (
            run_id VARCHAR(100) NOT NULL PRIMARY KEY,
            version VARCHAR(32) NOT NULL,
            instance VARCHAR(100) NOT NULL,
            started_us BIGINT NOT NULL,
            finished_us BIGINT NULL,
            outcome VARCHAR(16) NOT NULL
        ){options}"
    ))
    .await?;
    db.execute(&format!(
        "CREATE TABLE IF NOT EXISTS specimen_schema (
            version VARCHAR(32) NOT NULL,
            run_id VARCHAR(100) NOT NULL,
            applied_us BIGINT NOT NULL
        ){options}"
    ))
    .await?;
    Ok(())
}

async fn apply(
    db: &Db,
    config: &Config,
    log: &Log,
    release: (u32, u32, u32),
    partial: bool,
) -> Result<(), Failure> {
    let version = dotted(release);
    let started = now_micros();
    let run_id = format!("{}-{version}-{started}", config.instance);
    db.execute_with(
        "INSERT INTO specimen_migrations (run_id, version, instance, started_us, finished_us, outcome)
         VALUES (?, ?, ?, ?, NULL, 'running')",
        &[
            Param::Text(&run_id),
            Param::Text(&version),
            Param::Text(&config.instance),
            Param::Int(started),
        ],
    )
    .await?;
    log.event(
        "migration_start",
        &[("migration", &version), ("run", &run_id)],
    );
    if config.migration_stretch > Duration::ZERO {
        tokio::time::sleep(config.migration_stretch).await;
    }
    let finish = |outcome: &'static str| {
        let run_id = run_id.clone();
        async move {
            db.execute_with(
                "UPDATE specimen_migrations SET finished_us = ?, outcome = ? WHERE run_id = ?",
                &[
                    Param::Int(now_micros()),
                    Param::Text(outcome),
                    Param::Text(&run_id),
                ],
            )
            .await
        }
    };
    let steps = match release {
        (1, 0, 0) => create_schema(db).await,
        (1, 1, 0) => fold_names_and_audit(db, &run_id, partial).await,
        _ => measure_bodies(db, partial).await,
    };
    if let Err(e) = steps {
        log.event(
            "migration_failed",
            &[("migration", &version), ("error", &e)],
        );
        let _ = finish("failed").await;
        return Err(e.into());
    }
    if partial {
        finish("failed").await?;
        log.event(
            "migration_failed",
            &[
                ("migration", &version),
                ("error", &"broken release: stopped half-way"),
            ],
        );
        return Err(Failure::Broken);
    }
    db.execute_with(
        "INSERT INTO specimen_schema (version, run_id, applied_us) VALUES (?, ?, ?)",
        &[
            Param::Text(&version),
            Param::Text(&run_id),
            Param::Int(now_micros()),
        ],
    )
    .await?;
    finish("ok").await?;
    let took = Duration::from_micros(u64::try_from(now_micros() - started).unwrap_or(0));
    log.event(
        "migration_end",
        &[
            ("migration", &version),
            ("run", &run_id),
            ("seconds", &took.as_secs_f64()),
        ],
    );
    Ok(())
}

/// 1.0.0: the original schema, with an audit table that later releases fill.
async fn create_schema(db: &Db) -> Result<(), sqlx::Error> {
    db.execute(&format!(
        "CREATE TABLE IF NOT EXISTS items (
            id {},
            name VARCHAR(255) NOT NULL,
            body TEXT NOT NULL,
            created_us BIGINT NOT NULL
        ){}",
        db.serial_key(),
        db.table_options()
    ))
    .await?;
    db.execute(&format!(
        "CREATE TABLE IF NOT EXISTS item_audit (
            id {},
            item_id BIGINT NOT NULL,
            name VARCHAR(255) NOT NULL,
            run_id VARCHAR(100) NOT NULL
        ){}",
        db.serial_key(),
        db.table_options()
    ))
    .await?;
    Ok(())
}

/// 1.1.0: adds a case-folded name and seeds the audit table with a copy of every item.
/// The copy is the non-idempotent part: run twice, every item is audited twice. The schema
/// change is `ADD COLUMN IF NOT EXISTS`, which both engines serialise on the table lock, so
/// two instances migrating at once both succeed and leave the damage in the data
/// (a `CREATE TABLE IF NOT EXISTS` racing itself on PostgreSQL would instead crash one).
async fn fold_names_and_audit(db: &Db, run_id: &str, partial: bool) -> Result<(), sqlx::Error> {
    db.execute("ALTER TABLE items ADD COLUMN IF NOT EXISTS name_folded VARCHAR(255) NULL")
        .await?;
    db.execute_with(
        "INSERT INTO item_audit (item_id, name, run_id) SELECT id, name, ? FROM items ORDER BY id",
        &[Param::Text(run_id)],
    )
    .await?;
    if partial {
        // The broken release dies here: new column and audit rows exist, names unfolded,
        // version not recorded.
        return Ok(());
    }
    db.execute("UPDATE items SET name_folded = LOWER(name)")
        .await?;
    Ok(())
}

/// 1.2.0: adds and fills the byte length of every body (idempotent).
async fn measure_bodies(db: &Db, partial: bool) -> Result<(), sqlx::Error> {
    db.execute("ALTER TABLE items ADD COLUMN IF NOT EXISTS body_bytes BIGINT NULL")
        .await?;
    if partial {
        return Ok(());
    }
    db.execute("UPDATE items SET body_bytes = OCTET_LENGTH(body)")
        .await?;
    Ok(())
}

/// `(1, 2, 0)` as `1.2.0`.
pub fn dotted((major, minor, patch): (u32, u32, u32)) -> String {
    format!("{major}.{minor}.{patch}")
}

/// The item columns this release writes, beyond the id.
pub fn item_columns(own: (u32, u32, u32)) -> &'static [&'static str] {
    if own >= (1, 2, 0) {
        &["name", "body", "created_us", "name_folded", "body_bytes"]
    } else if own >= (1, 1, 0) {
        &["name", "body", "created_us", "name_folded"]
    } else {
        &["name", "body", "created_us"]
    }
}
