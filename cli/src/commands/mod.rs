//! The commands: set up the engine from the configuration, run, render, map to exit codes.
//! One file per command or group: `plan`, `history`, `backups`, `unlock`, the signals that
//! cancel a run (`drive`); `status`, `check`, `init` and the restore/rollback question sit
//! beside this directory.

mod backups;
mod drive;
mod history;
mod plan;
mod unlock;

use std::sync::Arc;

use clap::CommandFactory as _;
use cutover_core::journal::Journal;
use cutover_core::{
    BackupId, Backups, Engine, Error, ErrorKind, EventSink, Finished, PgJournal, Plan,
    SqliteJournal,
};
use serde_json::json;

use backups::backups;
pub(crate) use backups::{NoBackups, dump_backups};
use drive::drive;
use history::history;
pub(crate) use history::{evidence_of, status_name};
use plan::{plan, upgrade_plan};
use unlock::unlock;

use crate::args::{BackupsCommand, Cli, Command};
use crate::config::{Config, JournalAt};
use crate::confirm;
use crate::exit;
use crate::notify::Notifier;
use crate::registry::{DriverContext, Registry};
use crate::render::Renderer;

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
/// The journal `[journal] url` names: a SQLite file, or PostgreSQL with its password from
/// `CUTOVER_JOURNAL__PASSWORD` or `password_file`.
pub(crate) async fn open_journal(config: &Config) -> Outcome<Arc<dyn Journal>> {
    Ok(match config.journal_at()? {
        JournalAt::File(path) => Arc::new(SqliteJournal::open(&path).await?),
        JournalAt::Postgres(url) => {
            let password = match (&config.journal.password, &config.journal.password_file) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(file)) => {
                    let (password, warning) =
                        crate::database::password_file(config, "journal.password_file", file)?;
                    if let Some(warning) = warning {
                        tracing::warn!("{warning}");
                    }
                    Some(password)
                }
                (None, None) => None,
            };
            Arc::new(PgJournal::connect(&url, password.as_deref()).await?)
        }
    })
}

/// What the registry needs to build the configured driver.
pub(crate) fn driver_context(config: &Config, source: &std::path::Path) -> DriverContext {
    DriverContext {
        kind: config.driver.kind.clone(),
        table: config.driver_table(),
        repository: config.repository(),
        app: config.app.name.clone(),
        base_dir: config.base_dir.clone(),
        source: source.display().to_string(),
    }
}

struct Setup {
    config: Config,
    engine: Engine,
    notifier: Notifier,
}

async fn setup(cli: &Cli, registry: &Registry, events: EventSink) -> Outcome<Setup> {
    let config = Config::load(Some(&cli.config))?;
    let kind = config.driver.kind.clone();
    let built = registry.build(driver_context(&config, &cli.config)).await;
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
    let journal = open_journal(&config).await?;
    let settings = config.settings();
    let notifier = Notifier::start(&config.notify, &config.app.name, |var| {
        std::env::var(var).ok()
    })?;
    let engine =
        Engine::new(target.driver, backups, journal, settings).with_events(notifier.tee(events));
    Ok(Setup {
        config,
        engine,
        notifier,
    })
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
    let Setup {
        config,
        engine,
        notifier,
    } = setup(&cli, &registry, renderer.sink()).await?;
    let result = command(&cli, &config, &engine, ask, renderer).await;
    notifier.finish().await;
    result
}

/// The command itself, once set up.
async fn command(
    cli: &Cli,
    config: &Config,
    engine: &Engine,
    ask: bool,
    renderer: &Renderer,
) -> Outcome {
    match &cli.command {
        Command::Plan(args) => plan(config, engine, args, renderer).await,
        Command::Upgrade(args) => {
            let plan = upgrade_plan(config, args)?;
            finish(drive(engine, engine.start(plan)).await?)
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
                    engine,
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
            finish(drive(engine, engine.start(plan)).await?)
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
            finish(drive(engine, engine.resume_as(run.as_deref(), mode)).await?)
        }
        Command::Status => crate::status::status(engine, renderer).await,
        Command::History { limit, run } => history(engine, *limit, run.as_deref(), renderer).await,
        Command::Backup => finish(drive(engine, engine.start(Plan::Backup)).await?),
        Command::Backups(sub) => backups(config, engine, sub, renderer).await,
        Command::Restore {
            id,
            no_safety_backup,
            ..
        } => {
            let backup: BackupId = id.parse()?;
            let safety = !no_safety_backup;
            // Another image's data: refused before any question (exit 2).
            engine.restore_fits(&backup).await?;
            if ask {
                let question =
                    confirm::restore(engine, &backup, safety, &config.backup.paths).await?;
                if !confirm::ask(question).await? {
                    return Ok(declined());
                }
            }
            finish(drive(engine, engine.start(Plan::Restore { backup, safety })).await?)
        }
        Command::Unlock { force } => unlock(engine, *force, renderer).await,
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

pub(super) fn finish(finished: Finished) -> Outcome {
    Ok(exit::for_class(finished.class()))
}
