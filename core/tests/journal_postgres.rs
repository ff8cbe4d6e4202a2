//! The journal contract on PostgreSQL, against the test environment's server: the same
//! cases as the SQLite journal's, two "machines" (two connection pools) starting a run at
//! the same instant, and a run begun on one machine resumed by the other.

use std::sync::Arc;
use std::time::Duration;

use cutover_core::journal::{Journal, RunHeader, RunStatus, new_run_id, now_ms};
use cutover_core::machine::Plan;
use cutover_core::testkit::journal as contract;
use cutover_core::{ErrorKind, Holder, PgJournal};
use cutover_tests::{Engine, ScratchDatabase};

async fn journal(db: &ScratchDatabase) -> PgJournal {
    let (url, password) = db.credentials();
    PgJournal::connect(&url, Some(&password)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_contract_holds_on_postgres() {
    let db = ScratchDatabase::create(Engine::Postgres).await;
    let j = journal(&db).await;
    contract::a_live_holder_locks_out_a_second_run_and_a_dead_one_asks_for_resume(&j, "a").await;
    contract::take_over_is_only_for_the_same_run_and_a_dead_holder(&j, "b").await;
    contract::entries_come_back_in_order_and_runs_newest_first(&j, "c").await;
    // A second connection applies no schema twice and sees the same runs.
    let again = journal(&db).await;
    assert_eq!(again.runs("c", 10).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_machines_starting_at_once_get_one_lock() {
    let db = ScratchDatabase::create(Engine::Postgres).await;
    let machines: Vec<Arc<PgJournal>> =
        vec![Arc::new(journal(&db).await), Arc::new(journal(&db).await)];
    for round in 0..20 {
        let target = format!("app-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = machines
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let (j, barrier, target) = (j.clone(), barrier.clone(), target.clone());
                tokio::spawn(async move {
                    let id = format!("{}-m{i}", new_run_id());
                    let header = RunHeader {
                        id: id.clone(),
                        target,
                        plan: Plan::Backup,
                        started_ms: now_ms(),
                        host: format!("machine-{i}"),
                        pid: 100 + i as u32,
                        status: RunStatus::Running,
                        ended_ms: None,
                        report: None,
                    };
                    let holder = Holder {
                        run: id,
                        host: format!("machine-{i}"),
                        pid: 100 + i as u32,
                    };
                    barrier.wait().await;
                    j.begin(&header, &holder, Duration::from_secs(60)).await
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => won += 1,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Locked, "{}", e.report());
                    assert!(e.to_string().contains("machine-"), "names the holder: {e}");
                }
            }
        }
        assert_eq!(won, 1, "round {round}: exactly one machine gets the lock");
        let holder = machines[1].lock(&target).await.unwrap().unwrap();
        let from_other = machines[0].lock(&target).await.unwrap().unwrap();
        assert_eq!(holder, from_other, "both machines see the same holder");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_refused_without_echoing_it() {
    let e = PgJournal::connect("postgres://cutover:hunter2@127.0.0.1/journal", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(!e.report().contains("hunter2"), "{}", e.report());
}
