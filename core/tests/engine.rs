//! The engine against the in-memory FakeDriver: clean runs, a failure at every step, a
//! crash after every effect followed by resume, random fault sequences, and the lock.

use std::sync::Arc;
use std::time::Duration;

use cutover_core::journal::{Entry, Journal};
use cutover_core::machine::{Plan, RunKind, Step};
use cutover_core::testkit::{FakeConfig, FakeDriver, Fault, FaultKind, Method, registry_digest};
use cutover_core::{
    BackupId, BackupMode, Engine, ErrorKind, EventKind, EventSink, Finished, HealthCheck,
    HookCommand, Hooks, ImageRef, Outcome, Settings, SqliteJournal,
};

const OLD: &str = "registry.test:5000/app:1.0.0";
const NEW: &str = "registry.test:5000/app:1.1.0";
const BROKEN: &str = "registry.test:5000/app:1.1.0-broken";
const UNHEALTHY: &str = "registry.test:5000/app:1.1.0-unhealthy";
const MISSING: &str = "registry.test:5000/app:9.9.9";
const REPLICAS: u32 = 3;

fn img(s: &str) -> ImageRef {
    s.parse().expect("valid test image")
}

fn settings(stale_after: Duration) -> Settings {
    Settings {
        health: HealthCheck {
            timeout: Duration::from_millis(400),
            interval: Duration::from_millis(2),
            ..HealthCheck::default()
        },
        heartbeat: Duration::from_millis(20),
        stale_after,
        ..Settings::new("app")
    }
}

fn fake() -> FakeDriver {
    let mut config = FakeConfig::new(
        img(OLD),
        REPLICAS,
        vec![img(NEW), img(BROKEN), img(UNHEALTHY)],
    );
    config.broken = vec![tag_of(BROKEN)];
    config.unhealthy = vec![tag_of(UNHEALTHY)];
    FakeDriver::new(config)
}

fn tag_of(image: &str) -> String {
    img(image).tag().expect("test images have tags").to_string()
}

fn engine(fake: &FakeDriver, journal: Arc<dyn Journal>, stale_after: Duration) -> Engine {
    Engine::new(
        Arc::new(fake.clone()),
        Arc::new(fake.backups()),
        journal,
        settings(stale_after),
    )
}

fn upgrade(to: &str) -> Plan {
    Plan::Upgrade {
        to: img(to),
        backup: BackupMode::Offline,
        replicas: None,
        allow_downgrade: false,
        hooks: Default::default(),
    }
}

/// `image` pinned to the digest the fake registry serves for it.
fn pinned(image: &str) -> ImageRef {
    img(image)
        .with_digest(&registry_digest(&img(image)))
        .unwrap()
}

async fn memory_journal() -> Arc<dyn Journal> {
    Arc::new(SqliteJournal::in_memory().await.expect("journal"))
}

/// The invariants every run must leave behind, given its outcome.
async fn assert_settled(fake: &FakeDriver, journal: &dyn Journal, finished: &Finished, to: &str) {
    fake.clear_faults();
    let outcome = finished.report.outcome;
    assert!(
        outcome.is_terminal(),
        "run ended {outcome}: {}",
        finished.message
    );
    assert_eq!(
        fake.violations(),
        Vec::<String>::new(),
        "history: {:#?}",
        fake.history()
    );
    let expect_image = if outcome == Outcome::Upgraded {
        to
    } else {
        OLD
    };
    let expect_data = img(expect_image).tag().unwrap().to_string();
    assert_eq!(
        fake.data().version,
        expect_data,
        "data after {outcome}; history {:#?}",
        fake.history()
    );
    // An upgrade pins the definition to the digest it pulled.
    let expect_definition = if outcome == Outcome::Upgraded {
        pinned(to)
    } else {
        img(OLD)
    };
    assert_eq!(
        fake.definition(),
        (expect_definition, REPLICAS),
        "definition after {outcome}"
    );
    let seen = cutover_core::Driver::observe(fake).await.unwrap();
    assert_eq!(seen.running(), REPLICAS as usize, "running after {outcome}");
    assert!(
        journal.lock("app").await.unwrap().is_none(),
        "journal lock left after {outcome}"
    );
    // Releasing the backend lock is best effort: a failed unlock leaves it, with a warning.
    let record = journal.run(&finished.run).await.unwrap().unwrap();
    let unlock_failed = record.records.iter().any(|r| {
        matches!(
            r.entry,
            Entry::Failed {
                step: Step::Unlock,
                ..
            }
        )
    });
    let locked = record.records.iter().any(|r| {
        matches!(
            r.entry,
            Entry::Finished {
                step: Step::Lock,
                ..
            }
        )
    });
    let held = fake.lock_holder().is_some();
    assert!(
        !held || unlock_failed,
        "backend lock left after {outcome} though unlock succeeded"
    );
    assert!(
        !(locked && unlock_failed) || held,
        "backend lock vanished after {outcome}"
    );
}

/// The first step that failed in a run's journal.
async fn first_failed_step(journal: &dyn Journal, run: &str) -> Option<Step> {
    let record = journal.run(run).await.unwrap().unwrap();
    record.records.iter().find_map(|r| match &r.entry {
        Entry::Failed { step, .. } => Some(*step),
        _ => None,
    })
}

/// The fake's call log as (method, nth call of that method).
fn numbered_calls(fake: &FakeDriver) -> Vec<(Method, u32)> {
    let mut counts = std::collections::HashMap::new();
    fake.call_log()
        .into_iter()
        .map(|m| {
            let n = counts.entry(m).or_insert(0);
            *n += 1;
            (m, *n)
        })
        .collect()
}

/// The call log of a clean upgrade, as (method, nth call of it).
async fn clean_calls(to: &str) -> Vec<(Method, u32)> {
    let fake = fake();
    let finished = engine(&fake, memory_journal().await, Duration::from_secs(30))
        .start(upgrade(to))
        .await
        .unwrap();
    assert!(finished.report.outcome.is_terminal());
    numbered_calls(&fake)
}

#[tokio::test]
async fn clean_upgrade_migrates_with_the_leader_alone() {
    let fake = fake();
    let journal = memory_journal().await;
    let (events, mut rx) = EventSink::channel();
    let finished = engine(&fake, journal.clone(), Duration::from_secs(30))
        .with_events(events)
        .start(upgrade(NEW))
        .await
        .unwrap();
    assert_eq!(
        finished.report.outcome,
        Outcome::Upgraded,
        "{}",
        finished.message
    );
    assert_settled(&fake, &*journal, &finished, NEW).await;
    let history = fake.history();
    let migrations = history.iter().filter(|h| h.starts_with("migrate")).count();
    assert_eq!(migrations, 1, "{history:#?}");
    // The backup of the old data is recorded before the first new instance starts.
    let backup_at = history
        .iter()
        .position(|h| h.starts_with("backup"))
        .unwrap();
    let first_new = history
        .iter()
        .position(|h| h.starts_with("start") && h.contains("app:1.1.0"))
        .unwrap();
    assert!(backup_at < first_new, "{history:#?}");

    let mut steps = Vec::new();
    while let Ok(e) = rx.try_recv() {
        assert_eq!(e.schema, cutover_core::EVENT_SCHEMA);
        if let EventKind::StepFinished { step, .. } = e.kind {
            steps.push(step);
        }
    }
    let expected = [
        "preflight",
        "lock",
        "pull",
        "snapshot",
        "stop",
        "backup",
        "set_image",
        "start_leader",
        "await_leader",
        "scale_out",
        "await_all",
        "release",
        "prune",
        "unlock",
    ];
    assert_eq!(steps, expected);
}

#[tokio::test]
async fn online_and_skipped_backups_order_the_steps_as_planned() {
    for (mode, expected) in [
        (
            BackupMode::Online,
            vec![
                "preflight",
                "lock",
                "pull",
                "snapshot",
                "backup",
                "stop",
                "set_image",
            ],
        ),
        (
            BackupMode::Skip,
            vec!["preflight", "lock", "pull", "snapshot", "stop", "set_image"],
        ),
    ] {
        let fake = fake();
        let journal = memory_journal().await;
        let plan = Plan::Upgrade {
            to: img(NEW),
            backup: mode,
            replicas: None,
            allow_downgrade: false,
            hooks: Default::default(),
        };
        let finished = engine(&fake, journal.clone(), Duration::from_secs(30))
            .start(plan)
            .await
            .unwrap();
        assert_eq!(finished.report.outcome, Outcome::Upgraded);
        let record = journal.run(&finished.run).await.unwrap().unwrap();
        let steps: Vec<&str> = record
            .records
            .iter()
            .filter_map(|r| match &r.entry {
                Entry::Finished { step, .. } => Some(step.as_str()),
                _ => None,
            })
            .take(expected.len())
            .collect();
        assert_eq!(steps, expected, "{mode:?}");
    }
}

#[tokio::test]
async fn broken_and_unhealthy_images_roll_back_with_the_data() {
    for bad in [BROKEN, UNHEALTHY] {
        let fake = fake();
        fake.write_rows(42);
        let rows = fake.data().rows;
        let journal = memory_journal().await;
        let finished = engine(&fake, journal.clone(), Duration::from_secs(30))
            .start(upgrade(bad))
            .await
            .unwrap();
        assert_eq!(
            finished.report.outcome,
            Outcome::RolledBack,
            "{bad}: {}",
            finished.message
        );
        assert_settled(&fake, &*journal, &finished, bad).await;
        assert_eq!(fake.data().rows, rows);
        assert!(
            finished.message.contains("rolled back"),
            "{}",
            finished.message
        );
    }
}

/// The fake's configuration decides which releases fail, not their tags' text: a tag
/// spelled `-broken` that is not listed upgrades cleanly, and a plain tag listed as
/// broken (or unhealthy) rolls back.
#[tokio::test]
async fn only_the_configured_releases_fail_whatever_their_tags_say() {
    let plain = FakeDriver::new(FakeConfig::new(img(OLD), REPLICAS, vec![img(BROKEN)]));
    let journal = memory_journal().await;
    let finished = engine(&plain, journal.clone(), Duration::from_secs(30))
        .start(upgrade(BROKEN))
        .await
        .unwrap();
    assert_eq!(
        finished.report.outcome,
        Outcome::Upgraded,
        "{}",
        finished.message
    );
    assert_settled(&plain, &*journal, &finished, BROKEN).await;

    for listed in ["broken", "unhealthy"] {
        let mut config = FakeConfig::new(img(OLD), REPLICAS, vec![img(NEW)]);
        match listed {
            "broken" => config.broken = vec![tag_of(NEW)],
            _ => config.unhealthy = vec![tag_of(NEW)],
        }
        let fake = FakeDriver::new(config);
        let journal = memory_journal().await;
        let finished = engine(&fake, journal.clone(), Duration::from_secs(30))
            .start(upgrade(NEW))
            .await
            .unwrap();
        assert_eq!(
            finished.report.outcome,
            Outcome::RolledBack,
            "{listed}: {}",
            finished.message
        );
        assert_settled(&fake, &*journal, &finished, NEW).await;
    }
}

#[tokio::test]
async fn a_missing_tag_aborts_before_touching_anything() {
    let fake = fake();
    let journal = memory_journal().await;
    let finished = engine(&fake, journal.clone(), Duration::from_secs(30))
        .start(upgrade(MISSING))
        .await
        .unwrap();
    assert_eq!(finished.report.outcome, Outcome::Aborted);
    assert_eq!(
        finished.report.cause.as_ref().unwrap().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        first_failed_step(&*journal, &finished.run).await,
        Some(Step::Pull)
    );
    assert!(fake.history().is_empty(), "{:#?}", fake.history());
    assert_settled(&fake, &*journal, &finished, MISSING).await;
}

#[tokio::test]
async fn a_downgrade_is_refused_unless_allowed() {
    let fake = FakeDriver::new(FakeConfig::new(img(NEW), REPLICAS, vec![img(OLD)]));
    let journal = memory_journal().await;
    let e = engine(&fake, journal.clone(), Duration::from_secs(30));
    let finished = e.start(upgrade(OLD)).await.unwrap();
    assert_eq!(finished.report.outcome, Outcome::Aborted);
    assert!(finished.message.contains("older"), "{}", finished.message);
    assert!(fake.history().is_empty());
    let allowed = Plan::Upgrade {
        to: img(OLD),
        backup: BackupMode::Offline,
        replicas: None,
        allow_downgrade: true,
        hooks: Default::default(),
    };
    assert_eq!(
        e.start(allowed).await.unwrap().report.outcome,
        Outcome::Upgraded
    );
}

#[tokio::test]
async fn a_failure_at_each_step_ends_in_the_documented_state() {
    for to in [NEW, BROKEN] {
        let calls = clean_calls(to).await;
        assert!(calls.len() > 10, "{calls:?}");
        for (method, nth) in calls {
            let fake = fake();
            fake.inject(Fault {
                method,
                nth,
                kind: FaultKind::Error(ErrorKind::Other),
            });
            let journal = memory_journal().await;
            let finished = engine(&fake, journal.clone(), Duration::from_secs(30))
                .start(upgrade(to))
                .await
                .unwrap();
            let context = format!(
                "fault in {method:?} #{nth} upgrading to {to}: {}",
                finished.message
            );
            let failed = first_failed_step(&*journal, &finished.run).await;
            let expected = match failed {
                None => Outcome::Upgraded,
                Some(
                    Step::Preflight
                    | Step::Lock
                    | Step::Pull
                    | Step::Snapshot
                    | Step::Stop
                    | Step::Backup,
                ) => Outcome::Aborted,
                Some(Step::Release | Step::Prune | Step::Unlock) if to == NEW => Outcome::Upgraded,
                Some(_) => Outcome::RolledBack,
            };
            let expected = if to == BROKEN && expected == Outcome::Upgraded {
                Outcome::RolledBack
            } else {
                expected
            };
            let finished = if finished.report.outcome == Outcome::Failed {
                // A fault while rolling back stops the run, holding the lock; resume
                // retries the step (the fault fired once) and finishes the rollback.
                assert!(
                    matches!(
                        finished.report.stuck_at,
                        Some(
                            Step::RollbackStop
                                | Step::RestoreData
                                | Step::RestoreDefinition
                                | Step::AwaitRestored
                        )
                    ),
                    "{context}"
                );
                engine(&fake, journal.clone(), Duration::ZERO)
                    .resume(None)
                    .await
                    .unwrap()
            } else {
                finished
            };
            assert_eq!(
                finished.report.outcome, expected,
                "{context} (failed step {failed:?})"
            );
            assert_settled(&fake, &*journal, &finished, to).await;
        }
    }
}

/// Runs `plan` until the fake signals a crash, then drops the engine mid-run. Returns the
/// run's end instead if it finished without reaching the faulty call.
async fn run_until_crash(
    fake: &FakeDriver,
    journal: Arc<dyn Journal>,
    plan: Plan,
) -> Option<Finished> {
    let crashed = fake.crashed();
    let e = engine(fake, journal, Duration::from_secs(30));
    let mut task = tokio::spawn(async move { e.start(plan).await });
    tokio::select! {
        () = crashed.notified() => {
            task.abort();
            let _ = task.await;
            None
        }
        done = &mut task => Some(done.unwrap().unwrap()),
    }
}

/// Where a test's journal lives: a file (each open is a new connection, as a new process
/// makes) or a PostgreSQL database (each open a new pool, as another machine makes).
enum JournalAt {
    File(tempfile::TempDir),
    Postgres(cutover_tests::ScratchDatabase),
}

impl JournalAt {
    async fn new(postgres: bool) -> Self {
        if postgres {
            JournalAt::Postgres(
                cutover_tests::ScratchDatabase::create(cutover_tests::Engine::Postgres).await,
            )
        } else {
            JournalAt::File(tempfile::tempdir().unwrap())
        }
    }

    async fn open(&self) -> Arc<dyn Journal> {
        match self {
            JournalAt::File(dir) => Arc::new(
                SqliteJournal::open(dir.path().join("journal.db"))
                    .await
                    .unwrap(),
            ),
            JournalAt::Postgres(db) => {
                let (url, password) = db.credentials();
                Arc::new(
                    cutover_core::PgJournal::connect(&url, Some(&password))
                        .await
                        .unwrap(),
                )
            }
        }
    }
}

/// After a crash following any effect of an upgrade (to a good release and to a broken
/// one), a new engine on a new journal connection resumes the run to its end.
async fn a_crash_after_any_effect_resumes_on(postgres: bool) {
    for to in [NEW, BROKEN] {
        let calls = clean_calls(to).await;
        for (method, nth) in calls {
            let at = JournalAt::new(postgres).await;
            let fake = fake();
            fake.inject(Fault {
                method,
                nth,
                kind: FaultKind::CrashAfterEffect,
            });
            let journal = at.open().await;
            if let Some(finished) = run_until_crash(&fake, journal.clone(), upgrade(to)).await {
                // Only the number of polls while awaiting readiness varies between runs.
                assert_eq!(method, Method::Observe, "{method:?} #{nth} never happened");
                assert_settled(&fake, &*journal, &finished, to).await;
                continue;
            }

            // A new process: a fresh engine and journal connection. The dead run's
            // heartbeat is at most 20 ms old, so treat 0 s as stale.
            let journal = at.open().await;
            let fresh = engine(&fake, journal.clone(), Duration::ZERO);
            let finished = fresh.resume(None).await.unwrap_or_else(|e| {
                panic!("resume after crash in {method:?} #{nth}: {}", e.report())
            });
            let expected = if to == NEW {
                Outcome::Upgraded
            } else {
                Outcome::RolledBack
            };
            assert_eq!(
                finished.report.outcome, expected,
                "crash in {method:?} #{nth} upgrading to {to}: {}",
                finished.message
            );
            assert_settled(&fake, &*journal, &finished, to).await;
        }
    }
}

#[tokio::test]
async fn a_crash_after_any_effect_resumes_to_a_terminal_state() {
    a_crash_after_any_effect_resumes_on(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_effect_resumes_to_a_terminal_state_on_a_postgres_journal() {
    a_crash_after_any_effect_resumes_on(true).await;
}

/// A store with backups b-1 … b-4 of the app and the leftovers of an unfinished backup,
/// on a journal at `path`. With `stuck_restore`, the fake has no backend lock (so that
/// the journal lock is the only one) and a restore of b-1 failed and had its lock removed
/// by force (`cutover unlock --force`): a non-terminal run that still needs b-1.
async fn backups_setup(
    path: &std::path::Path,
    stuck_restore: bool,
) -> (FakeDriver, Arc<dyn Journal>, Option<String>) {
    let mut config = FakeConfig::new(img(OLD), REPLICAS, vec![img(NEW)]);
    if stuck_restore {
        config.capabilities = cutover_core::Capabilities::none()
            .with_exec()
            .with_archive();
    }
    let fake = FakeDriver::new(config);
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(path).await.unwrap());
    let e = engine(&fake, journal.clone(), Duration::from_secs(30));
    for _ in 0..4 {
        let taken = e.start(Plan::Backup).await.unwrap();
        assert_eq!(taken.report.outcome, Outcome::BackedUp, "{}", taken.message);
    }
    fake.leave_unfinished("b-killed-mid-upload", 4096);
    let stuck = if stuck_restore {
        fake.inject(Fault {
            method: Method::RestoreData,
            nth: 1,
            kind: FaultKind::Error(ErrorKind::Unavailable),
        });
        let failed = e
            .start(Plan::Restore {
                backup: "b-1".parse().unwrap(),
                safety: false,
            })
            .await
            .unwrap();
        assert_eq!(failed.report.outcome, Outcome::Failed, "{}", failed.message);
        journal.force_release("app").await.unwrap();
        Some(failed.run)
    } else {
        None
    };
    fake.reset_calls();
    (fake, journal, stuck)
}

/// The fake's calls of a clean run of `plan` after [`backups_setup`].
async fn clean_backup_run_calls(plan: &Plan, stuck_restore: bool) -> Vec<(Method, u32)> {
    let dir = tempfile::tempdir().unwrap();
    let (fake, journal, _) = backups_setup(&dir.path().join("j.db"), stuck_restore).await;
    let finished = engine(&fake, journal, Duration::from_secs(30))
        .start(plan.clone())
        .await
        .unwrap();
    assert!(
        matches!(finished.report.outcome, Outcome::Verified | Outcome::Pruned),
        "{}",
        finished.message
    );
    numbered_calls(&fake)
}

/// What a verify or prune run must leave: its outcome, no lock, and (prune) exactly the
/// newest `keep` backups plus those a non-terminal run needs, and no leftovers.
async fn assert_backup_run_settled(
    fake: &FakeDriver,
    journal: &dyn Journal,
    finished: &Finished,
    plan: &Plan,
    stuck: Option<&str>,
    clean: bool,
    context: &str,
) {
    let expected = match plan {
        Plan::Verify { .. } => Outcome::Verified,
        _ => Outcome::Pruned,
    };
    assert_eq!(
        finished.report.outcome, expected,
        "{context}: {}",
        finished.message
    );
    assert!(
        journal.lock("app").await.unwrap().is_none(),
        "{context}: journal lock left"
    );
    assert!(fake.lock_holder().is_none(), "{context}: backend lock left");
    let left: Vec<String> = cutover_core::Backups::list(&fake.backups())
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id.to_string())
        .collect();
    match plan {
        Plan::Prune { keep } => {
            let mut want: Vec<String> = (1..=4)
                .rev()
                .take(*keep)
                .map(|n| format!("b-{n}"))
                .collect();
            if stuck.is_some() {
                want.push("b-1".into());
            }
            assert_eq!(left, want, "{context}");
            assert_eq!(fake.unfinished(), Vec::<String>::new(), "{context}");
            let detail = prune_detail(journal, &finished.run).await;
            // After a crash mid-prune, the resumed step only reports what was left to do.
            if clean {
                let deleted = if stuck.is_some() {
                    "b-2, b-3"
                } else {
                    "b-1, b-2"
                };
                let kept = stuck
                    .map(|run| format!("; kept b-1 (run {run} needs it)"))
                    .unwrap_or_default();
                assert_eq!(
                    detail,
                    format!(
                        "deleted {deleted}; swept unfinished b-killed-mid-upload (4.0 KiB){kept}"
                    ),
                    "{context}"
                );
            }
        }
        _ => assert_eq!(left.len(), 4, "{context}: verify deletes nothing"),
    }
    if let Plan::Verify {
        restore_test: true, ..
    } = plan
    {
        assert!(
            fake.history().iter().any(|h| h == "restore-test b-1"),
            "{context}: {:?}",
            fake.history()
        );
    }
}

#[tokio::test]
async fn a_crash_after_any_effect_of_verify_or_prune_resumes_to_its_end() {
    let cases = [
        (
            Plan::Verify {
                backup: "b-1".parse().unwrap(),
                restore_test: false,
            },
            false,
        ),
        (
            Plan::Verify {
                backup: "b-1".parse().unwrap(),
                restore_test: true,
            },
            false,
        ),
        (Plan::Prune { keep: 2 }, false),
        (Plan::Prune { keep: 1 }, true),
    ];
    for (plan, stuck_restore) in cases {
        // A clean run first: what it leaves, and the calls to crash after.
        let calls = clean_backup_run_calls(&plan, stuck_restore).await;
        assert!(
            calls.contains(&(Method::Lock, 1)) || stuck_restore,
            "{calls:?}"
        );
        if let Plan::Prune { .. } = plan {
            assert!(calls.contains(&(Method::DeleteBackup, 2)), "{calls:?}");
            assert!(calls.contains(&(Method::Sweep, 1)), "{calls:?}");
        }
        let mut crash_points = vec![None];
        crash_points.extend(calls.into_iter().map(Some));
        for point in crash_points {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("journal.db");
            let (fake, journal, stuck) = backups_setup(&path, stuck_restore).await;
            let context = format!("{plan:?} crashing after {point:?}");
            if let Some((method, nth)) = point {
                fake.inject(Fault {
                    method,
                    nth,
                    kind: FaultKind::CrashAfterEffect,
                });
            }
            let finished = match run_until_crash(&fake, journal.clone(), plan.clone()).await {
                Some(finished) => {
                    assert!(point.is_none(), "{context}: the call never happened");
                    finished
                }
                None => {
                    let journal: Arc<dyn Journal> =
                        Arc::new(SqliteJournal::open(&path).await.unwrap());
                    engine(&fake, journal, Duration::ZERO)
                        .resume(None)
                        .await
                        .unwrap_or_else(|e| panic!("{context}: resume: {}", e.report()))
                }
            };
            assert_backup_run_settled(
                &fake,
                &*journal,
                &finished,
                &plan,
                stuck.as_deref(),
                point.is_none(),
                &context,
            )
            .await;
            if let Some(stuck) = stuck {
                // The restore that needed b-1 can still finish.
                let resumed = engine(&fake, journal.clone(), Duration::ZERO)
                    .resume(Some(&stuck))
                    .await
                    .unwrap_or_else(|e| panic!("{context}: resume restore: {}", e.report()));
                assert_eq!(
                    resumed.report.outcome,
                    Outcome::Restored,
                    "{context}: {}",
                    resumed.message
                );
            }
        }
    }
}

#[tokio::test]
async fn a_failed_rollback_holds_the_lock_and_resume_finishes_it() {
    let fake = fake();
    fake.inject(Fault {
        method: Method::RestoreData,
        nth: 1,
        kind: FaultKind::Error(ErrorKind::Unavailable),
    });
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open(dir.path().join("j.db")).await.unwrap());
    let e = engine(&fake, journal.clone(), Duration::ZERO);
    let finished = e.start(upgrade(BROKEN)).await.unwrap();
    assert_eq!(finished.report.outcome, Outcome::Failed);
    assert_eq!(finished.report.stuck_at, Some(Step::RestoreData));
    assert_eq!(
        finished.next.as_deref(),
        Some(format!("cutover resume {}", finished.run).as_str())
    );
    assert!(
        journal.lock("app").await.unwrap().is_some(),
        "the lock must stay held"
    );

    // A new upgrade is refused and pointed at resume.
    let err = e.start(upgrade(NEW)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{}", err.report());
    assert!(err.to_string().contains("cutover resume"), "{err}");

    let resumed = e.resume(None).await.unwrap();
    assert_eq!(resumed.run, finished.run);
    assert_eq!(
        resumed.report.outcome,
        Outcome::RolledBack,
        "{}",
        resumed.message
    );
    assert_settled(&fake, &*journal, &resumed, BROKEN).await;
}

/// `cutover plan` and `cutover check` make the checks outside a run's step: a backend that
/// never answers is a failed `driver` check after `call_timeout`, not a command that hangs.
#[tokio::test]
async fn checks_outside_a_run_are_bounded_by_the_call_timeout() {
    let fake = fake();
    fake.inject(Fault {
        method: Method::Observe,
        nth: 1,
        kind: FaultKind::Hang,
    });
    let engine = Engine::new(
        Arc::new(fake.clone()),
        Arc::new(fake.backups()),
        memory_journal().await,
        Settings {
            call_timeout: Duration::from_millis(300),
            ..settings(Duration::ZERO)
        },
    );
    let (seen, checks) = engine.checks(&upgrade(NEW)).await;
    assert!(seen.is_none());
    let driver = checks
        .iter()
        .find(|c| c.name == "driver")
        .expect("a driver check");
    let e = driver.result.as_ref().unwrap_err();
    assert_eq!(e.kind(), cutover_core::ErrorKind::Timeout, "{}", e.report());
    assert!(
        e.report().contains("did not return within 300ms"),
        "{}",
        e.report()
    );
}

#[tokio::test]
async fn a_driver_call_that_never_returns_ends_in_the_documented_state() {
    let limited = |fake: &FakeDriver, journal: Arc<dyn Journal>| {
        Engine::new(
            Arc::new(fake.clone()),
            Arc::new(fake.backups()),
            journal,
            Settings {
                call_timeout: Duration::from_millis(300),
                ..settings(Duration::ZERO)
            },
        )
    };
    // set_image hangs: the upgrade rolls back.
    let fake = fake();
    fake.inject(Fault {
        method: Method::SetImage,
        nth: 1,
        kind: FaultKind::Hang,
    });
    let journal = memory_journal().await;
    let finished = limited(&fake, journal.clone())
        .start(upgrade(NEW))
        .await
        .unwrap();
    assert_eq!(
        finished.report.outcome,
        Outcome::RolledBack,
        "{}",
        finished.message
    );
    assert!(
        finished.message.contains("did not return within 300ms"),
        "{}",
        finished.message
    );
    assert_settled(&fake, &*journal, &finished, NEW).await;

    // The rollback's own stop hangs (not cancellable): the run fails with the lock held
    // instead of hanging, and resume finishes the rollback.
    let fake = fake_with_scale_hang(3);
    let journal = memory_journal().await;
    let e = limited(&fake, journal.clone());
    let finished = e.start(upgrade(BROKEN)).await.unwrap();
    assert_eq!(
        finished.report.outcome,
        Outcome::Failed,
        "{}",
        finished.message
    );
    assert_eq!(finished.report.stuck_at, Some(Step::RollbackStop));
    assert!(
        journal.lock("app").await.unwrap().is_some(),
        "lock released"
    );
    let resumed = e.resume(None).await.unwrap();
    assert_eq!(
        resumed.report.outcome,
        Outcome::RolledBack,
        "{}",
        resumed.message
    );
    assert_settled(&fake, &*journal, &resumed, BROKEN).await;
}

/// The fake, with its `nth` scale never returning (stop is the 1st, the leader the 2nd).
fn fake_with_scale_hang(nth: u32) -> FakeDriver {
    let fake = fake();
    fake.inject(Fault {
        method: Method::Scale,
        nth,
        kind: FaultKind::Hang,
    });
    fake
}

#[tokio::test]
async fn two_runs_on_one_journal_exactly_one_proceeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let fake = fake();
    fake.inject(Fault {
        method: Method::Pull,
        nth: 1,
        kind: FaultKind::Hang,
    });
    let first = engine(
        &fake,
        Arc::new(SqliteJournal::open(&path).await.unwrap()),
        Duration::from_secs(30),
    );
    let cancel = first.cancellation();
    let task = tokio::spawn(async move { first.start(upgrade(NEW)).await });
    let other_journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&path).await.unwrap());
    while other_journal.lock("app").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = engine(&fake, other_journal.clone(), Duration::from_secs(30));
    let err = second.start(upgrade(NEW)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{}", err.report());
    assert!(err.to_string().contains("pid"), "names the holder: {err}");

    // Cancelling the first (hung in pull) aborts it with nothing changed.
    cancel.cancel();
    let finished = task.await.unwrap().unwrap();
    assert_eq!(finished.report.outcome, Outcome::Aborted);
    assert_eq!(
        finished.report.cause.as_ref().unwrap().kind,
        ErrorKind::Cancelled
    );
    assert_settled(&fake, &*other_journal, &finished, NEW).await;
}

#[tokio::test]
async fn cancelling_while_the_leader_migrates_rolls_back() {
    let fake = fake();
    fake.inject(Fault {
        method: Method::Observe,
        nth: 2, // preflight is the first observe; the second is in await_leader
        kind: FaultKind::Hang,
    });
    let journal = memory_journal().await;
    let e = engine(&fake, journal.clone(), Duration::from_secs(30));
    let cancel = e.cancellation();
    let task = tokio::spawn(async move { e.start(upgrade(NEW)).await });
    // Cancel only once the second observe (await_leader's) has begun and hangs: an earlier
    // cancel would send the hang into a rollback step, which is not cancellable.
    while fake
        .call_log()
        .iter()
        .filter(|m| **m == Method::Observe)
        .count()
        < 2
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(fake.history().iter().any(|h| h.starts_with("migrate")));
    cancel.cancel();
    let finished = task.await.unwrap().unwrap();
    assert_eq!(
        finished.report.outcome,
        Outcome::RolledBack,
        "{}",
        finished.message
    );
    assert_settled(&fake, &*journal, &finished, NEW).await;
}

#[tokio::test]
async fn manual_rollback_restores_data_and_image_after_an_upgrade() {
    let fake = fake();
    let journal = memory_journal().await;
    let e = engine(&fake, journal.clone(), Duration::from_secs(30));
    let up = e.start(upgrade(NEW)).await.unwrap();
    assert_eq!(up.report.outcome, Outcome::Upgraded);
    fake.write_rows(5); // written on the new version; a rollback to the backup drops them

    let plan = e.rollback_plan(None).await.unwrap();
    let back = e.start(plan).await.unwrap();
    assert_eq!(back.report.outcome, Outcome::RolledBack, "{}", back.message);
    assert_eq!(fake.data().version, "1.0.0");
    assert_eq!(fake.data().rows, 1000);
    assert_eq!(fake.definition(), (img(OLD), REPLICAS));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    let wrong: cutover_core::BackupId = "b-999".parse().unwrap();
    let err = e.rollback_plan(Some(&wrong)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn backup_and_restore_runs() {
    let fake = fake();
    let journal = memory_journal().await;
    let e = engine(&fake, journal.clone(), Duration::from_secs(30));
    let taken = e.start(Plan::Backup).await.unwrap();
    assert_eq!(taken.report.outcome, Outcome::BackedUp);
    let id = taken.report.backup.unwrap().id;
    fake.write_rows(7);
    let written = fake.data().rows;
    let restored = e
        .start(Plan::Restore {
            backup: id,
            safety: true,
        })
        .await
        .unwrap();
    assert_eq!(
        restored.report.outcome,
        Outcome::Restored,
        "{}",
        restored.message
    );
    assert_eq!(fake.data().rows, 1000);
    assert_eq!(fake.definition(), (img(OLD), REPLICAS));
    // The data it replaced is in the safety backup, which a restore brings back.
    let safety = restored.report.safety.expect("a safety backup was taken");
    assert!(
        restored
            .message
            .contains(&format!("cutover restore {}", safety.id)),
        "{}",
        restored.message
    );
    let undone = e
        .start(Plan::Restore {
            backup: safety.id,
            safety: false,
        })
        .await
        .unwrap();
    assert_eq!(undone.report.outcome, Outcome::Restored);
    assert_eq!(fake.data().rows, written);

    let missing = e
        .start(Plan::Restore {
            backup: "b-77".parse().unwrap(),
            safety: true,
        })
        .await
        .unwrap();
    assert_eq!(missing.report.outcome, Outcome::Aborted);
    assert_eq!(
        first_failed_step(&*journal, &missing.run).await,
        Some(Step::Preflight)
    );
}

#[tokio::test]
async fn verify_and_prune_are_journaled_runs_under_the_lock() {
    let fake = fake();
    let journal = memory_journal().await;
    let e = engine(&fake, journal.clone(), Duration::from_secs(30));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let taken = e.start(Plan::Backup).await.unwrap();
        ids.push(taken.report.backup.unwrap().id);
    }

    let verified = e
        .start(Plan::Verify {
            backup: ids[0].clone(),
            restore_test: false,
        })
        .await
        .unwrap();
    assert_eq!(
        verified.report.outcome,
        Outcome::Verified,
        "{}",
        verified.message
    );
    assert_eq!(verified.report.backup.as_ref().unwrap().id, ids[0]);
    let missing = e
        .start(Plan::Verify {
            backup: "b-77".parse().unwrap(),
            restore_test: false,
        })
        .await
        .unwrap();
    assert_eq!(missing.report.outcome, Outcome::Aborted);
    assert_eq!(
        first_failed_step(&*journal, &missing.run).await,
        Some(Step::Verify)
    );

    let everything = e.start(Plan::Prune { keep: 0 }).await.unwrap();
    assert_eq!(everything.report.outcome, Outcome::Aborted);
    assert_eq!(
        e.backups().list().await.unwrap().len(),
        3,
        "nothing deleted"
    );
    let pruned = e.start(Plan::Prune { keep: 1 }).await.unwrap();
    assert_eq!(pruned.report.outcome, Outcome::Pruned, "{}", pruned.message);
    let left: Vec<_> = e
        .backups()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(left, vec![ids[2].clone()], "the newest is kept");

    let kinds: Vec<_> = journal
        .runs("app", 20)
        .await
        .unwrap()
        .iter()
        .map(|h| h.kind())
        .collect();
    assert!(kinds.contains(&RunKind::Verify), "{kinds:?}");
    assert!(kinds.contains(&RunKind::Prune), "{kinds:?}");
    assert!(journal.lock("app").await.unwrap().is_none(), "released");

    // While another run holds the lock, neither may run.
    fake.inject(Fault {
        method: Method::Pull,
        nth: 1,
        kind: FaultKind::Hang,
    });
    let upgrading = engine(&fake, journal.clone(), Duration::from_secs(30));
    let cancel = upgrading.cancellation();
    let task = tokio::spawn(async move { upgrading.start(upgrade(NEW)).await });
    while journal.lock("app").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for plan in [
        Plan::Prune { keep: 1 },
        Plan::Verify {
            backup: ids[2].clone(),
            restore_test: false,
        },
    ] {
        let err = e.start(plan).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked, "{}", err.report());
    }
    cancel.cancel();
    task.await.unwrap().unwrap();
}

mod random_faults {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = FaultKind> {
        prop_oneof![
            Just(FaultKind::Error(ErrorKind::Other)),
            Just(FaultKind::Error(ErrorKind::Unavailable)),
            Just(FaultKind::Error(ErrorKind::Timeout)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

        /// Random faults anywhere (including during rollback), resumed until the run ends:
        /// the invariants hold whatever the sequence.
        #[test]
        fn invariants_hold_under_random_faults(
            target in prop::sample::select(vec![NEW, BROKEN, UNHEALTHY]),
            faults in prop::collection::vec((0usize..40, kind()), 0..5),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let methods = [
                    Method::Observe, Method::Pull, Method::Snapshot, Method::SetImage,
                    Method::Scale, Method::Restore, Method::Release, Method::Lock,
                    Method::Unlock, Method::BackupPreflight, Method::Backup,
                    Method::RestoreData, Method::Prune,
                ];
                let fake = fake();
                for (i, kind) in faults {
                    fake.inject(Fault { method: methods[i % methods.len()], nth: (i / methods.len()) as u32 + 1, kind });
                }
                let journal = memory_journal().await;
                let e = engine(&fake, journal.clone(), Duration::ZERO);
                let mut finished = e.start(upgrade(target)).await.unwrap();
                let mut resumes = 0;
                while finished.report.outcome == Outcome::Failed {
                    resumes += 1;
                    assert!(resumes < 10, "never settles");
                    finished = e.resume(None).await.unwrap();
                }
                assert_settled(&fake, &*journal, &finished, target).await;
            });
        }
    }
}

#[tokio::test]
async fn an_interrupted_upgrade_can_be_rolled_back_instead_of_resumed() {
    use cutover_core::Resume;
    // Crash after the leader migrated (the first scale is stop, the second starts the
    // leader), or before anything changed (after pull).
    for (method, nth, expected) in [
        (Method::Scale, 2, Outcome::RolledBack),
        (Method::Pull, 1, Outcome::Aborted),
        // Right after the backend lock was taken: rolling back must release it.
        (Method::Lock, 1, Outcome::Aborted),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let fake = fake();
        fake.inject(Fault {
            method,
            nth,
            kind: FaultKind::CrashAfterEffect,
        });
        let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&path).await.unwrap());
        assert!(
            run_until_crash(&fake, journal, upgrade(NEW))
                .await
                .is_none()
        );
        let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&path).await.unwrap());
        let finished = engine(&fake, journal.clone(), Duration::ZERO)
            .resume_as(None, Resume::RollBack)
            .await
            .unwrap();
        assert_eq!(
            finished.report.outcome, expected,
            "{method:?}: {}",
            finished.message
        );
        assert_eq!(
            finished.report.cause.as_ref().unwrap().kind,
            ErrorKind::Cancelled
        );
        assert_settled(&fake, &*journal, &finished, NEW).await;
    }
}

#[tokio::test]
async fn a_rollback_without_backup_says_the_data_was_not_restored() {
    let fake = fake();
    let journal = memory_journal().await;
    let plan = Plan::Upgrade {
        to: img(BROKEN),
        backup: BackupMode::Skip,
        replicas: None,
        allow_downgrade: false,
        hooks: Default::default(),
    };
    let finished = engine(&fake, journal, Duration::from_secs(30))
        .start(plan)
        .await
        .unwrap();
    assert_eq!(finished.report.outcome, Outcome::RolledBack);
    assert!(
        finished.message.contains("NOT the data"),
        "{}",
        finished.message
    );
    assert!(
        fake.data().version.contains("half-migrated"),
        "the fake keeps the damage"
    );
}

#[tokio::test]
async fn the_same_upgrade_is_never_rolled_back_twice() {
    let fake = fake();
    let journal = memory_journal().await;
    let e = engine(&fake, journal, Duration::from_secs(30));
    assert_eq!(
        e.start(upgrade(NEW)).await.unwrap().report.outcome,
        Outcome::Upgraded
    );
    let plan = e.rollback_plan(None).await.unwrap();
    assert_eq!(
        e.start(plan.clone()).await.unwrap().report.outcome,
        Outcome::RolledBack
    );
    let again = e.rollback_plan(None).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::NotFound, "{}", again.report());
    // Even with the old plan in hand, preflight sees the old image already running.
    let replay = e.start(plan).await.unwrap();
    assert_eq!(replay.report.outcome, Outcome::Aborted);
    assert!(
        replay.message.contains("already runs"),
        "{}",
        replay.message
    );
    assert_eq!(fake.data().version, "1.0.0");
}

#[tokio::test]
async fn a_cancellation_does_not_leak_into_the_next_run() {
    let fake = fake();
    let journal = memory_journal().await;
    let e = engine(&fake, journal, Duration::from_secs(30));
    e.cancellation().cancel();
    let first = e.start(upgrade(NEW)).await.unwrap();
    assert_eq!(first.report.outcome, Outcome::Aborted);
    assert!(!e.cancellation().is_cancelled());
    let second = e.start(upgrade(NEW)).await.unwrap();
    assert_eq!(
        second.report.outcome,
        Outcome::Upgraded,
        "{}",
        second.message
    );
}

#[tokio::test]
async fn a_failed_run_points_at_resume_even_while_its_process_lives() {
    let fake = fake();
    fake.inject(Fault {
        method: Method::RestoreData,
        nth: 1,
        kind: FaultKind::Error(ErrorKind::Other),
    });
    let e = engine(&fake, memory_journal().await, Duration::from_secs(30));
    let failed = e.start(upgrade(BROKEN)).await.unwrap();
    assert_eq!(failed.report.outcome, Outcome::Failed);
    let err = e.start(upgrade(NEW)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{}", err.report());
    assert!(
        err.to_string()
            .contains(&format!("cutover resume {}", failed.run)),
        "{err}"
    );
}

#[tokio::test]
async fn resume_notes_come_after_the_run_started_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let fake = fake();
    fake.inject(Fault {
        method: Method::Scale,
        nth: 2,
        kind: FaultKind::CrashAfterEffect,
    });
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&path).await.unwrap());
    assert!(
        run_until_crash(&fake, journal, upgrade(NEW))
            .await
            .is_none()
    );
    let (events, mut rx) = EventSink::channel();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&path).await.unwrap());
    engine(&fake, journal, Duration::ZERO)
        .with_events(events)
        .resume(None)
        .await
        .unwrap();
    let first = rx.try_recv().unwrap();
    assert!(
        matches!(first.kind, EventKind::RunStarted { resumed: true, .. }),
        "{first:?}"
    );
    let second = rx.try_recv().unwrap();
    assert!(
        matches!(second.kind, EventKind::Warning { .. }),
        "{second:?}"
    );
}

/// Runs `f` once, right after the `pull` step finished and before the next step starts
/// (the engine emits events synchronously, between the two).
fn after_pull(f: impl Fn() + Send + Sync + 'static) -> EventSink {
    EventSink::new(move |e| {
        if let EventKind::StepFinished { step, .. } = &e.kind
            && step == "pull"
        {
            f();
        }
    })
}

/// The tag is moved locally (as `docker tag 1.0.0 1.1.0` would) between pull and start:
/// the definition is pinned to what was pulled, so the release that was pulled runs.
#[tokio::test]
async fn a_tag_moved_after_the_pull_starts_the_pulled_image() {
    let fake = fake();
    let journal = memory_journal().await;
    let moved = fake.clone();
    let engine = engine(&fake, journal.clone(), Duration::from_secs(30))
        .with_events(after_pull(move || moved.move_tag(&img(NEW), &img(OLD))));

    let done = engine.start(upgrade(NEW)).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);
    assert_eq!(
        fake.digest_of(&img(NEW)),
        fake.digest_of(&img(OLD)),
        "the tag moved"
    );
    let seen = cutover_core::Driver::observe(&fake).await.unwrap();
    let pulled = registry_digest(&img(NEW));
    for i in &seen.instances {
        assert_eq!(i.digest.as_deref(), Some(pulled.as_str()), "{i:?}");
    }
    assert_eq!(seen.image, pinned(NEW));
    assert_settled(&fake, journal.as_ref(), &done, NEW).await;
    let record = journal.run(&done.run).await.unwrap().unwrap();
    let journaled = record.records.iter().find_map(|r| match &r.entry {
        Entry::Finished {
            output: cutover_core::Output::Pulled(p),
            ..
        } => p.digest.clone(),
        _ => None,
    });
    assert_eq!(journaled, Some(pulled));
}

/// A driver that creates instances from the tag whatever the definition pins (as a
/// third-party driver might): the digest check after start catches the moved tag.
#[derive(Debug)]
struct Unpinning(FakeDriver);

#[async_trait::async_trait]
impl cutover_core::Driver for Unpinning {
    fn info(&self) -> cutover_core::DriverInfo {
        self.0.info()
    }
    fn capabilities(&self) -> cutover_core::Capabilities {
        self.0.capabilities()
    }
    async fn observe(&self) -> cutover_core::Result<cutover_core::Observed> {
        self.0.observe().await
    }
    async fn pull(
        &self,
        image: &ImageRef,
        events: &EventSink,
    ) -> cutover_core::Result<cutover_core::Pulled> {
        self.0.pull(image, events).await
    }
    async fn snapshot(&self) -> cutover_core::Result<cutover_core::Snapshot> {
        self.0.snapshot().await
    }
    async fn set_image(&self, image: &ImageRef) -> cutover_core::Result<()> {
        self.0.set_image(&image.without_digest()).await
    }
    async fn scale(&self, replicas: u32) -> cutover_core::Result<()> {
        self.0.scale(replicas).await
    }
    async fn restore(&self, snapshot: &cutover_core::Snapshot) -> cutover_core::Result<()> {
        self.0.restore(snapshot).await
    }
    async fn release(&self, snapshot: &cutover_core::Snapshot) -> cutover_core::Result<()> {
        self.0.release(snapshot).await
    }
    async fn lock(&self, holder: &cutover_core::Holder) -> cutover_core::Result<()> {
        self.0.lock(holder).await
    }
    async fn unlock(&self, holder: &cutover_core::Holder) -> cutover_core::Result<()> {
        self.0.unlock(holder).await
    }
}

#[tokio::test]
async fn an_instance_of_a_moved_tag_fails_the_step_naming_both_digests_and_rolls_back() {
    let fake = fake();
    let journal = memory_journal().await;
    let moved = fake.clone();
    let engine = Engine::new(
        Arc::new(Unpinning(fake.clone())),
        Arc::new(fake.backups()),
        journal.clone(),
        settings(Duration::from_secs(30)),
    )
    .with_events(after_pull(move || moved.move_tag(&img(NEW), &img(OLD))));

    let done = engine.start(upgrade(NEW)).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
    let cause = done.report.cause.clone().expect("a cause");
    assert_eq!(cause.kind, ErrorKind::Integrity, "{}", cause.message);
    let pulled = registry_digest(&img(NEW));
    let ran = registry_digest(&img(OLD));
    for needle in [pulled.as_str(), ran.as_str(), "moved", NEW] {
        assert!(
            cause.message.contains(needle),
            "{needle}: {}",
            cause.message
        );
    }
    let record = journal.run(&done.run).await.unwrap().unwrap();
    assert!(
        record.records.iter().any(|r| matches!(
            r.entry,
            Entry::Failed {
                step: Step::AwaitLeader,
                ..
            }
        )),
        "the leader's wait failed"
    );
    assert_settled(&fake, journal.as_ref(), &done, NEW).await;
}

/// Hooks at every point that record themselves in `dir`: each appends its name to `log`
/// and writes its environment to `HOOK.env`.
fn recording_hooks(dir: &std::path::Path) -> Hooks {
    let record = HookCommand {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            r#"echo "$CUTOVER_HOOK" >> log && env > "$CUTOVER_HOOK.env""#.into(),
        ],
        dir: Some(dir.to_path_buf()),
        timeout: Duration::from_secs(20),
    };
    Hooks {
        before_stop: Some(record.clone()),
        after_leader: Some(record.clone()),
        on_rollback: Some(record.clone()),
        after_run: Some(record),
    }
}

fn hooked_upgrade(to: &str, hooks: &Hooks) -> Plan {
    Plan::Upgrade {
        to: img(to),
        backup: BackupMode::Offline,
        replicas: None,
        allow_downgrade: false,
        hooks: hooks.points(),
    }
}

fn hooked_engine(
    fake: &FakeDriver,
    journal: Arc<dyn Journal>,
    stale_after: Duration,
    hooks: Hooks,
) -> Engine {
    Engine::new(
        Arc::new(fake.clone()),
        Arc::new(fake.backups()),
        journal,
        Settings {
            hooks,
            ..settings(stale_after)
        },
    )
}

/// An upgrade to `to` with `hooks`, to its end.
async fn upgrade_hooked(
    fake: &FakeDriver,
    journal: Arc<dyn Journal>,
    hooks: &Hooks,
    to: &str,
) -> cutover_core::Finished {
    hooked_engine(fake, journal, Duration::from_secs(30), hooks.clone())
        .start(hooked_upgrade(to, hooks))
        .await
        .unwrap()
}

/// The hooks that ran, in order.
fn hooks_ran(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The environment hook `hook` ran with.
fn hook_env(dir: &std::path::Path, hook: &str) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(dir.join(format!("{hook}.env")))
        .unwrap_or_else(|e| panic!("{hook} did not record its environment: {e}"))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn hooks_run_in_order_with_the_runs_context_and_nothing_else() {
    for (to, outcome, expected) in [
        (
            NEW,
            Outcome::Upgraded,
            ["before_stop", "after_leader", "after_run"],
        ),
        (
            BROKEN,
            Outcome::RolledBack,
            ["before_stop", "on_rollback", "after_run"],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let hooks = recording_hooks(dir.path());
        let fake = fake();
        let journal = memory_journal().await;
        let finished = upgrade_hooked(&fake, journal.clone(), &hooks, to).await;
        assert_eq!(finished.report.outcome, outcome, "{}", finished.message);
        assert_settled(&fake, &*journal, &finished, to).await;
        assert_eq!(hooks_ran(dir.path()), expected, "upgrading to {to}");

        // What the shell itself adds (dash and bash) besides what cutover passes on.
        let allowed = ["PATH", "HOME", "LANG", "PWD", "OLDPWD", "SHLVL", "_"];
        let backup = finished.report.backup.as_ref().unwrap().id.to_string();
        for hook in expected {
            let env = hook_env(dir.path(), hook);
            for name in env.keys() {
                assert!(
                    name.starts_with("CUTOVER_") || allowed.contains(&name.as_str()),
                    "{hook} got {name} from cutover's environment"
                );
            }
            // Every secret-looking variable of this process (the test environment's
            // database and journal passwords) stays out.
            for (name, _) in std::env::vars() {
                if name.contains("PASSWORD") || name.starts_with("CARGO") {
                    assert!(!env.contains_key(&name), "{hook} got {name}");
                }
            }
            assert_eq!(env["CUTOVER_RUN"], finished.run, "{hook}");
            assert_eq!(env["CUTOVER_APP"], "app", "{hook}");
            assert_eq!(env["CUTOVER_HOOK"], hook);
            assert!(env["CUTOVER_FROM"].starts_with(OLD), "{hook}: {env:?}");
            assert_eq!(env["CUTOVER_TO"], to, "{hook}");
            assert_eq!(
                env["CUTOVER_TO_DIGEST"],
                registry_digest(&img(to)),
                "{hook}"
            );
            // The offline backup follows the stop.
            let expect_backup = (hook != "before_stop").then_some(&backup);
            assert_eq!(env.get("CUTOVER_BACKUP"), expect_backup, "{hook}");
            let expect_outcome =
                matches!(hook, "on_rollback" | "after_run").then(|| outcome.as_str().to_string());
            assert_eq!(
                env.get("CUTOVER_OUTCOME"),
                expect_outcome.as_ref(),
                "{hook}"
            );
        }
        let record = journal.run(&finished.run).await.unwrap().unwrap();
        let hook_steps: Vec<Step> = record
            .records
            .iter()
            .filter_map(|r| match r.entry {
                Entry::Finished { step, .. } if step.as_str().starts_with("hook_") => Some(step),
                _ => None,
            })
            .collect();
        assert_eq!(hook_steps.len(), 3, "{hook_steps:?}");
    }
}

/// Whether a process runs (a zombie waiting to be reaped does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after) = stat.rsplit_once(") ")?;
            after.chars().next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Waits for a killed process to stop running; a minute is far beyond any kill.
fn wait_until_gone(pid: u32, what: &str) {
    for _ in 0..600 {
        if !running(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: pid {pid} still runs");
}

#[tokio::test]
async fn a_failed_before_stop_aborts_the_upgrade_with_nothing_changed() {
    let dir = tempfile::tempdir().unwrap();
    let failing = |argv: &[&str], timeout: Duration| HookCommand {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        dir: Some(dir.path().to_path_buf()),
        timeout,
    };
    let not_a_program = dir.path().join("not-a-program");
    std::fs::write(&not_a_program, [0u8, 1, 2, 3]).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&not_a_program, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cases = [
        (
            failing(
                &[
                    "/bin/sh",
                    "-c",
                    "echo first >&2; echo maintenance page is down >&2; exit 3",
                ],
                Duration::from_secs(20),
            ),
            vec!["before_stop", "exit status 3", "maintenance page is down"],
            true,
        ),
        (
            // Its pid is written beside the log: the test checks it was killed.
            failing(
                &[
                    "/bin/sh",
                    "-c",
                    "echo $$ > sleeper.pid; exec /bin/sleep 300",
                ],
                Duration::from_secs(2),
            ),
            vec!["before_stop", "did not finish within", "killed"],
            true,
        ),
        (
            // Passes preflight's check, yet the system cannot run it.
            failing(&[not_a_program.to_str().unwrap()], Duration::from_secs(20)),
            vec!["before_stop", "could not start"],
            true,
        ),
        (
            // Found out by preflight, before the lock: no hook runs.
            failing(&["/nonexistent/maintenance-on"], Duration::from_secs(20)),
            vec![
                "before_stop",
                "\"/nonexistent/maintenance-on\" is not an executable file",
            ],
            false,
        ),
    ];
    let mut saw_the_kill = false;
    for (before_stop, says, ran) in cases {
        let hooks = Hooks {
            before_stop: Some(before_stop),
            ..recording_hooks(dir.path())
        };
        let _ = std::fs::remove_file(dir.path().join("log"));
        let fake = fake();
        let journal = memory_journal().await;
        let finished = upgrade_hooked(&fake, journal.clone(), &hooks, NEW).await;
        if let Ok(pid) = std::fs::read_to_string(dir.path().join("sleeper.pid")) {
            std::fs::remove_file(dir.path().join("sleeper.pid")).unwrap();
            let pid = pid.trim().parse().unwrap();
            wait_until_gone(pid, "the timed-out hook was not killed");
            saw_the_kill = true;
        }
        assert_eq!(
            finished.report.outcome,
            Outcome::Aborted,
            "{}",
            finished.message
        );
        let cause = finished.report.cause.as_ref().unwrap().message.clone();
        for said in says {
            assert!(cause.contains(said), "{said:?} not in {cause:?}");
        }
        assert!(
            !fake.call_log().contains(&Method::Scale),
            "stopped after a failed before_stop: {:?}",
            fake.call_log()
        );
        assert_settled(&fake, &*journal, &finished, NEW).await;
        if ran {
            // The end hook still runs, told the run aborted.
            assert_eq!(hooks_ran(dir.path()), ["after_run"]);
            assert_eq!(
                hook_env(dir.path(), "after_run")["CUTOVER_OUTCOME"],
                "aborted"
            );
        } else {
            assert_eq!(hooks_ran(dir.path()), Vec::<String>::new());
        }
    }
    assert!(saw_the_kill, "the timed-out hook never wrote its pid");
}

#[tokio::test]
async fn a_best_effort_hook_that_fails_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let fails = HookCommand {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo no pager >&2; exit 1".into(),
        ],
        dir: None,
        timeout: Duration::from_secs(20),
    };
    // A hook that leaves a process behind holding its stderr is done when it exits.
    let leaves_a_child = HookCommand {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "sleep 300 & echo $! > child.pid; exit 0".into(),
        ],
        dir: Some(dir.path().to_path_buf()),
        timeout: Duration::from_secs(120),
    };
    let hooks = Hooks {
        before_stop: Some(leaves_a_child),
        after_leader: Some(fails.clone()),
        after_run: Some(fails),
        ..recording_hooks(dir.path())
    };
    let fake = fake();
    let journal = memory_journal().await;
    let (events, mut rx) = EventSink::channel();
    let finished = hooked_engine(
        &fake,
        journal.clone(),
        Duration::from_secs(30),
        hooks.clone(),
    )
    .with_events(events)
    .start(hooked_upgrade(NEW, &hooks))
    .await
    .unwrap();
    // The run ended while the process the hook left behind still runs: it did not wait
    // for the end of the stderr that process holds.
    let child: u32 = std::fs::read_to_string(dir.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let left_running = running(child);
    let _ = std::process::Command::new("kill")
        .arg(child.to_string())
        .status();
    assert!(
        left_running,
        "the run waited for the hook's background process"
    );
    assert_eq!(
        finished.report.outcome,
        Outcome::Upgraded,
        "{}",
        finished.message
    );
    assert_settled(&fake, &*journal, &finished, NEW).await;
    let mut warnings = Vec::new();
    while let Ok(event) = rx.try_recv() {
        match event.kind {
            EventKind::Warning { message } => warnings.push(message),
            EventKind::StepFailed { step, .. } => panic!("{step} failed the run"),
            _ => {}
        }
    }
    for hook in ["hook_after_leader", "hook_after_run"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with(hook) && w.contains("no pager")),
            "{hook}: {warnings:?}"
        );
    }
}

/// A crash after any effect of a hooked upgrade, then resume: each hook runs exactly once
/// (a finished hook step is not repeated) and the run ends as a clean one does.
#[tokio::test]
async fn after_a_crash_and_resume_each_hook_ran_once() {
    for to in [NEW, BROKEN] {
        let clean = tempfile::tempdir().unwrap();
        let hooks = recording_hooks(clean.path());
        let fake_clean = fake();
        let finished = upgrade_hooked(&fake_clean, memory_journal().await, &hooks, to).await;
        assert!(finished.report.outcome.is_terminal());
        let expected = hooks_ran(clean.path());
        assert_eq!(expected.len(), 3, "{expected:?}");

        for (method, nth) in numbered_calls(&fake_clean) {
            let dir = tempfile::tempdir().unwrap();
            let hooks = recording_hooks(dir.path());
            let at = JournalAt::new(false).await;
            let fake = fake();
            fake.inject(Fault {
                method,
                nth,
                kind: FaultKind::CrashAfterEffect,
            });
            let journal = at.open().await;
            let crashed = fake.crashed();
            let e = hooked_engine(
                &fake,
                journal.clone(),
                Duration::from_secs(30),
                hooks.clone(),
            );
            let plan = hooked_upgrade(to, &hooks);
            let mut task = tokio::spawn(async move { e.start(plan).await });
            let done = tokio::select! {
                () = crashed.notified() => {
                    task.abort();
                    let _ = task.await;
                    None
                }
                done = &mut task => Some(done.unwrap().unwrap()),
            };
            let finished = match done {
                Some(finished) => {
                    assert_eq!(method, Method::Observe, "{method:?} #{nth} never happened");
                    finished
                }
                None => {
                    let journal = at.open().await;
                    hooked_engine(&fake, journal, Duration::ZERO, hooks.clone())
                        .resume(None)
                        .await
                        .unwrap_or_else(|e| {
                            panic!("resume after crash in {method:?} #{nth}: {}", e.report())
                        })
                }
            };
            assert_settled(&fake, &*at.open().await, &finished, to).await;
            assert_eq!(
                hooks_ran(dir.path()),
                expected,
                "crash after {method:?} #{nth} upgrading to {to}"
            );
        }
    }
}

/// The detail of run `id`'s prune step.
async fn prune_detail(journal: &dyn Journal, id: &str) -> String {
    let record = journal.run(id).await.unwrap().unwrap();
    record
        .records
        .iter()
        .rev()
        .find_map(|r| match &r.entry {
            Entry::Finished {
                output: output @ cutover_core::Output::Pruned { .. },
                ..
            } => Some(output.detail()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Retention never deletes the backup `cutover rollback` needs, nor the safety backup the
/// newest rollback's advice names, and says which it kept and why: an upgrade, two
/// backups and `prune --keep 2` keep the upgrade's backup, and the rollback works.
#[tokio::test]
async fn retention_keeps_what_rollback_and_its_advice_need_and_says_why() {
    let fake = fake();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::in_memory().await.unwrap());
    let e = engine(&fake, journal.clone(), Duration::from_secs(30));
    let up = e.start(upgrade(NEW)).await.unwrap();
    assert_eq!(up.report.outcome, Outcome::Upgraded, "{}", up.message);
    let needed = up.report.backup.clone().expect("the upgrade's backup").id;
    for _ in 0..2 {
        let taken = e.start(Plan::Backup).await.unwrap();
        assert_eq!(taken.report.outcome, Outcome::BackedUp, "{}", taken.message);
    }
    let pruned = e.start(Plan::Prune { keep: 2 }).await.unwrap();
    assert_eq!(pruned.report.outcome, Outcome::Pruned, "{}", pruned.message);
    let detail = prune_detail(&*journal, &pruned.run).await;
    assert_eq!(
        detail,
        format!("nothing deleted; kept {needed} (`cutover rollback` restores it)")
    );

    let plan = e.rollback_plan(None).await.unwrap();
    let back = e.start(plan).await.unwrap();
    assert_eq!(back.report.outcome, Outcome::RolledBack, "{}", back.message);
    let safety = back.report.safety.clone().expect("a safety backup").id;

    // Now the upgrade is undone: its backup may go; the rollback's safety backup stays,
    // also once a newer backup came.
    let taken = e.start(Plan::Backup).await.unwrap();
    assert_eq!(taken.report.outcome, Outcome::BackedUp, "{}", taken.message);
    let pruned = e.start(Plan::Prune { keep: 1 }).await.unwrap();
    let detail = prune_detail(&*journal, &pruned.run).await;
    assert!(
        detail.contains(&format!("deleted {needed}"))
            && detail.contains(&format!(
                "kept {safety} (the safety backup of run {}, the newest restore or rollback)",
                back.run
            )),
        "{detail}"
    );
    let left: Vec<BackupId> = cutover_core::Backups::list(&fake.backups())
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert!(left.contains(&safety), "{left:?}");
}
