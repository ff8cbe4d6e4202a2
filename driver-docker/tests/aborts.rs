//! Every way an upgrade aborts, on a real Docker deployment with its MariaDB database:
//! each preflight check failing in turn, a cancellation before and after the stop, and
//! the backup store becoming unwritable after the stop. Each must end "aborted" with
//! `docker inspect` of every container as before — the same containers, not
//! replacements — and a message that says so only because the engine looked.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Deployment, image};
use cutover_backup::{Database, DatabaseEngine, DumpBackups, LocalStore, ToolSite};
use cutover_core::{
    BackupMode, Engine, EventKind, EventSink, ExecTarget, HealthCheck, Outcome, Plan, Settings,
    SqliteJournal,
};
use cutover_tests::docker;

const HEALTHY: Duration = Duration::from_secs(60);

/// A directory made read-only by a bind mount (root ignores file modes), undone on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.to_str().unwrap();
        for args in [
            vec!["--bind", path, path],
            vec!["-o", "remount,bind,ro", path],
        ] {
            let out = Command::new("mount").args(&args).output().expect("mount");
            assert!(
                out.status.success(),
                "mount {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ReadOnly(dir.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

/// What `docker inspect` says of every container of the deployment that must not change
/// when an upgrade aborts. `since_start`: also when each was last started (for aborts
/// before the stop, which must not even restart a container).
fn inspect(d: &Deployment, since_start: bool) -> Vec<String> {
    let mut format = "{{.Id}} {{.Name}} {{.Image}} {{.Config.Image}} {{json .Config.Env}} {{json .HostConfig}} {{.State.Running}}".to_string();
    if since_start {
        format.push_str(" {{.State.StartedAt}}");
    }
    let mut names = d.all_containers();
    names.sort();
    names
        .iter()
        .map(|n| docker(&["inspect", "--format", &format, n]))
        .collect()
}

/// What cancels the engine's run (its cancellation token, once the engine exists).
type Cancel = Box<dyn Fn() + Send>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Trigger {
    /// Nothing happens during the run.
    None,
    /// Cancel (as Ctrl-C does) when this step starts.
    Cancel(&'static str),
    /// Make the store read-only when this step starts.
    StoreReadOnly(&'static str),
}

struct Case {
    name: &'static str,
    to: &'static str,
    mode: BackupMode,
    /// SQL run before the upgrade and its undo after it.
    setup: &'static [&'static str],
    undo: &'static [&'static str],
    wrong_password: bool,
    tools_in_the_app: bool,
    store_read_only: bool,
    bad_health: bool,
    trigger: Trigger,
    /// Whether the run stops the instances before it aborts.
    stops: bool,
    /// Whether preflight passed, so the engine observed the deployment after the abort
    /// (a failing preflight has changed nothing: it only reads).
    observed: bool,
    /// Words the abort's cause must contain.
    cause: &'static str,
    /// A `before_stop` hook (argv) the run has.
    before_stop: Option<&'static [&'static str]>,
}

const BASE: Case = Case {
    name: "",
    to: "1.1.0",
    mode: BackupMode::Offline,
    setup: &[],
    undo: &[],
    wrong_password: false,
    tools_in_the_app: false,
    store_read_only: false,
    bad_health: false,
    trigger: Trigger::None,
    stops: false,
    observed: false,
    cause: "",
    before_stop: None,
};

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "the health check is misconfigured",
            bad_health: true,
            cause: "[health] interval",
            ..BASE
        },
        Case {
            // Refused by preflight, which only reads: nothing to observe afterwards.
            name: "a downgrade",
            to: "0.9.0",
            cause: "downgrade",
            ..BASE
        },
        Case {
            name: "the database refuses the credentials",
            wrong_password: true,
            cause: "Access denied",
            ..BASE
        },
        Case {
            name: "the dump tools are missing where they run",
            tools_in_the_app: true,
            cause: "mariadb-dump",
            ..BASE
        },
        Case {
            name: "the store cannot be written",
            store_read_only: true,
            cause: "Read-only file system",
            ..BASE
        },
        Case {
            name: "a row the server could not restore",
            setup: &[
                "CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB)",
                "INSERT INTO big VALUES (1, REPEAT('x', @@max_allowed_packet DIV 2 + 1048576))",
            ],
            undo: &["DROP TABLE big"],
            cause: "max_allowed_packet",
            ..BASE
        },
        Case {
            name: "FLOAT values a keyless table cannot restore exactly",
            setup: &[
                "CREATE TABLE gauges (f FLOAT)",
                "INSERT INTO gauges VALUES (1 / 7e0)",
            ],
            undo: &["DROP TABLE gauges"],
            cause: "gauges",
            ..BASE
        },
        Case {
            name: "the tag does not exist",
            observed: true,
            // Above the running version: a lower one is refused as a downgrade first.
            to: "9.9.9-missing",
            cause: "9.9.9-missing",
            ..BASE
        },
        Case {
            name: "cancelled while pulling",
            observed: true,
            trigger: Trigger::Cancel("pull"),
            cause: "cancelled",
            ..BASE
        },
        Case {
            name: "the store becomes unwritable during an online backup",
            observed: true,
            mode: BackupMode::Online,
            trigger: Trigger::StoreReadOnly("backup"),
            cause: "Read-only file system",
            ..BASE
        },
        Case {
            name: "the before_stop hook fails",
            observed: true,
            before_stop: Some(&["/bin/sh", "-c", "echo maintenance page refused >&2; exit 3"]),
            cause: "maintenance page refused",
            ..BASE
        },
        Case {
            name: "the store becomes unwritable after the stop",
            observed: true,
            trigger: Trigger::StoreReadOnly("stop"),
            stops: true,
            cause: "Read-only file system",
            ..BASE
        },
        Case {
            name: "cancelled during the offline backup",
            observed: true,
            trigger: Trigger::Cancel("backup"),
            stops: true,
            cause: "cancelled",
            ..BASE
        },
    ]
}

fn database(d: &Deployment, wrong_password: bool, tools_in_the_app: bool) -> Database {
    let url = d.db.url();
    let rest = url.trim_start_matches("mysql://");
    let (user_info, host_path) = rest.rsplit_once('@').unwrap();
    let user = user_info.split(':').next().unwrap();
    let password = if wrong_password {
        format!("{}-wrong", d.password)
    } else {
        d.password.clone()
    };
    let site = if tools_in_the_app {
        ToolSite::Exec(ExecTarget::AnyInstance)
    } else {
        ToolSite::Local
    };
    Database::new(
        DatabaseEngine::Mariadb,
        &format!("mysql://{user}@{host_path}"),
        Some(password),
        site,
    )
    .unwrap()
}

async fn abort(d: &Deployment, case: &Case) {
    for sql in case.setup {
        d.db.execute(sql).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let mut read_only = case.store_read_only.then(|| ReadOnly::mount(&store));
    let backups = DumpBackups::new(
        database(d, case.wrong_password, case.tools_in_the_app),
        Arc::new(LocalStore::new(&store)),
        vec![],
        ExecTarget::AnyInstance,
    );
    let journal = SqliteJournal::open(dir.path().join("journal.db"))
        .await
        .unwrap();
    let mut settings = Settings::new(&d.base);
    settings.health = HealthCheck {
        timeout: HEALTHY,
        ..HealthCheck::default()
    };
    if let Some(argv) = case.before_stop {
        settings.hooks.before_stop = Some(cutover_core::HookCommand::new(argv.iter().copied()));
    }
    if case.bad_health {
        settings.health.interval = Duration::ZERO;
    }

    // The trigger acts synchronously when its step starts, before the step's effect.
    let cancel: Arc<Mutex<Option<Cancel>>> = Arc::default();
    let mounted: Arc<Mutex<Option<ReadOnly>>> = Arc::default();
    let trigger = case.trigger;
    let events = {
        let cancel = cancel.clone();
        let mounted = mounted.clone();
        let store = store.clone();
        EventSink::new(move |e| {
            let EventKind::StepStarted { step, .. } = &e.kind else {
                return;
            };
            match trigger {
                Trigger::Cancel(at) if step == at => {
                    if let Some(cancel) = cancel.lock().unwrap().as_ref() {
                        cancel();
                    }
                }
                Trigger::StoreReadOnly(at) if step == at => {
                    *mounted.lock().unwrap() = Some(ReadOnly::mount(&store));
                }
                _ => {}
            }
        })
    };
    let engine = Engine::new(
        Arc::new(d.driver.clone()),
        Arc::new(backups),
        Arc::new(journal),
        settings,
    )
    .with_events(events);
    let token = engine.cancellation();
    *cancel.lock().unwrap() = Some(Box::new(move || token.cancel()));

    let before = inspect(d, !case.stops);
    let done = engine
        .start(Plan::Upgrade {
            to: image(case.to),
            backup: case.mode,
            replicas: None,
            allow_downgrade: false,
            hooks: cutover_core::machine::HookPoints {
                before_stop: case.before_stop.is_some(),
                ..Default::default()
            },
        })
        .await
        .expect("the journal works");
    let after = inspect(d, !case.stops);
    read_only.take();
    mounted.lock().unwrap().take();
    for sql in case.undo {
        d.db.execute(sql).await;
    }

    let name = case.name;
    assert_eq!(
        done.report.outcome,
        Outcome::Aborted,
        "{name}: {}",
        done.message
    );
    let cause = done
        .report
        .cause
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    assert!(
        cause.contains(case.cause),
        "{name}: the cause does not name {:?}: {cause}",
        case.cause
    );
    assert_eq!(after, before, "{name}: the deployment changed");
    assert!(
        done.message.contains("runs as before") && !done.message.contains("NOT as before"),
        "{name}: {}",
        done.message
    );
    if case.observed {
        assert!(
            done.message.contains("(observed)"),
            "{name}: {}",
            done.message
        );
    }
    d.wait_healthy("1.0.0", 2, HEALTHY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_abort_leaves_each_container_as_it_was() {
    let d = Deployment::start("1.0.0", 2, &[]).await;
    d.wait_healthy("1.0.0", 2, HEALTHY).await;
    docker(&["pull", "-q", &image("1.1.0").to_string()]);
    for case in cases() {
        abort(&d, &case).await;
    }
}
