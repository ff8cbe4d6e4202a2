//! Reading a Deployment or StatefulSet (as JSON) and its pods: the container, the current
//! revision, kubectl's rollout rule.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::config::WorkloadKind;

/// `spec.replicas` (the API server defaults it to 1).
pub(crate) fn replicas(workload: &Value) -> u32 {
    workload["spec"]["replicas"].as_u64().unwrap_or(1) as u32
}

/// The label selector of `spec.selector.matchLabels`, as `a=b,c=d`.
pub(crate) fn selector(workload: &Value) -> String {
    workload["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The named container of the pod template.
pub(crate) fn container<'a>(workload: &'a Value, name: &str) -> Option<&'a Value> {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

/// The template without the label the controller adds to its ReplicaSets.
pub(crate) fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    t
}

/// How far a rollout is, by kubectl's rule (`kubectl rollout status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rollout {
    /// Converged: the controller saw the last change, every pod is of the current
    /// revision, no old pod is left, and (when asked) all are available.
    Done,
    /// Still moving; the reason says what is awaited.
    Waiting(String),
    /// `ProgressDeadlineExceeded`.
    Failed(String),
}

/// kubectl's rule: `observedGeneration ≥ generation` (the one our write returned),
/// `updatedReplicas = replicas`, `status.replicas = updatedReplicas` (no surplus old
/// pods) and, if `available`, `availableReplicas = updatedReplicas`; a Progressing
/// condition with reason `ProgressDeadlineExceeded` is a failure.
pub(crate) fn rollout(
    kind: WorkloadKind,
    workload: &Value,
    generation: i64,
    available: bool,
) -> Rollout {
    let status = &workload["status"];
    let n = |k: &str| status[k].as_u64().unwrap_or(0);
    let want = u64::from(replicas(workload));
    if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Rollout::Waiting("the controller has not yet observed the change".into());
    }
    if let Some(c) = status["conditions"].as_array().and_then(|c| {
        c.iter()
            .find(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    }) {
        return Rollout::Failed(format!(
            "the rollout exceeded its progress deadline: {}",
            c["message"].as_str().unwrap_or("ProgressDeadlineExceeded")
        ));
    }
    if kind == WorkloadKind::StatefulSet
        && want > 0
        && status["updateRevision"] != status["currentRevision"]
        && n("updatedReplicas") < want
    {
        return Rollout::Waiting(format!("{} of {want} pods updated", n("updatedReplicas")));
    }
    if n("updatedReplicas") < want {
        return Rollout::Waiting(format!("{} of {want} pods updated", n("updatedReplicas")));
    }
    if n("replicas") > n("updatedReplicas") {
        return Rollout::Waiting(format!(
            "{} old pods are still terminating",
            n("replicas") - n("updatedReplicas")
        ));
    }
    let avail = if kind == WorkloadKind::StatefulSet {
        n("availableReplicas").max(n("readyReplicas"))
    } else {
        n("availableReplicas")
    };
    if available && avail < n("updatedReplicas") {
        return Rollout::Waiting(format!(
            "{avail} of {} updated pods available",
            n("updatedReplicas")
        ));
    }
    Rollout::Done
}

/// Whether the pod is terminating.
pub(crate) fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's Ready condition.
pub(crate) fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's phase (`Pending`, `Running`, …).
pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// A waiting reason that means the pod will not start without a change (a missing image,
/// a bad config), with its message.
pub(crate) fn stuck(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|s| {
        let waiting = s.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        matches!(
            reason,
            "ErrImagePull"
                | "ImagePullBackOff"
                | "InvalidImageName"
                | "CreateContainerConfigError"
                | "CreateContainerError"
        )
        .then(|| format!("{reason}: {}", waiting.message.as_deref().unwrap_or("")))
    })
}
