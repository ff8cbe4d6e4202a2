//! The API emulator's Kubernetes semantics as kube's client sees them: optimistic
//! concurrency on Leases, generation / observedGeneration, the scale subresource, and
//! list + watch of the pods a Deployment controller creates.

use std::time::Duration;

use cutover_kube_emulator::{Emulator, EmulatorConfig};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

async fn client(emulator: &Emulator) -> kube::Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, emulator.kubeconfig("ns")).unwrap();
    let file = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_resource_version_is_a_conflict_and_a_taken_name_too() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client(&emulator).await, "ns");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let e = leases
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert_eq!(code(e), 409, "a second create of the name");

    let mut mine = created.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let replaced = leases
        .replace("l", &PostParams::default(), &mine)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version, created.metadata.resource_version,
        "a write bumps the resourceVersion"
    );
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let e = leases
        .replace("l", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(code(e), 409, "a replace with a stale resourceVersion");
    let now = leases.get("l").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_observes_generations_and_watches_see_its_pods() {
    let emulator = Emulator::start(EmulatorConfig {
        ready_delay: Duration::from_millis(100),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let client = client(&emulator).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ns");
    let pods: Api<Pod> = Api::namespaced(client, "ns");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "w"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}},
            "template": {"metadata": {"labels": {"app": "w"}},
                "spec": {"containers": [{"name": "c", "image": "other:1"}]}}},
    }))
    .unwrap();
    let created = deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // The first pod, listed; the watch starts from that list's resourceVersion.
    let list = loop {
        let list = pods
            .list(&ListParams::default().labels("app=w"))
            .await
            .unwrap();
        if !list.items.is_empty() {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(list.items.len(), 1);
    let first = list.items[0].metadata.name.clone().unwrap();
    let from = list.metadata.resource_version.unwrap();
    let mut events = pods
        .watch(&WatchParams::default().labels("app=w").timeout(30), &from)
        .await
        .unwrap()
        .boxed();

    let scaled = deployments
        .patch_scale(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(2));
    let generation = deployments
        .get("w")
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    assert_eq!(generation, 2, "a spec change bumps the generation");

    // Exactly one pod is added after the list (the first one is not replayed).
    loop {
        match events
            .try_next()
            .await
            .unwrap()
            .expect("the watch ended early")
        {
            WatchEvent::Added(p) => {
                assert_ne!(p.metadata.name.unwrap(), first, "a listed pod replayed");
                break;
            }
            WatchEvent::Error(e) => panic!("watch error: {e:?}"),
            _ => {}
        }
    }
    // The controller catches up: observedGeneration and two Ready pods.
    loop {
        let d = deployments.get("w").await.unwrap();
        let s = d.status.unwrap_or_default();
        if s.observed_generation == Some(generation) && s.ready_replicas == Some(2) {
            assert_eq!(s.updated_replicas, Some(2));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
