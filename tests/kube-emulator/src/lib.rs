//! A small Kubernetes API emulator for cutover's Kubernetes driver tests.
//!
//! [`Emulator::start`] serves plain HTTP on `127.0.0.1:<free port>`; a kubeconfig from
//! [`Emulator::kubeconfig`] points kube's client at it. It implements the subset of the API
//! the driver uses, with the API server's semantics:
//!
//! - every write bumps a cluster-wide `resourceVersion`; a PUT (or a patch carrying
//!   `metadata.resourceVersion`) with a stale one is a 409 Conflict; a second POST of a
//!   name is a 409 AlreadyExists;
//! - `metadata.generation` counts spec changes of Deployments and ReplicaSets, and the
//!   controller reports `status.observedGeneration`;
//! - list (with `labelSelector`) and watch (`watch=true`: newline-delimited `ADDED` /
//!   `MODIFIED` / `DELETED` events after the given `resourceVersion`, 410 Gone when it is
//!   too old; `allowWatchBookmarks` is accepted and no bookmark is sent);
//! - get, create, replace, delete; patch as JSON merge patch or strategic merge patch
//!   (lists of containers, env, volumes, … merge by name);
//! - the `scale` subresource of Deployments and StatefulSets (get, replace, patch);
//! - `coordination.k8s.io/v1` Leases (optimistic concurrency as above);
//! - a Deployment controller that creates one ReplicaSet per pod template (labelled
//!   `pod-template-hash`, annotated `deployment.kubernetes.io/revision`), honours
//!   `replicas`, `paused`, `Recreate` and `RollingUpdate` (`maxSurge` / `maxUnavailable`,
//!   numbers or percentages), and reports `replicas`, `updatedReplicas`, `readyReplicas`,
//!   `availableReplicas` and the `Progressing` condition (`ProgressDeadlineExceeded` after
//!   `progressDeadlineSeconds` without progress);
//! - a StatefulSet controller (`OrderedReady` or `Parallel`; `RollingUpdate` with
//!   `partition`; pods `<name>-<ordinal>` labelled `controller-revision-hash`; status with
//!   `currentRevision` / `updateRevision`), see `statefulset.rs`;
//! - pods that really run (`kubelet`): a pod of a specimen image is the specimen binary
//!   started as a local process with the template's env, the version from the tag and its
//!   own free port, Ready when its real `/health` answers 200; a tag the registry lacks is
//!   `ErrImagePull`; other images are Ready after [`EmulatorConfig::ready_delay`];
//!   exited processes are restarted with a back-off; deleting a pod sends SIGTERM;
//! - `pods/exec` over WebSocket (`v5.channel.k8s.io`, else `v4.channel.k8s.io`): the
//!   command runs as a local process with the pod's env; in a specimen pod only
//!   `/specimen` exists (the image is `FROM scratch`), like a real runtime.
//! - `pods/log` (`GET`, `tailLines`): what the pod's process printed on stdout and stderr,
//!   every run of it (restarts append to one file per pod), as `text/plain`; empty for
//!   pods without a process; `previous`, `container`, `timestamps`, `follow` are ignored.
//!
//! It does **not** do: authentication, authorization, admission or defaulting (objects are
//! stored as sent, so `spec.replicas` defaults to 1 only where read); server-side apply;
//! JSON patch; `$patch` directives; field selectors; Services, Secrets,
//! ConfigMaps or any other resource; `valueFrom` in env (only literal `value`s reach a
//! process); `minReadySeconds`; pod deletion grace periods beyond a 10 s SIGTERM wait;
//! ReplicaSet status; ControllerRevision objects, `OnDelete` and volume claim templates of
//! StatefulSets; garbage collection of old ReplicaSets (`revisionHistoryLimit`);
//! namespaces as objects (any name is accepted); bookmarks; TLS.

mod api;
mod controller;
mod exec;
pub mod history;
mod kubelet;
mod patch;
mod statefulset;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, watch};

pub use history::{HistoryEvent, existing_pods};

/// What the emulated cluster runs.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The specimen's image repository (e.g. `127.0.0.1:5000/specimen`): pods of its tags
    /// run [`EmulatorConfig::specimen_bin`].
    pub specimen_repository: Option<String>,
    /// The static specimen binary.
    pub specimen_bin: Option<PathBuf>,
    /// The specimen tags that exist; any other tag of the repository fails to pull.
    pub specimen_tags: Vec<String>,
    /// How long a pod of any other image takes to become Ready.
    pub ready_delay: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            specimen_repository: None,
            specimen_bin: None,
            specimen_tags: Vec::new(),
            ready_delay: Duration::from_millis(300),
        }
    }
}

/// A running pod's process handle, kept so a deletion can stop it.
#[derive(Debug)]
pub(crate) struct PodHandle {
    /// Set to `true` to stop the pod.
    pub stop: watch::Sender<bool>,
    /// The environment its process has (and exec gets).
    pub env: Vec<(String, String)>,
    /// Whether its image is the specimen's (exec finds only `/specimen` there).
    pub specimen: bool,
}

/// State shared by the HTTP handlers, the controller and the pods.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<store::Store>,
    /// The store's resourceVersion after each write, for watches.
    pub changed: watch::Sender<u64>,
    /// Wakes the controller after a write.
    pub wake: Notify,
    pub config: EmulatorConfig,
    pub pods: Mutex<HashMap<(String, String), PodHandle>>,
    pub dir: tempfile::TempDir,
}

impl Shared {
    /// Reads the store.
    pub fn read(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the store and tells watchers and the controller.
    pub fn write<R>(&self, f: impl FnOnce(&mut store::Store) -> R) -> R {
        let mut store = self.read();
        let before = store.rv();
        let out = f(&mut store);
        let after = store.rv();
        drop(store);
        if after != before {
            self.changed.send_replace(after);
            self.wake.notify_one();
        }
        out
    }

    pub fn pods(&self) -> MutexGuard<'_, HashMap<(String, String), PodHandle>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running emulator; stops its server and kills every pod process on drop.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Starts the API server and the controller on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::default(),
            changed: watch::channel(0).0,
            wake: Notify::new(),
            config,
            pods: Mutex::default(),
            dir: tempfile::tempdir()?,
        });
        let app = api::router(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let controller = tokio::spawn(controller::run(shared.clone()));
        Ok(Self {
            addr,
            shared,
            tasks: vec![server, controller],
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig (YAML) whose current context points at this emulator with `namespace`.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {}\n\
             users:\n- name: emulator\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    \
             cluster: emulator\n    user: emulator\n    namespace: {namespace}\n\
             current-context: emulator\n",
            self.url()
        )
    }

    /// Creates an object as a POST would (pods start running), for tests without a client.
    pub fn create(
        &self,
        resource: &str,
        namespace: &str,
        object: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        api::create(&self.shared, resource, namespace, object).map_err(|e| e.message)
    }

    /// Everything that happened so far, in order.
    pub fn history(&self) -> Vec<HistoryEvent> {
        self.shared.read().history.clone()
    }

    /// The stored object, e.g. `("deployments", "default", "web")`.
    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<serde_json::Value> {
        self.shared.read().get(resource, namespace, name).cloned()
    }

    /// The stored objects of `resource` in `namespace`.
    pub fn objects(&self, resource: &str, namespace: &str) -> Vec<serde_json::Value> {
        self.shared.read().list(resource, namespace)
    }

    /// The log (stdout and stderr) of a specimen pod's process, for failure messages.
    pub fn pod_log(&self, pod: &str) -> String {
        std::fs::read_to_string(self.shared.dir.path().join(pod).join("log")).unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Each pod task kills its process when told to stop; the processes are also
        // `kill_on_drop`, for a runtime that shuts down first.
        for handle in self.shared.pods().values() {
            handle.stop.send_replace(true);
        }
    }
}
