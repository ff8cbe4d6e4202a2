//! The journal contract as cases any [`Journal`] must pass: the SQLite journal's unit
//! tests and the PostgreSQL journal's tests (against a real server) run the same ones.
//!
//! Each case takes the journal and a target name of its own, and uses run ids unique to
//! the call, so the cases can share one database.

use std::time::Duration;

use crate::ErrorKind;
use crate::driver::Holder;
use crate::journal::{Entry, Journal, RunHeader, RunStatus, new_run_id, now_ms, this_host};
use crate::machine::{Plan, Step};

const LIVE: Duration = Duration::from_secs(60);

fn header(id: &str, target: &str) -> RunHeader {
    RunHeader {
        id: id.into(),
        target: target.into(),
        plan: Plan::Backup,
        started_ms: now_ms(),
        host: this_host(),
        pid: std::process::id(),
        status: RunStatus::Running,
        ended_ms: None,
        report: None,
    }
}

fn holder(run: &str, pid: u32) -> Holder {
    Holder {
        run: run.into(),
        host: "elsewhere".into(),
        pid,
    }
}

/// A live holder locks out a second run (`Locked`, naming it); a dead one makes the
/// second run `Interrupted`, naming `cutover resume`; the refused run leaves no record.
pub async fn a_live_holder_locks_out_a_second_run_and_a_dead_one_asks_for_resume(
    j: &dyn Journal,
    target: &str,
) {
    let (r1, r2) = (new_run_id(), new_run_id() + "-second");
    j.begin(&header(&r1, target), &holder(&r1, 10), LIVE)
        .await
        .unwrap();
    let e = j
        .begin(&header(&r2, target), &holder(&r2, 11), LIVE)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Locked);
    assert!(
        e.to_string()
            .contains(&format!("run {r1} (pid 10 on elsewhere)")),
        "{e}"
    );
    let e = j
        .begin(&header(&r2, target), &holder(&r2, 11), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interrupted);
    assert!(
        e.to_string().contains(&format!("cutover resume {r1}")),
        "{e}"
    );
    assert!(
        j.run(&r2).await.unwrap().is_none(),
        "the refused run left a record"
    );
    j.force_release(target).await.unwrap();
}

/// Only the same run may take a lock over, and only from a dead holder; release by
/// another run keeps the lock; a forced release returns what it removed.
pub async fn take_over_is_only_for_the_same_run_and_a_dead_holder(j: &dyn Journal, target: &str) {
    let (r1, r2) = (new_run_id(), new_run_id() + "-other");
    j.begin(&header(&r1, target), &holder(&r1, 10), LIVE)
        .await
        .unwrap();
    let other = j
        .take_over(target, &holder(&r2, 12), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(other.kind(), ErrorKind::Locked);
    let live = j
        .take_over(target, &holder(&r1, 12), LIVE)
        .await
        .unwrap_err();
    assert_eq!(live.kind(), ErrorKind::Locked);
    j.take_over(target, &holder(&r1, 12), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(j.lock(target).await.unwrap().unwrap().holder.pid, 12);
    // Heartbeats of the old process no longer count.
    j.heartbeat(target, &holder(&r1, 10)).await.unwrap();
    j.release(target, &r2).await.unwrap();
    assert!(
        j.lock(target).await.unwrap().is_some(),
        "release by another run"
    );
    let removed = j.force_release(target).await.unwrap().unwrap();
    assert_eq!(removed.holder.run, r1);
    assert!(j.lock(target).await.unwrap().is_none());
}

/// A run's entries come back in order with their sequence numbers, and runs newest
/// first.
pub async fn entries_come_back_in_order_and_runs_newest_first(j: &dyn Journal, target: &str) {
    let first = new_run_id();
    j.begin(&header(&first, target), &holder(&first, 1), LIVE)
        .await
        .unwrap();
    j.append(
        &first,
        &Entry::Started {
            step: Step::Preflight,
        },
    )
    .await
    .unwrap();
    j.append(&first, &Entry::Retried).await.unwrap();
    j.release(target, &first).await.unwrap();
    let second_id = format!("{first}-zz-second");
    let mut second = header(&second_id, target);
    second.started_ms += 1;
    j.begin(&second, &holder(&second_id, 2), LIVE)
        .await
        .unwrap();
    let record = j.run(&first).await.unwrap().unwrap();
    let seqs: Vec<u32> = record.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [0, 1]);
    assert_eq!(record.records[1].entry, Entry::Retried);
    let ids: Vec<String> = j
        .runs(target, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(ids, [second_id.clone(), first]);
    j.release(target, &second_id).await.unwrap();
}
