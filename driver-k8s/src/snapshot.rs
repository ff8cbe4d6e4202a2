//! Snapshots: the pod template and replica count, without secrets.
//!
//! Literal env values (`env[].value`) may be passwords, and snapshots go into the journal
//! and backup manifests. The snapshot keeps each such entry's name and drops its value;
//! `restore` takes the value from the live object, which cutover never changes. Only
//! `valueFrom` references (Secrets, ConfigMaps) are kept as they are.

use cutover_core::{ErrorKind, ImageRef, Result, Snapshot};
use kube::api::PostParams;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::WorkloadKind;
use crate::driver::{FIELD_MANAGER, KubernetesDriver};
use crate::error::{self, KIND};

/// What a Kubernetes snapshot's `data` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotData {
    /// The workload kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The pod template, literal env values removed.
    pub template: Value,
    /// `spec.replicas`.
    pub replicas: u32,
    /// `(container, env name)` of each removed value.
    pub redacted: Vec<(String, String)>,
    /// The Helm release managing the workload, if any.
    pub helm: Option<String>,
}

fn containers_mut(template: &mut Value) -> impl Iterator<Item = &mut Value> {
    let spec = &mut template["spec"];
    let mut all = Vec::new();
    if let Value::Object(spec) = spec {
        for (key, list) in spec.iter_mut() {
            if (key == "containers" || key == "initContainers")
                && let Value::Array(items) = list
            {
                all.extend(items.iter_mut());
            }
        }
    }
    all.into_iter()
}

pub(crate) fn take(d: &KubernetesDriver, workload: &Value, image: ImageRef) -> Snapshot {
    let mut template = workload["spec"]["template"].clone();
    let mut redacted = Vec::new();
    for container in containers_mut(&mut template) {
        let cname = container["name"].as_str().unwrap_or("").to_string();
        if let Some(env) = container["env"].as_array_mut() {
            for entry in env {
                if let Some(obj) = entry.as_object_mut()
                    && obj.remove("value").is_some()
                {
                    let ename = obj.get("name").and_then(Value::as_str).unwrap_or("");
                    redacted.push((cname.clone(), ename.to_string()));
                }
            }
        }
    }
    let replicas = crate::workload::replicas(workload);
    let data = SnapshotData {
        kind: d.kind,
        namespace: d.namespace.clone(),
        name: d.name.clone(),
        template,
        replicas,
        redacted,
        helm: d.helm.clone(),
    };
    Snapshot {
        driver: KIND.to_string(),
        image,
        replicas,
        data: serde_json::to_value(data).unwrap_or_default(),
    }
}

/// The snapshot's template with the redacted values taken from `live`.
fn refill(d: &KubernetesDriver, data: &SnapshotData, live: &Value) -> Result<Value> {
    let mut template = data.template.clone();
    let mut live_template = live["spec"]["template"].clone();
    let live_containers: Vec<Value> = containers_mut(&mut live_template)
        .map(|c| c.clone())
        .collect();
    for container in containers_mut(&mut template) {
        let cname = container["name"].as_str().unwrap_or("").to_string();
        let Some(env) = container["env"].as_array_mut() else {
            continue;
        };
        for entry in env {
            let ename = entry["name"].as_str().unwrap_or("").to_string();
            if !data.redacted.contains(&(cname.clone(), ename.clone())) {
                continue;
            }
            let value = live_containers
                .iter()
                .find(|c| c["name"] == cname.as_str())
                .and_then(|c| c["env"].as_array())
                .and_then(|env| env.iter().find(|e| e["name"] == ename.as_str()))
                .and_then(|e| e["value"].as_str())
                .ok_or_else(|| {
                    error::driver(
                        ErrorKind::Conflict,
                        "restore",
                        &d.subject(),
                        format!(
                            "env {ename} of container {cname} has no literal value in the live {} any more, and snapshots \
                             never hold env values (they may be secrets); the workload is unchanged by this restore. \
                             Put the value back (`kubectl set env {}/{} -c {cname} {ename}=…`), then run `cutover resume`",
                            d.kind.as_str(),
                            d.kind.as_str(),
                            d.name
                        ),
                    )
                })?;
            entry["value"] = value.into();
        }
    }
    Ok(template)
}

pub(crate) async fn restore(d: &KubernetesDriver, snap: &Snapshot) -> Result<()> {
    let invalid = |m: String| error::driver(ErrorKind::InvalidInput, "restore", &d.subject(), m);
    let data: SnapshotData = snap.data_of(KIND)?;
    if data.kind != d.kind || data.name != d.name || data.namespace != d.namespace {
        return Err(invalid(format!(
            "the snapshot is of {} {}/{}, not of {}",
            data.kind.as_str(),
            data.namespace,
            data.name,
            d.subject()
        )));
    }
    // Pods of another template go first: a rolling update back would wait for old pods to
    // become ready next to new ones, and the old release may not start on a schema the new
    // one migrated (the core restores the database while nothing runs).
    let (_, live) = d.get("restore").await?;
    if refill(d, &data, &live)? != live["spec"]["template"] {
        cutover_core::Driver::scale(d, 0).await?;
    }
    // Replace the template as a whole (a patch could not remove fields added since), with
    // optimistic concurrency: a 409 means the controller wrote in between; read again.
    let mut attempts = 0;
    loop {
        let (mut object, live) = d.get("restore").await?;
        let template = refill(d, &data, &live)?;
        if live["spec"]["template"] == template && live["spec"]["paused"] != true {
            break;
        }
        object.data["spec"]["template"] = template;
        match d.kind {
            WorkloadKind::Deployment => {
                if let Some(spec) = object.data["spec"].as_object_mut() {
                    spec.remove("paused");
                }
            }
            WorkloadKind::StatefulSet => {
                object.data["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 0.into();
            }
        }
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match d.workloads().replace(&d.name, &params, &object).await {
            Ok(_) => break,
            Err(e) if error::is_conflict(&e) && attempts < 10 => attempts += 1,
            Err(e) => return Err(error::kube("restore", &d.subject(), e)),
        }
    }
    cutover_core::Driver::scale(d, data.replicas).await
}
