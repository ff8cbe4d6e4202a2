//! The core's engine with the Kubernetes driver on the API emulator, the dump backup
//! engine against the real PostgreSQL and a SQLite journal: an upgrade with three
//! replicas proven from the emulator's history, an unhealthy release rolled back to the
//! exact previous pod template and replica count with the database restored, and two
//! cutover runs on one Deployment of which the Lease lets exactly one proceed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, HEALTHY, NAMESPACE, image};
use cutover_backup::testkit::EngineRun;
use cutover_backup::{Database, DatabaseEngine, ToolSite};
use cutover_core::{Driver, Outcome};
use cutover_driver_k8s::KubernetesDriver;
use cutover_kube_emulator::{HistoryEvent, existing_pods};
use cutover_tests::is_image;

async fn run_with(c: &Cluster, driver: KubernetesDriver, timeout: Duration) -> EngineRun {
    let (url, password) = c.db.credentials();
    let database = Database::new(
        DatabaseEngine::Postgres,
        &url,
        Some(password),
        ToolSite::Local,
    )
    .unwrap();
    EngineRun::new(Arc::new(driver), database, &c.name, timeout)
        .await
        .unwrap()
}

async fn run(c: &Cluster, timeout: Duration) -> EngineRun {
    run_with(c, c.driver.clone(), timeout).await
}

fn position(
    history: &[HistoryEvent],
    from: usize,
    f: impl Fn(&HistoryEvent) -> bool,
) -> Option<usize> {
    history.iter().skip(from).position(f).map(|p| p + from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_with_three_replicas_goes_to_zero_then_one_ready_leader_then_three() {
    let c = Cluster::start("1.0.0", 3, &[("SPECIMEN_MIGRATION_SECONDS", "2")]).await;
    c.db.seed_items(50).await;
    let items = c.db.count("items").await;
    let r = run(&c, HEALTHY).await;

    let done = r.upgrade(image("1.1.0")).await;
    assert_eq!(done.report.outcome, Outcome::Upgraded, "{}", done.message);
    c.wait_ready("1.1.0", 3).await;
    // The template names the release pinned to the digest the registry check reported,
    // and the pods report running it.
    let o = c.driver.observe().await.unwrap();
    let pinned = o
        .image
        .digest()
        .expect("the template is pinned to a digest");
    assert!(is_image(&o.image.to_string(), &image("1.1.0").to_string()));
    assert!(
        o.instances
            .iter()
            .all(|i| i.digest.as_deref() == Some(pinned)),
        "{:?}",
        o.instances
    );

    let history = c.emulator.history();
    let old = image("1.0.0").to_string();
    let new = image("1.1.0").to_string();
    // The workload's pods (not the toolbox pod) after each event.
    let prefix = format!("{}-", c.name);
    let existing: Vec<Vec<(String, String)>> = existing_pods(&history)
        .into_iter()
        .map(|pods| {
            pods.into_iter()
                .filter(|(p, _)| p.starts_with(&prefix))
                .collect()
        })
        .collect();
    let is_new_pod = |e: &HistoryEvent| matches!(e, HistoryEvent::PodCreated { image, .. } if is_image(image, &new));

    // Went to 0: the workload was scaled to 0 and every old pod was gone before the first
    // new pod was created.
    let first_new = position(&history, 0, is_new_pod).expect("a pod of the new image");
    let scaled_to_zero = position(&history, 0, |e| {
        matches!(e, HistoryEvent::Scaled { replicas: 0, .. })
    })
    .expect("the Deployment was scaled to 0");
    assert!(
        scaled_to_zero < first_new,
        "scaled to 0 only after a new pod: {history:#?}"
    );
    assert!(
        existing[first_new - 1].is_empty(),
        "pods still existed when the first new pod was created: {:?}\n{history:#?}",
        existing[first_new - 1]
    );
    // Exactly one new pod, Ready before any second new pod existed.
    let HistoryEvent::PodCreated { pod: leader, .. } = &history[first_new] else {
        unreachable!()
    };
    let leader_ready = position(
        &history,
        first_new,
        |e| matches!(e, HistoryEvent::PodReady { pod, .. } if pod == leader),
    )
    .expect("the leader became Ready");
    let second_new = position(&history, first_new + 1, is_new_pod).expect("a second new pod");
    assert!(
        leader_ready < second_new,
        "a second new pod was created before the leader {leader} was Ready: {history:#?}"
    );
    // Then 3, and never an old pod next to a new one.
    assert!(
        history
            .iter()
            .any(|e| matches!(e, HistoryEvent::Scaled { replicas: 3, .. })),
        "never scaled back to 3: {history:#?}"
    );
    for (i, pods) in existing.iter().enumerate().skip(first_new) {
        assert!(
            pods.iter().all(|(_, image)| is_image(image, &new)),
            "an old pod ({old}) existed next to a new one at event {i}: {pods:?}"
        );
    }
    assert_eq!(
        history.iter().filter(|e| is_new_pod(e)).count(),
        3,
        "exactly three new pods were created: {history:#?}"
    );

    // One migration run of 1.1.0, by the leader alone.
    let runs: Vec<_> =
        c.db.migration_runs()
            .await
            .into_iter()
            .filter(|m| m.version == "1.1.0")
            .collect();
    assert_eq!(
        runs.len(),
        1,
        "exactly one migration run of 1.1.0: {runs:?}"
    );
    assert_eq!(runs[0].outcome, "ok");
    assert_eq!(runs[0].instance, *leader, "the leader ran the migration");
    assert_eq!(c.db.count("items").await, items, "items intact");
    cutover_tests::assert_no_file_contains(r.dir(), &c.db.credentials().1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_release_rolls_back_the_template_the_replicas_and_the_data() {
    let c = Cluster::start("1.0.0", 2, &[]).await;
    c.db.seed_items(20).await;
    let r = run(&c, Duration::from_secs(15)).await;
    let fingerprint = r.fingerprint().await;
    let before = c
        .emulator
        .object("deployments", NAMESPACE, &c.name)
        .expect("the deployment");

    let done = r.upgrade(image("1.1.0-unhealthy")).await;
    assert_eq!(done.report.outcome, Outcome::RolledBack, "{}", done.message);

    // The 1.1.0 migration ran (the release only turned unhealthy afterwards) and was undone.
    assert!(
        c.emulator.history().iter().any(|e| matches!(e,
            HistoryEvent::PodReady { .. } | HistoryEvent::PodCreated { .. } if format!("{e:?}").contains("1.1.0-unhealthy"))),
        "no pod of the new release ever ran"
    );
    // The leader's pod printed why before the rollback deleted it: kept with the run.
    let kept = &done.report.cause.as_ref().unwrap().evidence;
    assert_eq!(kept.len(), 1, "{kept:#?}");
    assert!(
        kept[0].tail.contains("event=serving") && kept[0].tail.contains("health=unhealthy"),
        "{}",
        kept[0].tail
    );
    assert!(kept[0].file.is_some(), "{kept:#?}");
    assert_eq!(
        r.fingerprint().await,
        fingerprint,
        "database restored exactly"
    );
    let after = c
        .emulator
        .object("deployments", NAMESPACE, &c.name)
        .expect("the deployment");
    assert_eq!(
        after["spec"]["template"], before["spec"]["template"],
        "the pod template is exactly the previous one"
    );
    assert_eq!(
        after["spec"]["replicas"], 2,
        "the replica count is the previous one"
    );
    assert_ne!(
        after["spec"]["paused"], true,
        "the rollout is not left paused"
    );
    c.wait_ready("1.0.0", 2).await;
    let o = c.driver.observe().await.unwrap();
    assert_eq!(o.image, image("1.0.0"));
    assert!(
        o.instances.iter().all(|i| i.image == image("1.0.0")),
        "only 1.0.0 pods: {:?}",
        o.instances
    );
    cutover_tests::assert_no_file_contains(r.dir(), &c.db.credentials().1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_deployment_the_lease_lets_exactly_one_proceed() {
    let c = Cluster::start("1.0.0", 2, &[("SPECIMEN_MIGRATION_SECONDS", "2")]).await;
    // Two cutover processes: their own drivers, journals and backup stores.
    let a = run(&c, HEALTHY).await;
    let b = run_with(&c, c.second_driver().await, HEALTHY).await;

    let (x, y) = tokio::join!(a.upgrade(image("1.1.0")), b.upgrade(image("1.1.0")));
    let outcomes = [x.report.outcome, y.report.outcome];
    let upgraded = outcomes.iter().filter(|o| **o == Outcome::Upgraded).count();
    let aborted = outcomes.iter().filter(|o| **o == Outcome::Aborted).count();
    assert_eq!(
        (upgraded, aborted),
        (1, 1),
        "one run upgrades and the other stops at the lock:\n{}\n{}",
        x.message,
        y.message
    );
    let loser = if x.report.outcome == Outcome::Aborted {
        &x
    } else {
        &y
    };
    assert!(
        loser.message.contains("holds the lock"),
        "the refused run names the Lease holder: {}",
        loser.message
    );
    let runs: Vec<_> =
        c.db.migration_runs()
            .await
            .into_iter()
            .filter(|m| m.version == "1.1.0")
            .collect();
    assert_eq!(
        runs.len(),
        1,
        "exactly one migration run of 1.1.0: {runs:?}"
    );
    // The winner released the Lease at commit.
    let lease = c
        .emulator
        .object("leases", NAMESPACE, &c.driver.lease_name())
        .expect("the lease exists");
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the Lease is released after the run: {lease}"
    );
}
