//! The backend-side lock: a `coordination.k8s.io/v1` Lease named
//! `cutover-<kind>-<name>` whose `holderIdentity` is the run id, annotated with the run's
//! host and pid, so `kubectl get lease` shows who holds the target.
//!
//! Taking it is a create (409 AlreadyExists: someone else was first) or a replace of a
//! released Lease carrying the resourceVersion we read (409 Conflict: someone else was
//! first). While held, a background task renews `renewTime` every third of the Lease
//! duration until `unlock`. A Lease of another run is never taken over, even when its
//! renewals stopped: that run was interrupted and must be resumed or rolled back.

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_core::{ErrorKind, Holder, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use crate::driver::{FIELD_MANAGER, KubernetesDriver};
use crate::error;

const HOST: &str = "cutover.io/host";
const PID: &str = "cutover.io/pid";

impl KubernetesDriver {
    /// The Lease's name.
    pub fn lease_name(&self) -> String {
        format!("cutover-{}-{}", self.kind.as_str(), self.name)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

fn params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn holder_of(lease: &Lease) -> Option<String> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty())
}

fn describe(lease: &Lease) -> String {
    let annotations = lease.metadata.annotations.clone().unwrap_or_default();
    let get = |k: &str| annotations.get(k).cloned().unwrap_or_else(|| "?".into());
    let renewed = lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_else(|| "never".into());
    format!(
        "run {} (pid {} on {}), last renewed {renewed}",
        holder_of(lease).unwrap_or_default(),
        get(PID),
        get(HOST)
    )
}

fn fill(lease: &mut Lease, d: &KubernetesDriver, holder: &Holder, acquire: bool) {
    let annotations = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(HOST.into(), holder.host.clone());
    annotations.insert(PID.into(), holder.pid.to_string());
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(holder.run.clone());
    spec.lease_duration_seconds = Some(d.config.lease_duration().as_secs() as i32);
    spec.renew_time = Some(now());
    if acquire {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
}

pub(crate) async fn lock(d: &KubernetesDriver, holder: &Holder) -> Result<()> {
    let name = d.lease_name();
    let subject = format!("lease {}/{name}", d.namespace);
    let locked = |lease: &Lease| {
        error::driver(
            ErrorKind::Locked,
            "lock",
            &subject,
            format!(
                "{} holds the lock on {}; if that run was interrupted, `cutover resume` it (or roll it back) \
                 from where it ran",
                describe(lease),
                d.subject()
            ),
        )
    };
    for _ in 0..5 {
        let existing = d
            .leases()
            .get_opt(&name)
            .await
            .map_err(|e| error::kube("lock", &subject, e))?;
        let result = match existing {
            None => {
                let mut lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(d.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: None,
                };
                fill(&mut lease, d, holder, true);
                d.leases().create(&params(), &lease).await
            }
            Some(mut lease) => {
                let current = holder_of(&lease);
                if current.as_deref().is_some_and(|h| h != holder.run) {
                    return Err(locked(&lease));
                }
                fill(&mut lease, d, holder, current.is_none());
                // Carries the resourceVersion we read: a stale one is a 409.
                d.leases().replace(&name, &params(), &lease).await
            }
        };
        match result {
            Ok(_) => {
                start_renewal(d, holder);
                return Ok(());
            }
            // Someone wrote in between: read again and decide again.
            Err(e) if error::is_conflict(&e) => continue,
            Err(e) => return Err(error::kube("lock", &subject, e)),
        }
    }
    Err(error::driver(
        ErrorKind::Conflict,
        "lock",
        &subject,
        "the Lease kept changing while cutover tried to take it; try again".into(),
    ))
}

fn start_renewal(d: &KubernetesDriver, holder: &Holder) {
    let every = d.config.lease_duration() / 3;
    let driver = d.clone();
    let holder = holder.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = renew(&driver, &holder).await {
                tracing::warn!(error = %e.report(), "renewing the Lease failed");
            }
        }
    });
    let mut slot = d.renewal.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(old) = slot.replace(task.abort_handle()) {
        old.abort();
    }
}

async fn renew(d: &KubernetesDriver, holder: &Holder) -> Result<()> {
    let name = d.lease_name();
    let mut lease = d
        .leases()
        .get(&name)
        .await
        .map_err(|e| error::kube("lock", &name, e))?;
    if holder_of(&lease).as_deref() != Some(holder.run.as_str()) {
        return Err(error::driver(
            ErrorKind::Locked,
            "lock",
            &name,
            format!("the Lease is no longer ours: {}", describe(&lease)),
        ));
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.renew_time = Some(now());
    }
    d.leases()
        .replace(&name, &params(), &lease)
        .await
        .map_err(|e| error::kube("lock", &name, e))?;
    Ok(())
}

pub(crate) async fn unlock(d: &KubernetesDriver, holder: &Holder) -> Result<()> {
    let name = d.lease_name();
    let subject = format!("lease {}/{name}", d.namespace);
    for _ in 0..5 {
        let Some(mut lease) = d
            .leases()
            .get_opt(&name)
            .await
            .map_err(|e| error::kube("unlock", &subject, e))?
        else {
            return Ok(());
        };
        if holder_of(&lease).as_deref() != Some(holder.run.as_str()) {
            return Ok(());
        }
        if let Some(task) = d.renewal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = Some(now());
        }
        match d.leases().replace(&name, &params(), &lease).await {
            Ok(_) => return Ok(()),
            Err(e) if error::is_conflict(&e) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(error::kube("unlock", &subject, e)),
        }
    }
    Err(error::driver(
        ErrorKind::Conflict,
        "unlock",
        &subject,
        "the Lease kept changing while cutover tried to release it; run `cutover unlock` again"
            .into(),
    ))
}
