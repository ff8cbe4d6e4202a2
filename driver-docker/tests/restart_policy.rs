//! Restart policies through the driver's primitives on a real engine: instances of a new
//! image start without one (Docker must not restart a release that has not been healthy
//! once), `release` gives them the definition's in place, and both a restore and a restart
//! of the old release bring the old definition's back.
//!
//! The containers of 1.0.0 run under `--restart unless-stopped` and wait for a database
//! they never reach (switching versions without restoring data would make an old release
//! refuse a newer schema).

mod common;

use common::{Deployment, image};
use cutover_core::{Driver, EventSink};
use cutover_tests::docker;

/// `name`'s restart policy and the id of the process it runs, as `docker inspect` shows them.
fn inspect(name: &str) -> (String, String) {
    let out = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.RestartPolicy.Name}} {{.Id}} {{.State.Pid}}",
        name,
    ]);
    let (policy, process) = out.split_once(' ').unwrap();
    (policy.to_string(), process.to_string())
}

fn policy(name: &str) -> String {
    inspect(name).0
}

/// The labels of the target's definition container, as JSON.
fn definition_labels(d: &Deployment) -> serde_json::Value {
    let names = docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        "label=cutover.role=definition",
        "--filter",
        &format!("label=cutover.target=containers:{}", d.base),
    ]);
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names.len(), 1, "one definition container: {names:?}");
    serde_json::from_str(&docker(&[
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        names[0],
    ]))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_instances_wait_for_release_to_get_the_definition_s_restart_policy() {
    let d = Deployment::start_without_database("1.0.0", 2).await;
    let second = format!("{}-2", d.base);
    assert_eq!(policy(&d.base), "unless-stopped");
    let snap = d.snapshot().await.unwrap();

    // The upgrade's steps: the leader and then the scale-out run without a policy, while
    // the definition keeps the real one.
    d.pull(&image("1.1.0"), &EventSink::discard())
        .await
        .unwrap();
    d.scale(0).await.unwrap();
    d.set_image(&image("1.1.0")).await.unwrap();
    d.scale(1).await.unwrap();
    assert_eq!(policy(&d.base), "no", "the leader has no restart policy");
    let labels = definition_labels(&d);
    assert_eq!(labels["cutover.pending-release"], "true");
    let template: serde_json::Value =
        serde_json::from_str(labels["cutover.template"].as_str().unwrap()).unwrap();
    assert_eq!(
        template["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped",
        "the definition keeps its policy"
    );
    d.scale(2).await.unwrap();
    assert_eq!(policy(&second), "no", "scale-out before release");

    // Commit: the policy in place, nothing restarted; again: nothing to do.
    let leader = inspect(&d.base).1;
    d.release(&snap).await.unwrap();
    assert_eq!(inspect(&d.base), ("unless-stopped".into(), leader.clone()));
    assert_eq!(policy(&second), "unless-stopped");
    d.release(&snap).await.unwrap();
    assert_eq!(inspect(&d.base), ("unless-stopped".into(), leader));
    assert!(
        definition_labels(&d)
            .get("cutover.pending-release")
            .is_none(),
        "released"
    );
    // A released definition's new instances get its policy at once.
    d.scale(3).await.unwrap();
    assert_eq!(policy(&format!("{}-3", d.base)), "unless-stopped");

    // A rollback from the snapshot alone (nothing kept after release) recreates 1.0.0 with
    // the old definition's policy.
    d.scale(0).await.unwrap();
    d.restore(&snap).await.unwrap();
    let mut instances: Vec<String> = d
        .all_containers()
        .into_iter()
        .filter(|n| !n.contains("cutover") && *n != d.toolbox)
        .map(|n| {
            let image = docker(&["inspect", "--format", "{{.Config.Image}}", &n]);
            format!("{n} {image} {}", policy(&n))
        })
        .collect();
    instances.sort();
    let old = image("1.0.0");
    assert_eq!(
        instances,
        [
            format!("{} {old} unless-stopped", d.base),
            format!("{second} {old} unless-stopped"),
        ],
        "restored from the snapshot"
    );

    // A failed upgrade: the kept 1.0.0 containers come back with their own policy.
    let snap = d.snapshot().await.unwrap();
    d.scale(0).await.unwrap();
    d.set_image(&image("1.1.0")).await.unwrap();
    d.scale(1).await.unwrap();
    assert_eq!(policy(&d.base), "no");
    d.scale(0).await.unwrap();
    d.restore(&snap).await.unwrap();
    for name in [&d.base, &second] {
        assert_eq!(policy(name), "unless-stopped", "{name} restored from kept");
    }

    // A stop or backup that failed before set_image: the old release is started again by
    // `scale` and, having served, gets its policy.
    d.scale(0).await.unwrap();
    d.scale(2).await.unwrap();
    for name in [&d.base, &second] {
        assert_eq!(policy(name), "unless-stopped", "{name} restarted");
    }
}
