//! The commands: set up the engine from the configuration, run, render, map to exit codes.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::CommandFactory as _;
#[cfg(feature = "s3")]
use cutover_core::backup::S3Store;
use cutover_core::backup::{Database, DumpBackups, LocalStore, Store, ToolSite};
use cutover_core::journal::{Entry, Journal, RunHeader, RunRecord, RunStatus};
use cutover_core::preview::{PREFLIGHT_STOP, Preview};
use cutover_core::{
    BackupId, BackupMode, BackupRef, BackupScope, BackupSummary, Backups, Driver, Engine, Error,
    ErrorKind, EventSink, ExecTarget, Finished, Output, Plan, Settings, SqliteJournal,
};
use serde_json::json;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::args::{BackupChoice, BackupsCommand, Cli, Command, UpgradeArgs};
use crate::config::Config;
use crate::confirm;
use crate::exit;
use crate::registry::{DriverContext, Registry};
use crate::render::{Renderer, seconds};

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failed {
    kind: String,
    message: String,
    code: u8,
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed {
            kind: e.kind().to_string(),
            message: e.report(),
            code: exit::for_error(e.kind()),
        }
    }
}

impl From<crate::config::ConfigError> for Failed {
    fn from(e: crate::config::ConfigError) -> Self {
        Failed {
            kind: "config".into(),
            message: e.to_string(),
            code: exit::USAGE,
        }
    }
}

impl Failed {
    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

pub(crate) type Outcome<T = u8> = std::result::Result<T, Failed>;

/// Runs the parsed command line; returns the exit code.
pub async fn run(cli: Cli, registry: Registry, renderer: &Renderer) -> u8 {
    match execute(cli, registry, renderer).await {
        Ok(code) => code,
        Err(f) => {
            renderer.error(&f.kind, &f.message, f.code);
            f.code
        }
    }
}

/// Everything a command needs.
struct Setup {
    config: Config,
    engine: Engine,
}

async fn setup(cli: &Cli, registry: &Registry, events: EventSink) -> Outcome<Setup> {
    let config = Config::load(Some(&cli.config))?;
    let kind = config.driver.kind.clone();
    let built = registry
        .build(DriverContext {
            kind: kind.clone(),
            table: config.driver_table(),
            repository: config.repository(),
            app: config.app.name.clone(),
            base_dir: config.base_dir.clone(),
            source: cli.config.display().to_string(),
        })
        .await;
    let target = match built {
        Ok(target) => target,
        // A setting the driver refuses is a configuration error like any other.
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound) => {
            return Err(e.into());
        }
        // What the journal and the store answer does not need the backend.
        Err(e) if reads_only(&cli.command) => {
            tracing::warn!(
                "the {kind} backend could not be reached, so what runs is not shown: {}",
                e.report()
            );
            crate::registry::Target::new(Arc::new(crate::unreachable::Unreachable::new(&kind, &e)))
        }
        // Reaching the backend is part of the configuration (an unreachable socket or
        // host). Nothing was done.
        Err(e) => {
            return Err(Failed {
                kind: "config".into(),
                message: format!(
                    "driver {kind} ([driver.{kind}] in {}): {}. Nothing was done; fix the setting or make the backend reachable, then `cutover check` tests it",
                    cli.config.display(),
                    e.report()
                ),
                code: exit::USAGE,
            });
        }
    };
    let backups: Arc<dyn Backups> = match (&config.database, target.backups.clone()) {
        (Some(db), _) => Arc::new(dump_backups(&config, db)?),
        (None, Some(own)) => own,
        // Upgrades with --backup skip need no backup engine; the commands about backups
        // have nothing to work on, and say so instead of answering "none".
        (None, None) if about_backups(&cli.command) => {
            return Err(Error::invalid(format!(
                "no [database] is configured in {}, so cutover keeps no backups of {}: there is nothing to back up, list, verify, restore or prune. Add [database] (see the README's configuration)",
                cli.config.display(),
                config.app.name
            ))
            .into());
        }
        (None, None) => Arc::new(NoBackups),
    };
    let journal_path = config.journal_path()?;
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&journal_path).await?);
    let settings = Settings {
        // A failed release's instance logs, beside the journal that names the run.
        evidence_dir: journal_path.parent().map(|dir| dir.join("runs")),
        health: config.health.clone(),
        keep_backups: config.backup.keep,
        call_timeout: config
            .call_timeout()
            .expect("validated when the configuration was loaded"),
        ..Settings::new(config.app.name.clone())
    };
    let engine = Engine::new(target.driver, backups, journal, settings).with_events(events);
    Ok(Setup { config, engine })
}

/// Whether the command works on backups.
fn about_backups(command: &Command) -> bool {
    matches!(
        command,
        Command::Backup | Command::Backups(_) | Command::Restore { .. }
    )
}

/// Whether the command only reads the journal and the store (and observes, if it can).
fn reads_only(command: &Command) -> bool {
    matches!(
        command,
        Command::Status
            | Command::History { .. }
            | Command::Backups(BackupsCommand::List | BackupsCommand::Show { .. })
    )
}

async fn execute(cli: Cli, registry: Registry, renderer: &Renderer) -> Outcome {
    match &cli.command {
        Command::Check { to } => {
            return Ok(crate::check::run(&cli, &registry, renderer, to.as_deref()).await);
        }
        Command::Init {
            container,
            docker_host,
            force,
        } => {
            let text =
                crate::init::run(container, docker_host.clone(), &cli.config, *force).await?;
            renderer.document(
                json!({ "command": "init", "path": cli.config.display().to_string(), "config": text }),
                || {
                    format!(
                        "wrote {} from container {container}; read it, then run `cutover check` (add --to TAG to test an upgrade's tag)\n",
                        cli.config.display()
                    )
                },
            );
            return Ok(exit::SUCCESS);
        }
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(*shell, &mut Cli::command(), "cutover", &mut out);
            return Ok(exit::SUCCESS);
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout().lock())
                .map_err(|e| {
                    Error::new(ErrorKind::Other, format!("writing the manual page: {e}"))
                })?;
            return Ok(exit::SUCCESS);
        }
        _ => {}
    }
    // Before anything is opened: a command that must ask and cannot stops here.
    let ask = asks_first(&cli)?;
    let Setup { config, engine } = setup(&cli, &registry, renderer.sink()).await?;
    match &cli.command {
        Command::Plan(args) => plan(&config, &engine, args, renderer).await,
        Command::Upgrade(args) => {
            let plan = upgrade_plan(&config, args)?;
            finish(drive(&engine, engine.start(plan)).await?)
        }
        Command::Rollback {
            backup,
            no_safety_backup,
            ..
        } => {
            let id = backup.as_deref().map(str::parse::<BackupId>).transpose()?;
            let mut plan = engine.rollback_plan(id.as_ref()).await?;
            let Plan::Rollback {
                snapshot,
                backup,
                safety,
            } = &mut plan
            else {
                unreachable!("rollback_plan builds a rollback")
            };
            *safety &= !no_safety_backup;
            if ask {
                let question = confirm::rollback(
                    &engine,
                    snapshot,
                    backup.as_ref(),
                    *safety,
                    &config.backup.paths,
                )
                .await?;
                if !confirm::ask(question).await? {
                    return Ok(declined());
                }
            }
            finish(drive(&engine, engine.start(plan)).await?)
        }
        Command::Resume {
            run,
            rollback: back,
        } => {
            let mode = if *back {
                cutover_core::Resume::RollBack
            } else {
                cutover_core::Resume::Continue
            };
            finish(drive(&engine, engine.resume_as(run.as_deref(), mode)).await?)
        }
        Command::Status => crate::status::status(&engine, renderer).await,
        Command::History { limit, run } => history(&engine, *limit, run.as_deref(), renderer).await,
        Command::Backup => finish(drive(&engine, engine.start(Plan::Backup)).await?),
        Command::Backups(sub) => backups(&config, &engine, sub, renderer).await,
        Command::Restore {
            id,
            no_safety_backup,
            ..
        } => {
            let backup: BackupId = id.parse()?;
            let safety = !no_safety_backup;
            if ask {
                let question =
                    confirm::restore(&engine, &backup, safety, &config.backup.paths).await?;
                if !confirm::ask(question).await? {
                    return Ok(declined());
                }
            }
            finish(drive(&engine, engine.start(Plan::Restore { backup, safety })).await?)
        }
        Command::Unlock { force } => unlock(&engine, *force, renderer).await,
        Command::Check { .. }
        | Command::Init { .. }
        | Command::Completions { .. }
        | Command::Man => {
            unreachable!("handled before the setup")
        }
    }
}

/// Whether the command asks before it runs. `restore` and `rollback` throw away every
/// write made since their backup, so they ask unless `--yes`; when nobody can be asked
/// they refuse with the reason and the command to run instead.
fn asks_first(cli: &Cli) -> Outcome<bool> {
    let (yes, what, instead) = match &cli.command {
        Command::Restore { id, yes, .. } => {
            let id: BackupId = id.parse()?;
            (
                *yes,
                format!(
                    "`cutover restore` replaces the data with backup {id} and throws away every write made since it was taken"
                ),
                format!("cutover restore {id} --yes"),
            )
        }
        Command::Rollback { backup, yes, .. } => {
            let id = backup.as_deref().map(str::parse::<BackupId>).transpose()?;
            (
                *yes,
                "`cutover rollback` brings back the image and data from before the last upgrade and throws away every write made since its backup".to_string(),
                match id {
                    Some(id) => format!("cutover rollback --backup {id} --yes"),
                    None => "cutover rollback --yes".to_string(),
                },
            )
        }
        _ => return Ok(false),
    };
    if yes {
        return Ok(false);
    }
    match confirm::cannot_ask(cli.output) {
        None => Ok(true),
        Some(reason) => Err(Failed {
            kind: "confirmation_required".into(),
            message: format!(
                "{what}, so it asks first; but {reason}. Nothing was done. To go on without a question, run: {instead}"
            ),
            code: exit::USAGE,
        }),
    }
}

/// The answer was not `yes`.
fn declined() -> u8 {
    eprintln!("nothing was done: not confirmed (only `yes` goes on)");
    exit::DECLINED
}

/// The backup engine of `[database]` and `[backup]`.
pub(crate) fn dump_backups(
    config: &Config,
    db: &crate::config::DatabaseConfig,
) -> Outcome<DumpBackups> {
    let resolved = crate::database::resolve(config, db, |var| std::env::var(var).ok())?;
    for warning in &resolved.warnings {
        tracing::warn!("{warning}");
    }
    let site = match (&db.exec_in, &db.exec_on_host) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "database.exec_in and database.exec_on_host exclude each other",
            )
            .into());
        }
        (Some(name), None) => ToolSite::Exec(ExecTarget::Named(name.clone())),
        (None, Some(host)) => ToolSite::Exec(ExecTarget::Host(host.clone())),
        (None, None) => ToolSite::Local,
    };
    let database = Database::new(db.engine, &resolved.url, resolved.password, site)?;
    Ok(DumpBackups::new(
        database,
        store(config)?,
        config.backup.paths.clone(),
        ExecTarget::AnyInstance,
    ))
}

/// `[backup] store`: a directory, or `s3://bucket/prefix` with `[backup.s3]`.
fn store(config: &Config) -> Outcome<Arc<dyn Store>> {
    let store = &config.backup.store;
    if store.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return Ok(Arc::new(S3Store::new(store, &config.backup.s3)?));
        #[cfg(not(feature = "s3"))]
        return Err(Error::invalid(format!(
            "backup.store = {store:?}: this cutover was built without the `s3` feature"
        ))
        .into());
    }
    if store.contains("://") {
        return Err(Error::invalid(format!(
            "backup.store = {store:?}: a store is a directory or an s3:// URL"
        ))
        .into());
    }
    Ok(Arc::new(LocalStore::new(config.resolve(store))))
}

fn finish(finished: Finished) -> Outcome {
    Ok(exit::for_class(finished.class()))
}

/// Runs `run` while the first interrupting signal — Ctrl-C (SIGINT), SIGTERM (systemd,
/// CI runners, `timeout`) or SIGHUP (a closed terminal or SSH session) — cancels it (it
/// then aborts or rolls back) and a second one exits at once with 130, leaving the journal
/// for `cutover resume`.
async fn drive(
    engine: &Engine,
    run: impl std::future::Future<Output = cutover_core::Result<Finished>>,
) -> Outcome<Finished> {
    let cancel = engine.cancellation();
    let mut signals = Interrupts::new()?;
    let watcher = tokio::spawn(async move {
        // Cancel before telling: after a SIGHUP the terminal may be gone, and a failed
        // write must not keep the run from stopping.
        let first = signals.next().await;
        cancel.cancel();
        let _ = writeln!(
            std::io::stderr(),
            "! {first}: cancelling; the run aborts or rolls back. Press Ctrl-C (or send the signal) again to stop at once (then `cutover resume`)."
        );
        let second = signals.next().await;
        let _ = writeln!(
            std::io::stderr(),
            "! {second}: stopped at once; `cutover resume` continues from the journal"
        );
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
    let result = run.await;
    watcher.abort();
    Ok(result?)
}

/// The signals that ask a run to stop.
struct Interrupts {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Interrupts {
    fn new() -> Outcome<Self> {
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    format!("cannot listen for {name}, so the run could not be cancelled: {e}"),
                )
            })
        };
        Ok(Interrupts {
            int: listen(SignalKind::interrupt(), "SIGINT")?,
            term: listen(SignalKind::terminate(), "SIGTERM")?,
            hup: listen(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

fn upgrade_plan(config: &Config, args: &UpgradeArgs) -> Outcome<Plan> {
    let to = config
        .image_with_tag(&args.to)
        .map_err(|e| Error::invalid(format!("--to {:?}: {}", args.to, e.message())))?;
    Ok(Plan::Upgrade {
        to,
        backup: match args.backup {
            BackupChoice::Offline => BackupMode::Offline,
            BackupChoice::Online => BackupMode::Online,
            BackupChoice::Skip => BackupMode::Skip,
        },
        replicas: args.replicas.or(config.app.replicas),
        allow_downgrade: args.allow_downgrade,
    })
}

async fn plan(config: &Config, engine: &Engine, args: &UpgradeArgs, r: &Renderer) -> Outcome {
    let plan = upgrade_plan(config, args)?;
    let Plan::Upgrade { to, replicas, .. } = &plan else {
        unreachable!("upgrade_plan builds an upgrade")
    };
    let Preview {
        seen,
        checks,
        steps,
        downtime_estimate_ms: estimate_ms,
        warnings,
    } = engine.preview(&plan).await?;
    let step_docs: Vec<_> = steps
        .iter()
        .map(|e| {
            json!({
                "step": e.step.as_str(),
                "about": cutover_core::engine::about(e),
                "downtime": Preview::is_downtime(e.step),
            })
        })
        .collect();
    r.document(
        json!({
            "command": "plan",
            "from": seen.image.to_string(),
            "to": to.to_string(),
            "replicas": replicas.unwrap_or(seen.replicas),
            "steps": step_docs,
            "downtime_estimate_ms": estimate_ms,
            "checks": checks.iter().map(|c| match &c.result {
                Ok(detail) => json!({ "check": c.name, "passed": true, "detail": detail }),
                Err(e) => json!({ "check": c.name, "passed": false, "error": e.report() }),
            }).collect::<Vec<_>>(),
            "warnings": warnings,
        }),
        || {
            let mut out = format!(
                "upgrade {} from {} ({} replicas) to {to}\n\n",
                config.app.name, seen.image, seen.replicas
            );
            for (i, e) in steps.iter().enumerate() {
                let mark = if Preview::is_downtime(e.step) {
                    "▼"
                } else {
                    " "
                };
                out.push_str(&format!(
                    "{:>3}. {mark} {:<16} {}\n",
                    i + 1,
                    e.step.as_str(),
                    cutover_core::engine::about(e)
                ));
            }
            out.push_str(
                "\npreflight checks (what the upgrade checks before it changes anything):\n",
            );
            for c in &checks {
                let (mark, text) = match &c.result {
                    Ok(detail) => ("ok", detail.clone()),
                    Err(e) => ("FAILED", e.report()),
                };
                out.push_str(&format!("  {mark:<6} {:<22} {text}\n", c.name));
            }
            out.push_str(&format!(
                "\ndowntime (▼, from stop until the leader is healthy): {}\n",
                estimate_ms.map_or(
                    "unknown until a first upgrade is recorded".to_string(),
                    |ms| { format!("about {} (from the last upgrade)", seconds(ms)) }
                )
            ));
            // A failed check is shown above; the warnings repeat it only for JSON readers.
            let stops = checks.iter().filter(|c| !c.is_ok()).count();
            if stops > 0 {
                out.push_str(&format!(
                    "warning: the upgrade would stop in preflight: {stops} check(s) FAILED above\n"
                ));
            }
            for w in warnings.iter().filter(|w| !w.starts_with(PREFLIGHT_STOP)) {
                out.push_str(&format!("warning: {w}\n"));
            }
            out
        },
    );
    Ok(exit::SUCCESS)
}

pub(crate) fn status_name(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running or interrupted",
        RunStatus::Stopped(o) => o.as_str(),
    }
}

async fn history(engine: &Engine, limit: u32, run: Option<&str>, r: &Renderer) -> Outcome {
    let target = &engine.settings().target;
    let mut rows = Vec::new();
    let headers = match run {
        Some(id) => {
            match engine.run(id).await? {
                Some(record) if record.header.target == *target => vec![record.header],
                _ => {
                    return Err(cutover_core::Error::new(
                    cutover_core::ErrorKind::NotFound,
                    format!("no run {id:?} of {target} in the journal (`cutover history` lists runs)"),
                )
                .into());
                }
            }
        }
        None => engine.runs(limit).await?,
    };
    for header in headers {
        let Some(record) = engine.run(&header.id).await? else {
            continue;
        };
        rows.push(history_row(&header, &record));
    }
    let detailed = run.is_some();
    let human = || {
        let mut out = String::new();
        for row in &rows {
            out.push_str(&format!(
                "{}  {:<8} {:<22} {:>7}  backup {}\n",
                row["id"].as_str().unwrap_or(""),
                row["kind"].as_str().unwrap_or(""),
                row["status"].as_str().unwrap_or(""),
                row["millis"].as_u64().map_or("-".into(), seconds),
                row["backup"].as_str().unwrap_or("-"),
            ));
            if let Some(image) = row["pulled"]["image"].as_str() {
                let digest = row["pulled"]["digest"]
                    .as_str()
                    .unwrap_or("no digest reported");
                out.push_str(&format!("    pulled: {image} ({digest})\n"));
            }
            if detailed && let Some(steps) = row["steps"].as_array() {
                for step in steps {
                    out.push_str(&format!(
                        "    {} {:<18} {:>7}\n",
                        if step["failed"].as_bool() == Some(true) {
                            "✗"
                        } else {
                            "✓"
                        },
                        step["step"].as_str().unwrap_or(""),
                        step["millis"].as_u64().map_or("-".into(), seconds),
                    ));
                }
            }
            if let Some(c) = row["cause"].as_str() {
                out.push_str(&format!("    cause: {c}\n"));
            }
            let kept: Vec<cutover_core::InstanceLogs> =
                serde_json::from_value(row["evidence"].clone()).unwrap_or_default();
            for e in &kept {
                if detailed {
                    out.push_str(&crate::render::evidence(e, usize::MAX));
                } else {
                    let at = e.file.clone().unwrap_or_else(|| {
                        format!(
                            "the journal (`cutover history --run {}`)",
                            row["id"].as_str().unwrap_or("")
                        )
                    });
                    out.push_str(&format!("    logs of {}: {at}\n", e.instance));
                }
            }
        }
        if out.is_empty() {
            out.push_str("no runs recorded\n");
        }
        out
    };
    r.document(json!({ "command": "history", "runs": rows }), human);
    Ok(exit::SUCCESS)
}

/// One run as `history` shows it.
fn history_row(header: &RunHeader, record: &RunRecord) -> serde_json::Value {
    let total = header.ended_ms.map(|e| e.saturating_sub(header.started_ms));
    let backup = header
        .report
        .as_ref()
        .and_then(|rep| rep.backup.as_ref())
        .map(|b| b.id.to_string());
    // What `pull` resolved the target to: the digest the run pinned the definition to.
    let pulled = record.records.iter().find_map(|r| match &r.entry {
        Entry::Finished {
            output: Output::Pulled(p),
            ..
        } => Some(json!({ "image": p.image.to_string(), "digest": p.digest })),
        _ => None,
    });
    let steps: Vec<_> = record
        .step_durations()
        .into_iter()
        .map(|(s, ms, failed)| json!({ "step": s.as_str(), "millis": ms, "failed": failed }))
        .collect();
    json!({
        "id": header.id,
        "kind": header.kind().as_str(),
        "status": status_name(header.status),
        "started": cutover_core::event::timestamp(std::time::UNIX_EPOCH + Duration::from_millis(header.started_ms)),
        "millis": total,
        "backup": backup,
        "cause": header.report.as_ref().and_then(|rep| rep.cause.as_ref()).map(|c| c.message.clone()),
        "pulled": pulled,
        "steps": steps,
        "evidence": evidence_of(record),
    })
}

/// The logs of failed instances that a run's failed steps kept (the latest capture of
/// each instance, e.g. after a resumed step failed again).
pub(crate) fn evidence_of(record: &RunRecord) -> Vec<cutover_core::InstanceLogs> {
    let mut kept: Vec<cutover_core::InstanceLogs> = Vec::new();
    for r in &record.records {
        if let Entry::Failed { error, .. } = &r.entry {
            for e in &error.evidence {
                kept.retain(|k| k.instance != e.instance);
                kept.push(e.clone());
            }
        }
    }
    kept
}

async fn backups(config: &Config, engine: &Engine, sub: &BackupsCommand, r: &Renderer) -> Outcome {
    let store = engine.backups();
    let summary = |b: &BackupSummary| json!({ "id": b.id.to_string(), "created": b.created, "app": b.app, "image": b.image, "bytes": b.bytes, "damaged": b.damaged });
    match sub {
        BackupsCommand::List => {
            let list = store.list().await?;
            r.document(
                json!({ "command": "backups list", "backups": list.iter().map(summary).collect::<Vec<_>>() }),
                || {
                    let mut out: String = list
                        .iter()
                        .map(|b| match &b.damaged {
                            Some(why) => format!("{}  DAMAGED: {why}\n", b.id),
                            None => format!("{}  {}  {}  {} bytes\n", b.id, b.created, b.image, b.bytes),
                        })
                        .collect();
                    if out.is_empty() {
                        out = "no backups\n".into();
                    }
                    out
                },
            );
        }
        BackupsCommand::Show { id } => {
            let id: BackupId = id.parse()?;
            let found = store
                .list()
                .await?
                .into_iter()
                .find(|b| b.id == id)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("no backup {id} (see `cutover backups list`)"),
                    )
                })?;
            r.document(
                json!({ "command": "backups show", "backup": summary(&found) }),
                || {
                    format!(
                        "id       {}\ncreated  {}\napp      {}\nimage    {}\nbytes    {}\n",
                        found.id, found.created, found.app, found.image, found.bytes
                    )
                },
            );
        }
        BackupsCommand::Verify { id, restore_test } => {
            let plan = Plan::Verify {
                backup: id.parse()?,
                restore_test: *restore_test,
            };
            return finish(drive(engine, engine.start(plan)).await?);
        }
        BackupsCommand::Prune { keep } => {
            let plan = Plan::Prune {
                keep: keep.unwrap_or(config.backup.keep),
            };
            return finish(drive(engine, engine.start(plan)).await?);
        }
    }
    Ok(exit::SUCCESS)
}

async fn unlock(engine: &Engine, force: bool, r: &Renderer) -> Outcome {
    if !force {
        return Err(Error::invalid(
            "unlock needs --force: removing the lock of a run that is still working, or that was interrupted mid-upgrade, lets another run change a half-changed deployment. Prefer `cutover resume`",
        )
        .into());
    }
    let removed = engine.force_unlock().await?;
    r.document(
        json!({ "command": "unlock", "removed": removed.as_ref().map(|l| l.holder.run.clone()) }),
        || match &removed {
            Some(l) => format!(
                "removed the lock of {}. If that run was interrupted, the deployment may be half-changed: check `cutover status`\n",
                l.holder
            ),
            None => "no lock was held\n".into(),
        },
    );
    Ok(exit::SUCCESS)
}

/// The backup engine when no `[database]` is configured.
#[derive(Debug)]
pub(crate) struct NoBackups;

impl NoBackups {
    fn error(&self) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            "no [database] is configured, so nothing can be backed up or restored; add [database] (see the README) or upgrade with --backup skip",
        )
    }
}

#[async_trait]
impl Backups for NoBackups {
    async fn preflight(&self, _driver: &dyn Driver) -> cutover_core::Result<()> {
        Err(self.error())
    }
    async fn backup(
        &self,
        _scope: BackupScope<'_>,
        _events: &EventSink,
    ) -> cutover_core::Result<BackupRef> {
        Err(self.error())
    }
    async fn verify(&self, _id: &BackupId, _app: &str) -> cutover_core::Result<BackupRef> {
        Err(self.error())
    }
    async fn restore(
        &self,
        _id: &BackupId,
        _app: &str,
        _driver: &dyn Driver,
        _events: &EventSink,
    ) -> cutover_core::Result<()> {
        Err(self.error())
    }
    async fn list(&self) -> cutover_core::Result<Vec<BackupSummary>> {
        Ok(Vec::new())
    }
    async fn prune(
        &self,
        _app: &str,
        _keep: usize,
        _protected: &[BackupId],
    ) -> cutover_core::Result<Vec<BackupId>> {
        Ok(Vec::new())
    }
}
