//! [`KubernetesDriver`]: the Driver contract on a Deployment or StatefulSet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cutover_core::{
    ByteStream, Capabilities, Driver, DriverInfo, Error, ErrorKind, EventSink, ExecIo, ExecTarget,
    ExitStatus, Holder, ImageRef, Instance, Observed, Pulled, Result, Snapshot,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::config::{KubernetesConfig, WorkloadKind};
use crate::error::{self, KIND};
use crate::workload::{self, Rollout};
use crate::{exec, lock, pull, snapshot};

/// How often waits re-read the API.
const POLL: Duration = Duration::from_millis(300);

/// The field manager of every write.
pub(crate) const FIELD_MANAGER: &str = "cutover";

/// Upgrades one container of a Deployment or StatefulSet through the API server.
///
/// - `set_image` patches only that container's image (strategic merge, field manager
///   `cutover`) and pauses the rollout (a Deployment's `spec.paused`, a StatefulSet's
///   `partition`), so that no pod restarts until `scale`.
/// - `scale` resumes the rollout, sets the count through the `scale` subresource and waits
///   until kubectl's rollout rule holds, except availability (readiness is the core's to
///   wait for): the controller observed the change, every pod is of the current revision
///   and has started, no other pod is left.
/// - `snapshot` is the pod template (literal env values left out: secrets) and replicas;
///   `restore` replaces the template (re-filling those values from the live object) and
///   scales back. `release` has nothing to drop: old ReplicaSets are the cluster's.
/// - `lock` is a `coordination.k8s.io/v1` Lease `cutover-<kind>-<name>`, renewed in the
///   background until `unlock`.
/// - `exec` runs in a named pod or a pod of the workload; `archive` only where the image
///   has `tar` (probed at connect).
#[derive(Clone)]
pub struct KubernetesDriver {
    pub(crate) client: kube::Client,
    pub(crate) namespace: String,
    pub(crate) kind: WorkloadKind,
    pub(crate) name: String,
    pub(crate) container: String,
    pub(crate) config: KubernetesConfig,
    /// The Helm release managing the workload, if any.
    pub(crate) helm: Option<String>,
    pub(crate) archive: Arc<AtomicBool>,
    pub(crate) renewal: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

impl std::fmt::Debug for KubernetesDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesDriver")
            .field("target", &self.describe())
            .finish()
    }
}

impl KubernetesDriver {
    /// `deployment default/web container app`.
    pub fn describe(&self) -> String {
        format!(
            "{} {}/{} container {}",
            self.kind.as_str(),
            self.namespace,
            self.name,
            self.container
        )
    }

    /// The workload's subject in errors.
    pub(crate) fn subject(&self) -> String {
        format!("{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }

    /// The workload's API.
    pub(crate) fn workloads(&self) -> Api<DynamicObject> {
        let resource = match self.kind {
            WorkloadKind::Deployment => {
                kube::api::ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&())
            }
            WorkloadKind::StatefulSet => {
                kube::api::ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&())
            }
        };
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
    }

    pub(crate) fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The workload as JSON (`metadata`, `spec`, `status`).
    pub(crate) async fn get(&self, op: &str) -> Result<(DynamicObject, Value)> {
        let object = self.workloads().get(&self.name).await.map_err(|e| {
            if error::is_not_found(&e) {
                error::driver(
                    ErrorKind::NotFound,
                    op,
                    &self.subject(),
                    format!(
                        "{} does not exist; check driver.kubernetes (namespace, context)",
                        self.subject()
                    ),
                )
            } else {
                error::kube(op, &self.subject(), e)
            }
        })?;
        let value = json!({
            "metadata": serde_json::to_value(&object.metadata).unwrap_or_default(),
            "spec": object.data["spec"].clone(),
            "status": object.data["status"].clone(),
        });
        Ok((object, value))
    }

    /// The image of our container in `workload`'s template.
    pub(crate) fn image_of(&self, workload: &Value, op: &str) -> Result<ImageRef> {
        let image = workload::container(workload, &self.container)
            .and_then(|c| c["image"].as_str())
            .ok_or_else(|| {
                error::driver(
                    ErrorKind::NotFound,
                    op,
                    &self.subject(),
                    format!("the pod template has no container {:?}", self.container),
                )
            })?;
        ImageRef::parse(image)
    }

    /// The pods the workload's selector matches.
    pub(crate) async fn list_pods(&self, workload: &Value, op: &str) -> Result<Vec<Pod>> {
        let params = ListParams::default().labels(&workload::selector(workload));
        let list = self
            .pods()
            .list(&params)
            .await
            .map_err(|e| error::kube(op, &self.subject(), e))?;
        Ok(list.items)
    }

    /// A predicate for pods of the current revision: the ReplicaSet whose template is the
    /// Deployment's (its `pod-template-hash`), or a StatefulSet's `updateRevision`.
    pub(crate) async fn current_revision(
        &self,
        workload: &Value,
        op: &str,
    ) -> Result<Option<(&'static str, String)>> {
        match self.kind {
            WorkloadKind::StatefulSet => Ok(workload["status"]["updateRevision"]
                .as_str()
                .map(|r| ("controller-revision-hash", r.to_string()))),
            WorkloadKind::Deployment => {
                let resource =
                    kube::api::ApiResource::erase::<k8s_openapi::api::apps::v1::ReplicaSet>(&());
                let sets: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
                let params = ListParams::default().labels(&workload::selector(workload));
                let list = sets
                    .list(&params)
                    .await
                    .map_err(|e| error::kube(op, &self.subject(), e))?;
                let uid = workload["metadata"]["uid"].as_str().unwrap_or("");
                let template = workload::without_hash(&workload["spec"]["template"]);
                Ok(list.items.iter().find_map(|rs| {
                    let owned = rs
                        .metadata
                        .owner_references
                        .as_ref()
                        .is_some_and(|o| o.iter().any(|o| o.uid == uid));
                    let same = workload::without_hash(&rs.data["spec"]["template"]) == template;
                    let hash = rs
                        .metadata
                        .labels
                        .as_ref()?
                        .get("pod-template-hash")?
                        .clone();
                    (owned && same).then_some(("pod-template-hash", hash))
                }))
            }
        }
    }

    /// Waits until the rollout converged (see [`workload::rollout`], without availability)
    /// and exactly the pods of the current revision exist, all started.
    pub(crate) async fn wait_converged(&self, generation: i64, op: &str) -> Result<()> {
        let deadline = Instant::now() + self.config.rollout_timeout();
        loop {
            let (_, workload) = self.get(op).await?;
            let waiting = match workload::rollout(self.kind, &workload, generation, false) {
                Rollout::Failed(m) => {
                    return Err(error::driver(ErrorKind::Other, op, &self.subject(), m));
                }
                Rollout::Waiting(m) => m,
                Rollout::Done => {
                    let want = workload::replicas(&workload) as usize;
                    let pods = self.list_pods(&workload, op).await?;
                    let current = self.current_revision(&workload, op).await?;
                    let of_current = |p: &Pod| match &current {
                        Some((label, value)) => {
                            p.metadata.labels.as_ref().and_then(|l| l.get(*label)) == Some(value)
                        }
                        None => false,
                    };
                    if let Some(reason) = pods.iter().find_map(workload::stuck) {
                        return Err(error::driver(
                            ErrorKind::Other,
                            op,
                            &self.subject(),
                            format!("a pod cannot start: {reason}"),
                        ));
                    }
                    let others = pods
                        .iter()
                        .filter(|p| !of_current(p) || workload::terminating(p))
                        .count();
                    let started = pods
                        .iter()
                        .filter(|p| {
                            of_current(p)
                                && !workload::terminating(p)
                                && workload::phase(p) != "Pending"
                        })
                        .count();
                    if others == 0 && started == want && pods.len() == want {
                        return Ok(());
                    }
                    format!("{started} of {want} pods started, {others} other pods left")
                }
            };
            if Instant::now() >= deadline {
                return Err(error::driver(
                    ErrorKind::Timeout,
                    op,
                    &self.subject(),
                    format!(
                        "the rollout did not converge within {:?}: {waiting}; `kubectl rollout status {}/{} -n {}` shows it",
                        self.config.rollout_timeout(),
                        self.kind.as_str(),
                        self.name,
                        self.namespace
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Resumes a paused rollout (Deployment `spec.paused`, StatefulSet `partition`).
    async fn resume_rollout(&self, workload: &Value, op: &str) -> Result<()> {
        let patch = match self.kind {
            WorkloadKind::Deployment if workload["spec"]["paused"] == true => {
                json!({"spec": {"paused": false}})
            }
            WorkloadKind::StatefulSet
                if workload["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0 =>
            {
                json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})
            }
            _ => return Ok(()),
        };
        self.workloads()
            .patch(&self.name, &manager(), &Patch::Merge(&patch))
            .await
            .map_err(|e| error::kube(op, &self.subject(), e))?;
        Ok(())
    }
}

/// Patch parameters naming cutover as the field manager (merge and strategic patches).
pub(crate) fn manager() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

#[async_trait]
impl Driver for KubernetesDriver {
    fn info(&self) -> DriverInfo {
        let mut target = self.describe();
        if let Some(release) = &self.helm {
            target.push_str(&format!(
                " (managed by Helm release {release}: the next `helm upgrade` resets the image unless the chart's values name the new tag)"
            ));
        }
        DriverInfo {
            kind: KIND.to_string(),
            target,
        }
    }

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::none().with_exec().with_lock().with_logs();
        if self.archive.load(Ordering::Relaxed) {
            caps.with_archive()
        } else {
            caps
        }
    }

    async fn observe(&self) -> Result<Observed> {
        let (_, workload) = self.get("observe").await?;
        let image = self.image_of(&workload, "observe")?;
        let pods = self.list_pods(&workload, "observe").await?;
        let current = self.current_revision(&workload, "observe").await?;
        let instances = pods
            .iter()
            .map(|pod| {
                let spec_image = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|c| c.name == self.container))
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                let status = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|s| s.iter().find(|c| c.name == self.container));
                let running = workload::phase(pod) == "Running"
                    && status
                        .and_then(|s| s.state.as_ref())
                        .is_some_and(|s| s.running.is_some());
                let of_current = current.as_ref().is_some_and(|(label, value)| {
                    pod.metadata.labels.as_ref().and_then(|l| l.get(*label)) == Some(value)
                });
                let digest = status
                    .map(|s| s.image_id.clone())
                    .and_then(|id| id.rsplit_once('@').map(|(_, d)| d.to_string()));
                Ok(Instance {
                    id: pod.metadata.name.clone().unwrap_or_default(),
                    uid: pod.metadata.uid.clone(),
                    location: pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default(),
                    image: ImageRef::parse(&spec_image)?,
                    digest,
                    running,
                    ready: of_current && !workload::terminating(pod) && workload::pod_ready(pod),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Observed {
            image,
            replicas: workload::replicas(&workload),
            instances,
        })
    }

    async fn pull(&self, image: &ImageRef, events: &EventSink) -> Result<Pulled> {
        if let Some(release) = &self.helm {
            events.warn(format!(
                "{} is managed by Helm release {release}: after this upgrade, set the chart's image tag in its values \
                 (e.g. `helm upgrade {release} … --set image.tag={}`), or the next `helm upgrade` puts the old image back",
                self.subject(),
                image.tag().unwrap_or("<tag>")
            ));
        }
        pull::check(image, events).await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let (_, workload) = self.get("snapshot").await?;
        let image = self.image_of(&workload, "snapshot")?;
        if let Some(release) = &self.helm {
            tracing::warn!(
                release,
                "the target is managed by Helm; update the chart's values after the upgrade"
            );
        }
        Ok(snapshot::take(self, &workload, image))
    }

    async fn set_image(&self, image: &ImageRef) -> Result<()> {
        let (_, workload) = self.get("set_image").await?;
        if self.image_of(&workload, "set_image")? == *image {
            return Ok(());
        }
        let containers = json!([{"name": self.container, "image": image.to_string()}]);
        let patch = match self.kind {
            WorkloadKind::Deployment => json!({"spec": {
                "paused": true,
                "template": {"spec": {"containers": containers}},
            }}),
            WorkloadKind::StatefulSet => json!({"spec": {
                "updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"partition": workload::replicas(&workload).max(1)}},
                "template": {"spec": {"containers": containers}},
            }}),
        };
        self.workloads()
            .patch(&self.name, &manager(), &Patch::Strategic(&patch))
            .await
            .map_err(|e| error::kube("set_image", &self.subject(), e))?;
        Ok(())
    }

    async fn scale(&self, replicas: u32) -> Result<()> {
        let (_, workload) = self.get("scale").await?;
        self.resume_rollout(&workload, "scale").await?;
        let patch = json!({"spec": {"replicas": replicas}});
        self.workloads()
            .patch_scale(&self.name, &manager(), &Patch::Merge(&patch))
            .await
            .map_err(|e| error::kube("scale", &self.subject(), e))?;
        // The generation our writes produced: the controller must have observed it.
        let (object, _) = self.get("scale").await?;
        let generation = object.metadata.generation.unwrap_or(0);
        self.wait_converged(generation, "scale").await
    }

    async fn restore(&self, snap: &Snapshot) -> Result<()> {
        snapshot::restore(self, snap).await
    }

    async fn release(&self, _snapshot: &Snapshot) -> Result<()> {
        // Old ReplicaSets (a Deployment's revision history) are the cluster's to prune.
        Ok(())
    }

    async fn exec(&self, at: &ExecTarget, argv: &[String], io: ExecIo) -> Result<ExitStatus> {
        exec::exec(self, at, argv, io).await
    }

    async fn archive(&self, at: &ExecTarget, path: &str) -> Result<ByteStream> {
        if !self.archive.load(Ordering::Relaxed) {
            return Err(Error::unsupported(KIND, "archive"));
        }
        exec::archive(self, at, path).await
    }

    async fn unarchive(&self, at: &ExecTarget, path: &str, tar: ByteStream) -> Result<()> {
        if !self.archive.load(Ordering::Relaxed) {
            return Err(Error::unsupported(KIND, "unarchive"));
        }
        exec::unarchive(self, at, path, tar).await
    }

    async fn logs(&self, instance: &str, lines: usize) -> Result<String> {
        crate::logs::tail(self, instance, lines).await
    }

    async fn lock(&self, holder: &Holder) -> Result<()> {
        lock::lock(self, holder).await
    }

    async fn unlock(&self, holder: &Holder) -> Result<()> {
        lock::unlock(self, holder).await
    }
}
