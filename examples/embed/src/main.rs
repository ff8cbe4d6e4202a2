//! Embedding cutover-core: how a vendor or platform team drives upgrades and rollbacks of
//! an Apidog-style deployment through the public API, rendering the event stream itself.
//!
//! The backend is the in-memory `FakeDriver` of the `testkit` feature, so the program runs
//! anywhere; a real embedding passes a Docker, Kubernetes or SSH driver and a real backup
//! engine instead. It doubles as a smoke test: the exit code is non-zero when any outcome
//! differs from the expected one.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cutover_core::testkit::{FakeConfig, FakeDriver};
use cutover_core::{
    BackupMode, Engine, Event, EventKind, EventSink, HealthCheck, ImageRef, Outcome, Plan,
    Settings, SqliteJournal,
};

const REPOSITORY: &str = "registry.example.com/apidog/server";

fn image(tag: &str) -> ImageRef {
    format!("{REPOSITORY}:{tag}")
        .parse()
        .expect("a valid reference")
}

fn upgrade_to(tag: &str) -> Plan {
    Plan::Upgrade {
        to: image(tag),
        backup: BackupMode::Offline, // stop first, then back up: no write is lost on rollback
        replicas: None,              // keep the observed replica count
        allow_downgrade: false,
        hooks: Default::default(),
    }
}

/// Renders one concise line per event. The engine calls the sink inline, so it must not
/// block; a UI would rather forward events to a task (`EventSink::channel`).
fn render(event: &Event) {
    match &event.kind {
        EventKind::RunStarted { kind, target, .. } => {
            println!("\n== {} of {target} (run {})", kind.as_str(), event.run)
        }
        EventKind::StepStarted { step, about } => println!("   {step:<18} {about}"),
        EventKind::Progress {
            step,
            done,
            total,
            unit,
        } => {
            let total = total.map_or(String::new(), |t| format!("/{t}"));
            println!("   {step:<18} .. {done}{total} {unit:?}");
        }
        EventKind::StepFinished {
            step,
            millis,
            detail,
        } => println!("   {step:<18} ok in {millis} ms {detail}"),
        EventKind::StepFailed {
            step,
            millis,
            error,
        } => println!("   {step:<18} FAILED after {millis} ms: {error}"),
        EventKind::Warning { message } => println!("   warning: {message}"),
        EventKind::Outcome {
            outcome,
            message,
            next,
        } => {
            println!("== {outcome}: {message}");
            if let Some(next) = next {
                println!("   next: {next}");
            }
        }
        // The event schema may grow within `cutover.event.v1`: ignore kinds we do not know.
        _ => {}
    }
}

/// Prints a mismatch and returns whether `got` is what we expected.
fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> bool {
    if got != want {
        eprintln!("UNEXPECTED {what}: got {got:?}, expected {want:?}");
    }
    got == want
}

#[tokio::main]
async fn main() -> Result<ExitCode, cutover_core::Error> {
    // 1. The backend: three replicas of v2.7.80 on a database migrated to v2.7.80. The fake
    //    starts the tags its config calls broken as instances that half-migrate the data
    //    and exit. (`v2.7.81-broken` would be refused as a downgrade from v2.7.81: a
    //    `-suffix` sorts before its release, as in semver, so the broken build is
    //    `v2.7.82-broken`.)
    let mut config = FakeConfig::new(
        image("v2.7.80"),
        3,
        vec![image("v2.7.81"), image("v2.7.82-broken")],
    );
    config.broken = vec!["v2.7.82-broken".into()];
    let fake = FakeDriver::new(config);

    // 2. The journal and lock. A real embedding keeps a file: `SqliteJournal::open(path)`.
    let journal = Arc::new(SqliteJournal::in_memory().await?);

    // 3. The target's name (lock key, backups' identity) and how readiness is awaited. With
    //    no http/tcp/command probe configured, the backend's own readiness decides.
    let settings = Settings {
        health: HealthCheck {
            timeout: Duration::from_secs(10),
            interval: Duration::from_millis(25),
            ..HealthCheck::default()
        },
        ..Settings::new("apidog")
    };
    let engine = Engine::new(
        Arc::new(fake.clone()),
        Arc::new(fake.backups()),
        journal,
        settings,
    )
    .with_events(EventSink::new({
        // Any closure that does not block will do; this one also shows the fake's database
        // whenever a step fails, so the half-migrated schema below is visible.
        let fake = fake.clone();
        move |event: &Event| {
            render(event);
            if let EventKind::StepFailed { .. } = event.kind {
                println!("   (database now: {:?})", fake.data());
            }
        }
    }));
    let mut ok = true;

    // 4. A good upgrade: the leader migrates alone, then the rest scale out.
    let good = engine.start(upgrade_to("v2.7.81")).await?;
    ok &= expect("v2.7.81 outcome", good.report.outcome, Outcome::Upgraded);
    fake.write_rows(25); // traffic on v2.7.81

    // 5. A broken build: its leader wrecks the schema and dies; the engine restores the data
    //    from this run's backup and the v2.7.81 instances from the snapshot.
    let before = fake.data();
    let broken = engine.start(upgrade_to("v2.7.82-broken")).await?;
    let after = fake.data();
    println!("   data before the run: {before:?}\n   data after the run:  {after:?}");
    ok &= expect("broken outcome", broken.report.outcome, Outcome::RolledBack);
    ok &= expect("data after the automatic rollback", after, before);

    // 6. Change of mind: roll back the newest successful upgrade (the v2.7.81 one; the
    //    broken run did not succeed) to its snapshot and backup. Rows written after that
    //    backup (the 25 above) are gone: that is what restoring the data means.
    let plan = engine.rollback_plan(None).await?;
    let back = engine.start(plan).await?;
    ok &= expect("manual rollback", back.report.outcome, Outcome::RolledBack);
    ok &= expect("data version", fake.data().version, "v2.7.80".to_string());
    ok &= expect("definition", fake.definition(), (image("v2.7.80"), 3));
    ok &= expect("fake's violations", fake.violations(), Vec::<String>::new());

    println!("\n{}", if ok { "all as expected" } else { "MISMATCH" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
