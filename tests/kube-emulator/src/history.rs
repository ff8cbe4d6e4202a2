//! What happened in the emulated cluster, in order, for tests to prove claims about a
//! rollout ("exactly one new pod was Ready before a second one existed").

use serde::Serialize;

/// One thing that happened, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum HistoryEvent {
    /// A Deployment's or StatefulSet's `spec.replicas` was written with a new value (through any endpoint).
    Scaled {
        /// `namespace/name` of the workload.
        workload: String,
        /// The new desired count.
        replicas: u32,
    },
    /// A workload's pod template changed (any field); `image` is its first container's.
    TemplateChanged {
        /// `namespace/name` of the workload.
        workload: String,
        /// The first container's image after the change.
        image: String,
    },
    /// A pod object was created.
    PodCreated {
        /// The pod's name.
        pod: String,
        /// Its first container's image.
        image: String,
    },
    /// A pod's Ready condition became True.
    PodReady {
        /// The pod's name.
        pod: String,
        /// Its first container's image.
        image: String,
    },
    /// A pod's process exited (it is restarted, as by a kubelet).
    PodExited {
        /// The pod's name.
        pod: String,
        /// The exit code; `None` for a signal.
        code: Option<i32>,
    },
    /// A command was run in a pod through `pods/exec`.
    Exec {
        /// The pod's name.
        pod: String,
        /// The command as the API request carried it.
        command: Vec<String>,
    },
    /// A pod object was removed after its process stopped.
    PodDeleted {
        /// The pod's name.
        pod: String,
        /// Its first container's image.
        image: String,
    },
}

/// Pods that exist after each event: `(index into history, pods as (name, image))`.
///
/// A convenience for tests that replay the history to check what existed when.
pub fn existing_pods(history: &[HistoryEvent]) -> Vec<Vec<(String, String)>> {
    let mut now: Vec<(String, String)> = Vec::new();
    let mut out = Vec::with_capacity(history.len());
    for event in history {
        match event {
            HistoryEvent::PodCreated { pod, image } => now.push((pod.clone(), image.clone())),
            HistoryEvent::PodDeleted { pod, .. } => now.retain(|(p, _)| p != pod),
            _ => {}
        }
        out.push(now.clone());
    }
    out
}
