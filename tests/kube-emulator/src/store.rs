//! The object store: every object as JSON under (resource, namespace, name), one
//! cluster-wide resourceVersion counter, recent changes for watches, and the history the
//! tests read.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::history::HistoryEvent;

/// How many changes a watch can replay from an older resourceVersion (else 410 Gone).
const KEPT_CHANGES: usize = 4096;

/// Where an object lives.
pub(crate) type Key = (String, String, String);

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub rv: u64,
    pub resource: String,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
}

/// An API error: the HTTP status, the Status `reason` and a message.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
    }

    /// The `Status` object the API server sends.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        })
    }
}

/// The resources this emulator serves: (kind, apiVersion).
pub(crate) fn kind_of(resource: &str) -> Option<(&'static str, &'static str)> {
    Some(match resource {
        "deployments" => ("Deployment", "apps/v1"),
        "replicasets" => ("ReplicaSet", "apps/v1"),
        "statefulsets" => ("StatefulSet", "apps/v1"),
        "pods" => ("Pod", "v1"),
        "leases" => ("Lease", "coordination.k8s.io/v1"),
        _ => return None,
    })
}

/// Whether writes to `resource` track `metadata.generation` (spec changes bump it).
fn has_generation(resource: &str) -> bool {
    matches!(resource, "deployments" | "replicasets" | "statefulsets")
}

/// The objects and their history.
#[derive(Debug, Default)]
pub(crate) struct Store {
    rv: u64,
    uid: u64,
    pub objects: BTreeMap<Key, Value>,
    pub changes: VecDeque<Change>,
    pub history: Vec<HistoryEvent>,
}

/// Now as RFC 3339 with seconds, e.g. `2026-11-26T00:10:16Z`.
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Store {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// The current resourceVersion of the whole store (a list's).
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch can start from.
    pub fn oldest_watchable(&self) -> u64 {
        self.changes.front().map(|c| c.rv - 1).unwrap_or(self.rv)
    }

    pub fn record(&mut self, event: HistoryEvent) {
        self.history.push(event);
    }

    fn publish(&mut self, resource: &str, namespace: &str, kind: &'static str, object: &Value) {
        let change = Change {
            rv: self.rv,
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            kind,
            object: object.clone(),
        };
        if self.changes.len() == KEPT_CHANGES {
            self.changes.pop_front();
        }
        self.changes.push_back(change);
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        ))
    }

    /// Objects of `resource` in `namespace`.
    pub fn list(&self, resource: &str, namespace: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, n, _), _)| r == resource && n == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// POST: a new object; 409 AlreadyExists if the name is taken.
    pub fn create(
        &mut self,
        resource: &str,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let (kind, api_version) = kind_of(resource)
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("no resource {resource}")))?;
        let name = object["metadata"]["name"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                object["metadata"]["generateName"]
                    .as_str()
                    .map(|p| format!("{p}{:05x}", self.uid + 1))
            })
            .ok_or_else(|| ApiError::new(422, "Invalid", "metadata.name: Required value"))?;
        let key = (resource.to_string(), namespace.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{resource} \"{name}\" already exists"),
            ));
        }
        self.uid += 1;
        let rv = self.next_rv();
        object["kind"] = kind.into();
        object["apiVersion"] = api_version.into();
        let meta = &mut object["metadata"];
        meta["name"] = name.into();
        meta["namespace"] = namespace.into();
        meta["uid"] = format!("emulated-{:08}", self.uid).into();
        meta["resourceVersion"] = rv.to_string().into();
        meta["creationTimestamp"] = now_rfc3339().into();
        if has_generation(resource) {
            meta["generation"] = 1.into();
        }
        self.objects.insert(key, object.clone());
        self.publish(resource, namespace, "ADDED", &object);
        match resource {
            "deployments" | "statefulsets" => {
                let workload = format!(
                    "{namespace}/{}",
                    object["metadata"]["name"].as_str().unwrap_or("")
                );
                self.record(HistoryEvent::TemplateChanged {
                    workload: workload.clone(),
                    image: first_image(&object["spec"]["template"]),
                });
                self.record(HistoryEvent::Scaled {
                    workload,
                    replicas: replicas_of(&object),
                });
            }
            "pods" => self.record(HistoryEvent::PodCreated {
                pod: object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                image: first_image(&object),
            }),
            _ => {}
        }
        Ok(object)
    }

    /// PUT (or the result of a PATCH): replaces the object. A `metadata.resourceVersion`
    /// in `object` that is not the current one is a 409 Conflict. A changed `spec` bumps
    /// `metadata.generation`; `status` is kept unless `status_too`.
    pub fn replace(
        &mut self,
        resource: &str,
        namespace: &str,
        name: &str,
        mut object: Value,
        status_too: bool,
    ) -> Result<Value, ApiError> {
        let key = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let current = self
            .objects
            .get(&key)
            .ok_or_else(|| ApiError::not_found(resource, name))?
            .clone();
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str()
            && rv
                != current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
            ));
        }
        // What the server owns stays the server's.
        for field in [
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "deletionTimestamp",
        ] {
            object["metadata"][field] = current["metadata"][field].clone();
        }
        object["kind"] = current["kind"].clone();
        object["apiVersion"] = current["apiVersion"].clone();
        if !status_too {
            object["status"] = current["status"].clone();
        }
        if let Value::Object(meta) = &mut object["metadata"] {
            meta.retain(|_, v| !v.is_null());
        }
        if let Value::Object(top) = &mut object {
            top.retain(|_, v| !v.is_null());
        }
        if has_generation(resource) {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
            let bumped = if object["spec"] != current["spec"] {
                generation + 1
            } else {
                generation
            };
            object["metadata"]["generation"] = bumped.into();
        }
        if object == current {
            return Ok(current);
        }
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        self.objects.insert(key, object.clone());
        self.publish(resource, namespace, "MODIFIED", &object);
        if resource == "deployments" || resource == "statefulsets" {
            let workload = format!("{namespace}/{name}");
            if object["spec"]["template"] != current["spec"]["template"] {
                self.record(HistoryEvent::TemplateChanged {
                    workload: workload.clone(),
                    image: first_image(&object["spec"]["template"]),
                });
            }
            if replicas_of(&object) != replicas_of(&current) {
                self.record(HistoryEvent::Scaled {
                    workload,
                    replicas: replicas_of(&object),
                });
            }
        }
        Ok(object)
    }

    /// Sets `metadata.deletionTimestamp` (a terminating pod), once.
    pub fn mark_deleting(
        &mut self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let mut object = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        if !object["metadata"]["deletionTimestamp"].is_null() {
            return Ok(object);
        }
        object["metadata"]["deletionTimestamp"] = now_rfc3339().into();
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        self.objects.insert(key, object.clone());
        self.publish(resource, namespace, "MODIFIED", &object);
        Ok(object)
    }

    /// Writes `status` of an object (the controller's and kubelet's writes); no-op when equal.
    pub fn set_status(&mut self, resource: &str, namespace: &str, name: &str, status: Value) {
        let key = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let Some(object) = self.objects.get(&key) else {
            return;
        };
        if object["status"] == status {
            return;
        }
        let mut object = object.clone();
        object["status"] = status;
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        self.objects.insert(key, object.clone());
        self.publish(resource, namespace, "MODIFIED", &object);
    }

    /// Removes the object at once (pods go through [`crate::kubelet`] first).
    pub fn remove(&mut self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let mut object = self.objects.remove(&key)?;
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        self.publish(resource, namespace, "DELETED", &object);
        if resource == "pods" {
            self.record(HistoryEvent::PodDeleted {
                pod: name.to_string(),
                image: first_image(&object),
            });
        }
        Some(object)
    }
}

/// The first container's image of a pod or pod template.
pub(crate) fn first_image(pod_or_template: &Value) -> String {
    pod_or_template["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// `spec.replicas` of a workload (default 1).
pub(crate) fn replicas_of(workload: &Value) -> u32 {
    workload["spec"]["replicas"]
        .as_u64()
        .map(|n| n as u32)
        .unwrap_or(1)
}
