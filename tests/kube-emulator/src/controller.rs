//! The Deployment and ReplicaSet controllers, one reconcile pass after every write and
//! every 100 ms.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Shared;
use crate::api;
use crate::store::{now_rfc3339, replicas_of};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "pod-template-hash";

/// When each Deployment last made progress, and what it looked like then.
type Progress = HashMap<String, (Instant, String, Value)>;

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut progress = Progress::new();
    let mut revisions = crate::statefulset::Revisions::new();
    loop {
        reconcile(&shared, &mut progress);
        for (ns, set) in all(&shared, "statefulsets") {
            crate::statefulset::reconcile(&shared, &ns, &set, &mut revisions);
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

fn all(shared: &Shared, resource: &str) -> Vec<(String, Value)> {
    shared
        .read()
        .objects
        .iter()
        .filter(|((r, _, _), _)| r == resource)
        .map(|((_, ns, _), v)| (ns.clone(), v.clone()))
        .collect()
}

pub(crate) fn name(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or("").to_string()
}

pub(crate) fn owned_by(o: &Value, uid: &Value) -> bool {
    o["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| &r["uid"] == uid))
}

pub(crate) fn terminating(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

pub(crate) fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// A stable hash of a pod template: FNV-1a over its JSON with keys sorted.
pub(crate) fn template_hash(template: &Value) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&m[k], out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for x in a {
                    canonical(x, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(template, &mut text);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

/// A number or percentage of `total`, rounded up or down as Kubernetes does.
fn int_or_percent(v: &Value, default: &str, total: u32, round_up: bool) -> u32 {
    let text = match v {
        Value::Number(n) => return n.as_u64().unwrap_or(0) as u32,
        Value::String(s) => s.clone(),
        _ => default.to_string(),
    };
    match text.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) {
        Some(p) => {
            let x = p * f64::from(total) / 100.0;
            (if round_up { x.ceil() } else { x.floor() }) as u32
        }
        None => text.parse().unwrap_or(0),
    }
}

fn reconcile(shared: &Arc<Shared>, progress: &mut Progress) {
    for (ns, d) in all(shared, "deployments") {
        reconcile_deployment(shared, &ns, &d, progress);
    }
    for (ns, rs) in all(shared, "replicasets") {
        reconcile_replicaset(shared, &ns, &rs);
    }
}

fn set_replicas(shared: &Shared, ns: &str, rs: &Value, replicas: u32) {
    if replicas_of(rs) == replicas {
        return;
    }
    let mut updated = rs.clone();
    updated["spec"]["replicas"] = replicas.into();
    let _ = shared.write(|s| s.replace("replicasets", ns, &name(rs), updated, false));
}

fn reconcile_deployment(shared: &Arc<Shared>, ns: &str, d: &Value, progress: &mut Progress) {
    let d_name = name(d);
    let uid = d["metadata"]["uid"].clone();
    let replicas = replicas_of(d);
    let template = &d["spec"]["template"];
    let paused = d["spec"]["paused"].as_bool().unwrap_or(false);
    let pods = shared.read().list("pods", ns);
    let mut sets: Vec<Value> = shared
        .read()
        .list("replicasets", ns)
        .into_iter()
        .filter(|rs| owned_by(rs, &uid))
        .collect();
    let revision_of = |rs: &Value| -> u64 {
        rs["metadata"]["annotations"][REVISION]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    };
    let max_revision = sets.iter().map(revision_of).max().unwrap_or(0);
    let hash = template_hash(template);
    let mut new_rs = sets
        .iter()
        .find(|rs| rs["metadata"]["labels"][HASH].as_str() == Some(&hash))
        .cloned();

    if !paused {
        match &new_rs {
            None => {
                let mut labels = template["metadata"]["labels"].clone();
                labels[HASH] = hash.clone().into();
                let mut selector = d["spec"]["selector"]["matchLabels"].clone();
                selector[HASH] = hash.clone().into();
                let mut rs_template = template.clone();
                rs_template["metadata"]["labels"] = labels.clone();
                let rs = json!({
                    "metadata": {
                        "name": format!("{d_name}-{hash}"),
                        "labels": labels,
                        "annotations": {REVISION: (max_revision + 1).to_string()},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                            "name": d_name, "uid": uid, "controller": true}],
                    },
                    "spec": {"replicas": 0, "selector": {"matchLabels": selector}, "template": rs_template},
                });
                match shared.write(|s| s.create("replicasets", ns, rs)) {
                    Ok(created) => {
                        sets.push(created.clone());
                        new_rs = Some(created);
                    }
                    Err(_) => return,
                }
            }
            Some(rs) if revision_of(rs) < max_revision => {
                let mut updated = rs.clone();
                updated["metadata"]["annotations"][REVISION] =
                    (max_revision + 1).to_string().into();
                if let Ok(u) =
                    shared.write(|s| s.replace("replicasets", ns, &name(rs), updated, false))
                {
                    new_rs = Some(u);
                }
            }
            Some(_) => {}
        }
        if let Some(rs) = &new_rs {
            let revision = rs["metadata"]["annotations"][REVISION].clone();
            if d["metadata"]["annotations"][REVISION] != revision {
                let mut updated = d.clone();
                updated["metadata"]["annotations"][REVISION] = revision;
                let _ = shared.write(|s| s.replace("deployments", ns, &d_name, updated, false));
            }
        }
        if let Some(new) = &new_rs {
            roll(shared, ns, d, new, &sets, &pods);
        }
    }

    // Status, from the pods as they are now.
    let pods = shared.read().list("pods", ns);
    let sets: Vec<Value> = shared
        .read()
        .list("replicasets", ns)
        .into_iter()
        .filter(|rs| owned_by(rs, &uid))
        .collect();
    let live = |rs: &Value| -> Vec<Value> {
        pods.iter()
            .filter(|p| owned_by(p, &rs["metadata"]["uid"]) && !terminating(p))
            .cloned()
            .collect()
    };
    let all_live: Vec<Value> = sets.iter().flat_map(live).collect();
    let updated = new_rs
        .as_ref()
        .and_then(|n| sets.iter().find(|s| name(s) == name(n)))
        .map(|rs| live(rs).len())
        .unwrap_or(0) as u32;
    let ready = all_live.iter().filter(|p| is_ready(p)).count() as u32;
    let current = all_live.len() as u32;
    let counts = json!([d["metadata"]["generation"], current, updated, ready]);
    let key = format!("{ns}/{d_name}");
    let entry = progress
        .entry(key)
        .or_insert_with(|| (Instant::now(), now_rfc3339(), counts.clone()));
    if entry.2 != counts {
        *entry = (Instant::now(), now_rfc3339(), counts);
    }
    let deadline = d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600);
    let complete = updated == replicas && current == replicas && ready == replicas;
    let (status, reason) = if paused {
        ("Unknown", "DeploymentPaused")
    } else if complete {
        ("True", "NewReplicaSetAvailable")
    } else if entry.0.elapsed() > Duration::from_secs(deadline) {
        ("False", "ProgressDeadlineExceeded")
    } else {
        ("True", "ReplicaSetUpdated")
    };
    let max_unavailable = max_unavailable(d, replicas);
    let available = ready + max_unavailable >= replicas;
    let status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": current,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": replicas.saturating_sub(ready),
        "conditions": [
            {"type": "Available", "status": if available { "True" } else { "False" },
             "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
             "lastUpdateTime": entry.1, "lastTransitionTime": entry.1},
            {"type": "Progressing", "status": status, "reason": reason,
             "lastUpdateTime": entry.1, "lastTransitionTime": entry.1},
        ],
    });
    shared.write(|s| s.set_status("deployments", ns, &d_name, status));
}

fn max_unavailable(d: &Value, replicas: u32) -> u32 {
    let rolling = &d["spec"]["strategy"]["rollingUpdate"];
    let surge = int_or_percent(&rolling["maxSurge"], "25%", replicas, true);
    let unavailable = int_or_percent(&rolling["maxUnavailable"], "25%", replicas, false);
    if surge == 0 && unavailable == 0 {
        1
    } else {
        unavailable
    }
}

/// Moves replicas from the old ReplicaSets to the new one by the Deployment's strategy.
fn roll(shared: &Shared, ns: &str, d: &Value, new: &Value, sets: &[Value], pods: &[Value]) {
    let replicas = replicas_of(d);
    let ready_of = |rs: &Value| {
        pods.iter()
            .filter(|p| owned_by(p, &rs["metadata"]["uid"]) && !terminating(p) && is_ready(p))
            .count() as u32
    };
    let any_pod_of = |rs: &Value| pods.iter().any(|p| owned_by(p, &rs["metadata"]["uid"]));
    let olds: Vec<&Value> = sets.iter().filter(|rs| name(rs) != name(new)).collect();

    if d["spec"]["strategy"]["type"] == "Recreate" {
        for old in &olds {
            set_replicas(shared, ns, old, 0);
        }
        if olds.iter().all(|o| !any_pod_of(o)) {
            set_replicas(shared, ns, new, replicas);
        }
        return;
    }

    let rolling = &d["spec"]["strategy"]["rollingUpdate"];
    let surge = int_or_percent(&rolling["maxSurge"], "25%", replicas, true);
    let max_unavailable = max_unavailable(d, replicas);
    let total: u32 = sets.iter().map(replicas_of).sum();
    let mut new_count = replicas_of(new);
    if new_count < replicas {
        let allowed = (replicas + surge).saturating_sub(total);
        new_count += allowed.min(replicas - new_count);
    } else {
        new_count = replicas;
    }
    set_replicas(shared, ns, new, new_count);

    // Scale old ReplicaSets down as far as availability allows: unready pods first.
    let min_available = replicas.saturating_sub(max_unavailable);
    let total_now: u32 = olds.iter().map(|o| replicas_of(o)).sum::<u32>() + new_count;
    let new_unavailable = new_count.saturating_sub(ready_of(new));
    let mut budget = total_now
        .saturating_sub(min_available)
        .saturating_sub(new_unavailable);
    let mut ready_total: u32 = sets.iter().map(ready_of).sum();
    for old in &olds {
        let count = replicas_of(old);
        let unhealthy = count.saturating_sub(ready_of(old)).min(budget);
        budget -= unhealthy;
        let mut target = count - unhealthy;
        let removable = ready_total.saturating_sub(min_available).min(target);
        target -= removable;
        ready_total -= removable;
        set_replicas(shared, ns, old, target);
    }
}

static POD_COUNTER: AtomicU64 = AtomicU64::new(0);

fn reconcile_replicaset(shared: &Arc<Shared>, ns: &str, rs: &Value) {
    let want = replicas_of(rs) as usize;
    let uid = &rs["metadata"]["uid"];
    let mut live: Vec<Value> = shared
        .read()
        .list("pods", ns)
        .into_iter()
        .filter(|p| owned_by(p, uid) && !terminating(p))
        .collect();
    for _ in live.len()..want {
        let n = POD_COUNTER.fetch_add(1, Ordering::Relaxed);
        let template = &rs["spec"]["template"];
        let pod = json!({
            "metadata": {
                "name": format!("{}-{:05x}", name(rs), (n * 7919 + 4099) & 0xfffff),
                "labels": template["metadata"]["labels"],
                "annotations": template["metadata"]["annotations"],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": name(rs), "uid": uid, "controller": true}],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        });
        let _ = api::create(shared, "pods", ns, pod);
    }
    if live.len() > want {
        // Unready pods go first, then the newest.
        live.sort_by_key(|p| {
            (
                is_ready(p),
                std::cmp::Reverse(
                    p["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                ),
                std::cmp::Reverse(name(p)),
            )
        });
        for pod in live.iter().take(live.len() - want) {
            let _ = api::delete_pod(shared, ns, &name(pod));
        }
    }
}
