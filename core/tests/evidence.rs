//! A failed release's instance logs are kept with its run (`cutover_core::evidence`):
//! in the failure of the step (journal, `step_failed` event, report), in a 0600 file
//! under the evidence directory, and named by the outcome message; capturing them is
//! best effort.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutover_core::journal::{Entry, Journal};
use cutover_core::testkit::{FakeConfig, FakeDriver, Fault, FaultKind, Method};
use cutover_core::{
    BackupMode, Capabilities, Engine, ErrorKind, Event, EventKind, EventSink, HealthCheck,
    ImageRef, Outcome, Plan, Settings, SqliteJournal, Step,
};

const OLD: &str = "registry.test:5000/app:1.0.0";
const BROKEN: &str = "registry.test:5000/app:1.1.0-broken";
const UNHEALTHY: &str = "registry.test:5000/app:1.1.0-unhealthy";

fn img(s: &str) -> ImageRef {
    s.parse().expect("valid test image")
}

fn fake(capabilities: Option<Capabilities>) -> FakeDriver {
    let mut config = FakeConfig::new(img(OLD), 2, vec![img(BROKEN), img(UNHEALTHY)]);
    config.broken = vec![img(BROKEN).tag().unwrap().to_string()];
    config.unhealthy = vec![img(UNHEALTHY).tag().unwrap().to_string()];
    if let Some(c) = capabilities {
        config.capabilities = c;
    }
    FakeDriver::new(config)
}

struct Setup {
    engine: Engine,
    journal: Arc<dyn Journal>,
    events: Arc<Mutex<Vec<Event>>>,
}

async fn setup(fake: &FakeDriver, evidence_dir: Option<std::path::PathBuf>) -> Setup {
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::in_memory().await.unwrap());
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let settings = Settings {
        health: HealthCheck {
            timeout: Duration::from_millis(300),
            interval: Duration::from_millis(2),
            ..HealthCheck::default()
        },
        heartbeat: Duration::from_millis(20),
        evidence_dir,
        ..Settings::new("app")
    };
    let engine = Engine::new(
        Arc::new(fake.clone()),
        Arc::new(fake.backups()),
        journal.clone(),
        settings,
    )
    .with_events(EventSink::new(move |e| {
        seen.lock().unwrap().push(e.clone())
    }));
    Setup {
        engine,
        journal,
        events,
    }
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

#[tokio::test]
async fn a_broken_leader_s_last_lines_are_kept_in_the_failure_the_event_and_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let fake = fake(None);
    let s = setup(&fake, Some(runs.clone())).await;
    let done = s.engine.start(upgrade(BROKEN)).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);

    let cause = done.report.cause.as_ref().unwrap();
    assert_eq!(cause.evidence.len(), 1, "{cause:#?}");
    let kept = &cause.evidence[0];
    assert!(
        kept.image.starts_with(&format!("{BROKEN}@sha256:")),
        "{}",
        kept.image
    );
    assert!(
        kept.tail.contains("failed: broken release"),
        "{}",
        kept.tail
    );
    let file = kept
        .file
        .as_deref()
        .expect("a file under the evidence directory");
    assert!(
        file.starts_with(&format!("{}/{}/", runs.display(), done.run)),
        "{file}"
    );
    let meta = std::fs::metadata(file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(file)
            .unwrap()
            .contains("broken release")
    );
    assert!(done.message.contains(file), "{}", done.message);

    // The journal's failed entry and the step_failed event carry the same evidence.
    let record = s.journal.run(&done.run).await.unwrap().unwrap();
    let journaled = record
        .records
        .iter()
        .find_map(|r| match &r.entry {
            Entry::Failed { step, error } => Some((*step, error.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(journaled.0, Step::AwaitLeader);
    assert_eq!(&journaled.1, cause);
    let events = s.events.lock().unwrap();
    let failed = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::StepFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(&failed, cause);
    let json = serde_json::to_value(
        events
            .iter()
            .find(|e| matches!(e.kind, EventKind::StepFailed { .. }))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["schema"], "cutover.event.v1");
    assert!(
        json["error"]["evidence"][0]["tail"]
            .as_str()
            .unwrap()
            .contains("broken release"),
        "{json}"
    );
}

#[tokio::test]
async fn without_an_evidence_directory_the_tail_stays_in_the_journal() {
    let fake = fake(None);
    let s = setup(&fake, None).await;
    let done = s.engine.start(upgrade(UNHEALTHY)).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
    let cause = done.report.cause.as_ref().unwrap();
    assert_eq!(cause.kind, ErrorKind::Timeout);
    assert_eq!(cause.evidence.len(), 1, "{cause:#?}");
    assert!(cause.evidence[0].tail.contains("unhealthy"));
    assert_eq!(cause.evidence[0].file, None);
    assert!(
        done.message
            .contains(&format!("cutover history --run {}", done.run)),
        "{}",
        done.message
    );
}

#[tokio::test]
async fn a_capture_that_fails_is_a_warning_and_changes_nothing_else() {
    // The driver cannot read logs at all.
    let blind = fake(Some(Capabilities::none().with_exec().with_archive()));
    let s = setup(&blind, None).await;
    let done = s.engine.start(upgrade(BROKEN)).await.unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
    assert!(done.report.cause.as_ref().unwrap().evidence.is_empty());
    let warned = |events: &[Event], what: &str| {
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Warning { message } if message.contains(what)))
    };
    assert!(warned(
        &s.events.lock().unwrap(),
        "cannot read instance logs"
    ));

    // The read fails, then it never returns: each is a warning, bounded by call_timeout.
    for kind in [FaultKind::Error(ErrorKind::Unavailable), FaultKind::Hang] {
        let fake = fake(None);
        fake.inject(Fault {
            method: Method::Logs,
            nth: 1,
            kind,
        });
        let mut s = setup(&fake, None).await;
        let mut settings = s.engine.settings().clone();
        settings.call_timeout = Duration::from_millis(200);
        let events = s.events.clone();
        s.engine = Engine::new(
            Arc::new(fake.clone()),
            Arc::new(fake.backups()),
            s.journal.clone(),
            settings,
        )
        .with_events(EventSink::new(move |e| {
            events.lock().unwrap().push(e.clone())
        }));
        let done = s.engine.start(upgrade(BROKEN)).await.unwrap();
        assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
        let cause = done.report.cause.as_ref().unwrap();
        assert!(cause.evidence.is_empty());
        assert!(
            cause.message.contains("start-up failed"),
            "{}",
            cause.message
        );
        assert!(
            warned(&s.events.lock().unwrap(), "could not read the logs of"),
            "{kind:?}"
        );
    }
}

/// The process dies right after it started the broken leader; the operator then chooses
/// `resume --rollback`: the leader's lines are read before its rollback removes it.
#[tokio::test]
async fn resume_rollback_of_a_run_interrupted_at_the_leader_keeps_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let fake = fake(None);
    // The first scale stops the old instances, the second starts the leader.
    fake.inject(Fault {
        method: Method::Scale,
        nth: 2,
        kind: FaultKind::CrashAfterEffect,
    });
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&path).await.unwrap());
    let crashed = fake.crashed();
    let s = setup(&fake, Some(dir.path().join("runs"))).await;
    let engine = Engine::new(
        Arc::new(fake.clone()),
        Arc::new(fake.backups()),
        journal,
        s.engine.settings().clone(),
    );
    let mut task = tokio::spawn(async move { engine.start(upgrade(BROKEN)).await });
    tokio::select! {
        () = crashed.notified() => { task.abort(); let _ = task.await; }
        done = &mut task => panic!("the run ended without its crash: {done:?}"),
    }

    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&path).await.unwrap());
    let mut settings = s.engine.settings().clone();
    settings.stale_after = Duration::ZERO;
    let done = Engine::new(
        Arc::new(fake.clone()),
        Arc::new(fake.backups()),
        journal,
        settings,
    )
    .resume_as(None, cutover_core::Resume::RollBack)
    .await
    .unwrap();
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);
    let cause = done.report.cause.as_ref().unwrap();
    assert_eq!(cause.kind, ErrorKind::Cancelled);
    assert_eq!(cause.evidence.len(), 1, "{cause:#?}");
    assert!(cause.evidence[0].tail.contains("broken release"));
    let file = cause.evidence[0].file.as_deref().unwrap();
    assert!(
        std::fs::read_to_string(file)
            .unwrap()
            .contains("exit code 3")
    );
}
