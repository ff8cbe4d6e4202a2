//! `cutover check`: the configuration tested against the real deployment, changing
//! nothing.
//!
//! Every check is made even when an earlier one failed (a broken config names every
//! problem at once): the configuration loads, the backend answers (`Engine::checks`, the
//! same code as a run's preflight and `cutover plan`), the backup engine's checks
//! (database reachable with the privileges backups need, dump tools present and fitting
//! the server, the store writable with room), the journal; with `--to TAG` the tag is
//! pulled — into the engine's image cache, touching no instance, as an upgrade does
//! before its stop — and the upgrade's own checks run. Exit 0 when all passed, else 2.

use std::sync::Arc;

use cutover_core::check::Check;
use cutover_core::{BackupMode, Backups, Driver, Engine, Error, Plan, SqliteJournal};
use serde_json::json;

use crate::args::Cli;
use crate::commands::{NoBackups, driver_context, dump_backups, open_journal};
use crate::config::{Config, JournalAt};
use crate::exit;
use crate::registry::Registry;
use crate::render::Renderer;
use crate::unreachable::Unreachable;

/// Runs the checks and renders them; returns the exit code.
pub async fn run(cli: &Cli, registry: &Registry, r: &Renderer, to: Option<&str>) -> u8 {
    let source = cli.config.display().to_string();
    let checks = match Config::load(Some(&cli.config)) {
        Ok(config) => {
            let mut checks = vec![Check::passed(
                "config",
                format!("{source} is valid ({} driver)", config.driver.kind),
            )];
            checks.extend(against(&config, cli, registry, to).await);
            checks
        }
        Err(e) => vec![Check::failed("config", Error::invalid(e.to_string()))],
    };
    let failed = checks.iter().filter(|c| !c.is_ok()).count();
    r.document(
        json!({
            "command": "check",
            "passed": failed == 0,
            "checks": checks.iter().map(|c| match &c.result {
                Ok(detail) => json!({ "check": c.name, "passed": true, "detail": detail }),
                Err(e) => json!({ "check": c.name, "passed": false, "error": e.report() }),
            }).collect::<Vec<_>>(),
        }),
        || {
            let mut out = format!("checks of {source}\n");
            for c in &checks {
                match &c.result {
                    Ok(detail) => out.push_str(&format!("  ok      {}: {detail}\n", c.name)),
                    Err(e) => out.push_str(&format!("  FAILED  {}: {}\n", c.name, e.report())),
                }
            }
            if failed == 0 {
                out.push_str("every check passed\n");
            } else {
                out.push_str(&format!(
                    "{failed} of {} checks failed: fix them, then run `cutover check` again\n",
                    checks.len()
                ));
            }
            out
        },
    );
    if failed == 0 {
        exit::SUCCESS
    } else {
        exit::USAGE
    }
}

/// The checks after the configuration loaded.
async fn against(config: &Config, cli: &Cli, registry: &Registry, to: Option<&str>) -> Vec<Check> {
    let mut checks = Vec::new();
    let kind = config.driver.kind.clone();
    let built = registry.build(driver_context(config, &cli.config)).await;
    // A backend that cannot be reached fails the engine's "driver" check with the reason.
    let (driver, own): (Arc<dyn Driver>, _) = match built {
        Ok(t) => (t.driver, t.backups),
        Err(e) => (Arc::new(Unreachable::new(&kind, &e)), None),
    };
    let backups: Option<Arc<dyn Backups>> = match (&config.database, own) {
        (Some(db), _) => match dump_backups(config, db) {
            Ok(b) => Some(Arc::new(b)),
            Err(f) => {
                checks.push(Check::failed(
                    "database settings",
                    Error::invalid(f.message()),
                ));
                None
            }
        },
        (None, own) => {
            if own.is_none() {
                checks.push(Check::passed(
                    "database",
                    "no [database]: runs back up no data, so an upgrade needs --backup skip",
                ));
            }
            own
        }
    };
    let has_backups = backups.is_some();
    let journal = match SqliteJournal::in_memory().await {
        Ok(j) => j,
        Err(e) => {
            checks.push(Check::failed("journal", e));
            return checks;
        }
    };
    let engine = Engine::new(
        driver,
        backups.unwrap_or_else(|| Arc::new(NoBackups)),
        Arc::new(journal),
        config.settings(),
    );
    let to = match to.map(|t| config.image_with_tag(t)).transpose() {
        Ok(to) => to,
        Err(e) => {
            checks.push(Check::failed("tag", e));
            None
        }
    };
    let plan = match &to {
        Some(to) => Plan::Upgrade {
            to: to.clone(),
            backup: if has_backups {
                BackupMode::Offline
            } else {
                BackupMode::Skip
            },
            replicas: None,
            allow_downgrade: false,
            hooks: config.hook_commands().points(),
        },
        None if has_backups => Plan::Backup,
        // Without backups and a tag, the checks every plan makes: settings and driver.
        None => Plan::Prune { keep: 1 },
    };
    let (seen, found) = engine.checks(&plan).await;
    checks.extend(found.into_iter().filter(|c| c.name != "keep"));
    if let (Some(to), Some(_)) = (&to, &seen) {
        checks.push(engine.pull_check(to).await);
    }
    checks.push(journal_check(config).await);
    checks
}

/// The journal: an existing one opens (and says whether a run holds the lock); a missing
/// file is created by the first run, so its directory must be creatable; a PostgreSQL
/// journal must take the connection (and its schema).
async fn journal_check(config: &Config) -> Check {
    let (shown, journal) = match config.journal_at() {
        Err(e) => return Check::failed("journal", Error::invalid(e.to_string())),
        Ok(JournalAt::File(path)) if !path.exists() => {
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| !d.exists()) {
                dir = d.parent();
            }
            return match dir.map(std::fs::metadata) {
                Some(Ok(m)) if m.is_dir() && !m.permissions().readonly() => Check::passed(
                    "journal",
                    format!(
                        "{} does not exist yet; the first run creates it",
                        path.display()
                    ),
                ),
                _ => Check::failed(
                    "journal",
                    Error::invalid(format!(
                        "{} cannot be created: no writable directory above it",
                        path.display()
                    )),
                ),
            };
        }
        Ok(JournalAt::File(path)) => (path.display().to_string(), open_journal(config).await),
        Ok(JournalAt::Postgres(url)) => (
            url.split('?').next().unwrap_or_default().to_string(),
            open_journal(config).await,
        ),
    };
    let journal = match journal {
        Ok(j) => j,
        Err(f) => return Check::failed("journal", Error::invalid(f.message())),
    };
    Check::of(
        "journal",
        journal.lock(&config.app.name).await.map(|lock| match lock {
            Some(l) => format!(
                "{shown}: the lock is held by run {} (`cutover status` says more)",
                l.holder.run
            ),
            None => format!("{shown}: the lock is free"),
        }),
    )
}
