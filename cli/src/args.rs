//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::render::Output;

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    unexpected error
  2    usage or configuration error (nothing was done)
  3    locked by another run (nothing was done)
  4    aborted before changing anything
  5    upgrade failed and was rolled back (old image, old data)
  6    needs intervention: run the printed `next` command (usually `cutover resume`)
  7    not confirmed: restore or rollback was answered other than `yes` (nothing was done)
  130  stopped by a second Ctrl-C, SIGTERM or SIGHUP; `cutover resume` continues";

/// Upgrade self-hosted containerised applications safely, and roll them back with their data.
#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    after_help = format!("Example:\n  cutover plan --to v2.7.81\n  cutover upgrade --to v2.7.81\n\n{EXIT_CODES}")
)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "cutover.toml"
    )]
    pub config: PathBuf,
    /// How to report.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Also log what core and the drivers do on stderr: -v informational, -vv debugging
    /// (CUTOVER_LOG, e.g. `info,cutover_driver_ssh=debug`, selects it instead).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Human output: only warnings, failures and the outcome, no step lines.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the steps an upgrade would take, the expected downtime and warnings; change nothing.
    #[command(after_help = "Example:\n  cutover plan --to v2.7.81 --backup online")]
    Plan(UpgradeArgs),
    /// Upgrade to a new tag: back up, stop, migrate with one instance alone, scale out.
    #[command(
        after_help = "Example:\n  cutover upgrade --to v2.7.81\n  cutover upgrade --to v2.7.81 --replicas 3 --output json"
    )]
    Upgrade(UpgradeArgs),
    /// Go back to the image and data from before the last upgrade (or the one that took --backup).
    ///
    /// Every write made to the database since that upgrade's backup is thrown away, so on a
    /// terminal it first says what comes back and asks; without a terminal, and with
    /// --output json, it needs --yes. The data it replaces is first kept in a safety
    /// backup (unless --no-safety-backup).
    #[command(
        after_help = "Example:\n  cutover rollback\n  cutover rollback --backup 20261125T194500Z-apidog-3f2a9c --yes"
    )]
    Rollback {
        /// The backup whose upgrade to undo.
        #[arg(long, value_name = "ID")]
        backup: Option<String>,
        /// Do not ask; needed without a terminal and with --output json.
        #[arg(long)]
        yes: bool,
        /// Do not back up the data being replaced first: what was written since the
        /// upgrade is then gone for good.
        #[arg(long)]
        no_safety_backup: bool,
    },
    /// Continue an interrupted or failed run from its journal.
    #[command(
        after_help = "Example:\n  cutover resume\n  cutover resume --rollback 20261125T194500Z-3f2a9c"
    )]
    Resume {
        /// The run (default: the one holding the lock).
        run: Option<String>,
        /// Abort or roll back the interrupted run from where it stopped, instead of
        /// continuing it.
        #[arg(long)]
        rollback: bool,
    },
    /// Show the running version, replicas, the lock and the last run.
    #[command(after_help = "Example:\n  cutover status --output json")]
    Status,
    /// List past runs with outcome, duration and backup; `--run ID` shows one run's
    /// steps and the last lines its failed instances printed.
    #[command(
        after_help = "Examples:\n  cutover history --limit 5\n  cutover history --run 20260101T120000Z-a1b2c3"
    )]
    History {
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Show this run in detail.
        #[arg(long, value_name = "ID")]
        run: Option<String>,
    },
    /// Take a verified backup now, without stopping the application.
    #[command(after_help = "Example:\n  cutover backup")]
    Backup,
    /// List, show, verify and prune backups.
    #[command(
        subcommand,
        after_help = "Example:\n  cutover backups list\n  cutover backups verify ID"
    )]
    Backups(BackupsCommand),
    /// Replace the data with a backup (the application is stopped meanwhile).
    ///
    /// Every write made to the database since the backup was taken is thrown away, so on a
    /// terminal it first says which backup, how old, and which runs came since, and asks;
    /// without a terminal, and with --output json, it needs --yes. The data it replaces is
    /// first kept in a safety backup (unless --no-safety-backup), which is also put back
    /// if the restore fails midway.
    #[command(
        after_help = "Example:\n  cutover restore 20261125T194500Z-apidog-3f2a9c\n  cutover restore 20261125T194500Z-apidog-3f2a9c --yes --output json"
    )]
    Restore {
        /// The backup id (see `cutover backups list`).
        id: String,
        /// Do not ask; needed without a terminal and with --output json.
        #[arg(long)]
        yes: bool,
        /// Do not back up the data being replaced first: what was written since the
        /// backup is then gone for good, and a restore that fails midway is not put back.
        #[arg(long)]
        no_safety_backup: bool,
    },
    /// Remove the target's lock. Risky: see the help.
    #[command(
        after_help = "Removing the lock of a run that is still working, or that was interrupted \
mid-upgrade, lets another run change a half-changed deployment. Prefer `cutover resume`.\n\n\
Example:\n  cutover unlock --force"
    )]
    Unlock {
        /// Confirm that you understand the risk.
        #[arg(long)]
        force: bool,
    },
    /// Test the configuration against the real deployment, changing nothing: the backend
    /// answers, the database takes the backup's connections and privileges, the dump tools
    /// fit the server, the store is writable with room, the journal; with --to, the tag is
    /// pulled (into the engine's image cache only) and the upgrade's own checks run.
    ///
    /// Exits 0 when every check passed, else 2, naming each failed check.
    #[command(after_help = "Example:
  cutover check
  cutover check --to v2.7.81 --output json")]
    Check {
        /// Also check the upgrade to this tag: it resolves in the registry and is not a
        /// downgrade.
        #[arg(long, value_name = "TAG")]
        to: Option<String>,
    },
    /// Write a commented configuration (to --config, default cutover.toml) from a running
    /// Docker deployment: one of the application's containers names the Compose service or
    /// the `docker run` containers, the image, replicas, health check, storage volumes and
    /// the database settings from the application's own variables (never a secret).
    #[command(
        after_help = "Example:\n  cutover init --container vendor-server-1\n  cutover check --to v2.7.81"
    )]
    Init {
        /// One container of the application (`docker ps` lists them).
        #[arg(long, value_name = "NAME")]
        container: String,
        /// The Docker engine (default: $DOCKER_HOST, else the local socket).
        #[arg(long, value_name = "URL")]
        docker_host: Option<String>,
        /// Replace an existing configuration file.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script (e.g. `cutover completions bash >
    /// /etc/bash_completion.d/cutover`).
    #[command(after_help = "Example:
  cutover completions zsh > \"${fpath[1]}/_cutover\"")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `cutover man > /usr/local/share/man/man1/cutover.1`.
    Man,
}

/// `backups` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// List backups, newest first.
    #[command(after_help = "Example:\n  cutover backups list --output json")]
    List,
    /// Show one backup.
    #[command(after_help = "Example:\n  cutover backups show ID")]
    Show {
        /// The backup id.
        id: String,
    },
    /// Check a backup's checksums and identity; with --restore-test, also restore it into
    /// a scratch database and compare fingerprints.
    #[command(
        after_help = "Example:\n  cutover backups verify ID\n  cutover backups verify ID --restore-test"
    )]
    Verify {
        /// The backup id.
        id: String,
        /// Restore into a scratch database on the same server, compare, drop it.
        #[arg(long)]
        restore_test: bool,
    },
    /// Delete all but the newest backups, and what unfinished backups left behind.
    ///
    /// Never deletes a backup that an unfinished run (failed or interrupted) needs. Parts of
    /// backups that never completed (a killed process, a full store) are deleted once
    /// untouched for 24 hours, so a backup being written elsewhere is never swept.
    #[command(after_help = "Example:\n  cutover backups prune --keep 5")]
    Prune {
        /// How many to keep (default: backup.keep in the config).
        #[arg(long)]
        keep: Option<usize>,
    },
}

/// When the upgrade takes its backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackupChoice {
    /// After stopping: nothing written is lost on rollback (default).
    Offline,
    /// Before stopping: shorter downtime; writes after the backup are lost on rollback.
    Online,
    /// No backup: a rollback cannot restore data.
    Skip,
}

/// Arguments of `plan` and `upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The tag to upgrade to.
    #[arg(long, value_name = "TAG")]
    pub to: String,
    /// When to take the backup.
    #[arg(long, value_enum, default_value_t = BackupChoice::Offline)]
    pub backup: BackupChoice,
    /// Replicas after the upgrade (default: app.replicas in the config, else as observed).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// Permit a tag older than the running one.
    #[arg(long)]
    pub allow_downgrade: bool,
}
