//! The StatefulSet controller: pods `<name>-<ordinal>` labelled
//! `controller-revision-hash`, `OrderedReady` (one pod at a time, each after the lower
//! ones are Ready; scale-down from the highest ordinal) or `Parallel` pod management, and
//! the `RollingUpdate` strategy with `partition` (pods at or above it move to the update
//! revision, highest first, one at a time once all pods are Ready). Revisions are kept in
//! the controller's memory, not as ControllerRevision objects; `OnDelete`, PVC templates
//! and `minReadySeconds` are not emulated.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::Shared;
use crate::api;
use crate::controller::{is_ready, name, owned_by, template_hash, terminating};
use crate::store::replicas_of;

const REVISION: &str = "controller-revision-hash";

/// Pod templates by revision name, so pods below the partition are recreated as they were.
pub(crate) type Revisions = HashMap<String, Value>;

pub(crate) fn reconcile(shared: &Arc<Shared>, ns: &str, set: &Value, revisions: &mut Revisions) {
    let set_name = name(set);
    let uid = set["metadata"]["uid"].clone();
    let replicas = replicas_of(set);
    let template = &set["spec"]["template"];
    let update_revision = format!("{set_name}-{}", template_hash(template));
    revisions
        .entry(update_revision.clone())
        .or_insert_with(|| template.clone());
    let partition = set["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
        .as_u64()
        .unwrap_or(0) as u32;
    let parallel = set["spec"]["podManagementPolicy"] == "Parallel";
    let current_revision = set["status"]["currentRevision"]
        .as_str()
        .unwrap_or(&update_revision)
        .to_string();

    let pods: Vec<Value> = shared
        .read()
        .list("pods", ns)
        .into_iter()
        .filter(|p| owned_by(p, &uid))
        .collect();
    let ordinal = |p: &Value| -> Option<u32> {
        name(p)
            .strip_prefix(&format!("{set_name}-"))
            .and_then(|o| o.parse().ok())
    };
    let revision_of = |p: &Value| {
        p["metadata"]["labels"][REVISION]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let by_ordinal: HashMap<u32, &Value> =
        pods.iter().filter_map(|p| Some((ordinal(p)?, p))).collect();
    let any_terminating = pods.iter().any(terminating);

    // Create missing pods (below `replicas`), in order unless Parallel.
    if parallel || !any_terminating {
        for i in 0..replicas {
            match by_ordinal.get(&i) {
                Some(p) if !parallel && (!is_ready(p) || terminating(p)) => break,
                Some(_) => continue,
                None => {
                    let revision = if i >= partition {
                        update_revision.clone()
                    } else {
                        current_revision.clone()
                    };
                    let t = revisions.get(&revision).unwrap_or(template).clone();
                    let mut labels = t["metadata"]["labels"].clone();
                    labels[REVISION] = revision.into();
                    labels["statefulset.kubernetes.io/pod-name"] = format!("{set_name}-{i}").into();
                    let pod = json!({
                        "metadata": {
                            "name": format!("{set_name}-{i}"),
                            "labels": labels,
                            "annotations": t["metadata"]["annotations"],
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                "name": set_name, "uid": uid, "controller": true}],
                        },
                        "spec": t["spec"],
                        "status": {"phase": "Pending"},
                    });
                    let _ = api::create(shared, "pods", ns, pod);
                    if !parallel {
                        break;
                    }
                }
            }
        }
    }
    // Scale down: the highest ordinals first (all at once when Parallel).
    let mut surplus: Vec<(u32, &Value)> = by_ordinal
        .iter()
        .filter(|(i, p)| **i >= replicas && !terminating(p))
        .map(|(i, p)| (*i, *p))
        .collect();
    surplus.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    let take = if parallel {
        surplus.len()
    } else {
        surplus.len().min(1)
    };
    if !any_terminating || parallel {
        for (_, p) in surplus.iter().take(take) {
            let _ = api::delete_pod(shared, ns, &name(p));
        }
    }
    // Rolling update: the highest outdated ordinal at or above the partition, once every
    // pod is Ready and none is terminating.
    let all_ready = pods.iter().all(|p| is_ready(p) && !terminating(p));
    if all_ready {
        let outdated = (partition..replicas)
            .rev()
            .filter_map(|i| by_ordinal.get(&i))
            .find(|p| revision_of(p) != update_revision);
        if let Some(p) = outdated {
            let _ = api::delete_pod(shared, ns, &name(p));
        }
    }

    // Status.
    let pods: Vec<Value> = shared
        .read()
        .list("pods", ns)
        .into_iter()
        .filter(|p| owned_by(p, &uid) && !terminating(p))
        .collect();
    let updated = pods
        .iter()
        .filter(|p| revision_of(p) == update_revision)
        .count() as u32;
    let ready = pods.iter().filter(|p| is_ready(p)).count() as u32;
    let current = if updated == replicas && pods.len() as u32 == replicas {
        update_revision.clone()
    } else {
        current_revision
    };
    let status = json!({
        "observedGeneration": set["metadata"]["generation"],
        "replicas": pods.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "updatedReplicas": updated,
        "currentReplicas": pods.iter().filter(|p| revision_of(p) == current).count(),
        "currentRevision": current,
        "updateRevision": update_revision,
    });
    shared.write(|s| s.set_status("statefulsets", ns, &set_name, status));
}
