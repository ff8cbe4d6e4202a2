//! The fleet benchmark behind `bench/fleet`: the wall time of a full upgrade (1.0.0 →
//! 1.1.0 with an offline backup, the leader migrating alone, then scale-out) on fleets of
//! 1, 3 and 6 SSH test hosts in one run, and `ratio=X` (6-host time / 1-host time; the
//! target is ≤ 1.5 because the per-host work runs in parallel).
//!
//! Needs `scripts/testenv up --ssh-hosts 6`; `bench/fleet` starts them. Not a test: it is
//! run by hand.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Fleet, host_docker, image};
use cutover_backup::testkit::dump_engine;
use cutover_backup::{Database, DatabaseEngine, ToolSite};
use cutover_core::{BackupMode, Outcome, Plan};
use cutover_tests::TestEnv;

const SIZES: [usize; 3] = [1, 3, 6];

/// The upgrade's wall time in seconds and its steps as `name=millis`.
async fn upgrade_seconds(hosts: usize) -> (f64, String) {
    let all = TestEnv::get().ssh_hosts();
    assert!(
        all.len() >= hosts,
        "{hosts} SSH test hosts needed, {} up: run `scripts/testenv up --ssh-hosts 6`",
        all.len()
    );
    let hosts: Vec<_> = all.into_iter().take(hosts).collect();
    // The new image is already on every host, as after `cutover plan` or an earlier pull:
    // what is timed is the procedure, not the registry.
    for h in &hosts {
        host_docker(h, &["pull", "-q", &image("1.1.0").to_string()]);
    }
    let f = Fleet::start_on(hosts, "1.0.0", 1, &[]).await;
    f.wait_healthy("1.0.0", Duration::from_secs(120)).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, password) = f.db.credentials();
    let database = Database::new(
        DatabaseEngine::Mariadb,
        &url,
        Some(password),
        ToolSite::Local,
    )
    .unwrap();
    let steps = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = steps.clone();
    let engine = dump_engine(
        Arc::new(f.driver.clone()),
        database,
        &f.base,
        Duration::from_secs(120),
        dir.path(),
    )
    .await
    .unwrap()
    .with_events(cutover_core::EventSink::new(move |e| {
        if let cutover_core::EventKind::StepFinished { step, millis, .. } = &e.kind {
            record.lock().unwrap().push(format!("{step}={millis}"));
        }
    }));
    let started = Instant::now();
    let done = engine
        .start(Plan::Upgrade {
            to: image("1.1.0"),
            backup: BackupMode::Offline,
            replicas: None,
            allow_downgrade: false,
            hooks: Default::default(),
        })
        .await
        .expect("the journal works");
    let seconds = started.elapsed().as_secs_f64();
    if std::env::var_os("BENCH_STEPS").is_some() {
        eprintln!(
            "  {} hosts: {}",
            f.hosts.len(),
            steps.lock().unwrap().join(" ")
        );
    }
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);
    f.driver.close().await;
    let steps = steps.lock().unwrap().join(" ");
    (seconds, steps)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2)
        .max(1);
    let mut best = Vec::new();
    for hosts in SIZES {
        let mut runs = Vec::new();
        for _ in 0..reps {
            runs.push(upgrade_seconds(hosts).await);
        }
        let all: Vec<String> = runs.iter().map(|(t, _)| format!("{t:.2}")).collect();
        let (min, steps) = runs
            .into_iter()
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("at least one run");
        println!(
            "hosts={hosts} upgrade_seconds={min:.2} (best of {reps}: {})",
            all.join(" ")
        );
        println!("  steps (ms): {steps}");
        best.push(min);
    }
    println!("ratio={:.2}", best[SIZES.len() - 1] / best[0]);
}
