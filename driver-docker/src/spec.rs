//! A container's configuration as a create request, and the image defaults in it.
//!
//! Docker merges an image's defaults (env, cmd, entrypoint, labels, healthcheck, …) into a
//! container's configuration when it creates it, and `inspect` no longer tells them apart.
//! [`Spec::strip_image_defaults`] removes what equals the image's default so that a new
//! image's own defaults apply; a setting that the operator gave with the same value as
//! the old image's default is treated as a default too.

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, NetworkConnectRequest,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::CreateContainerOptions;
use cutover_core::{ErrorKind, Result};
use serde_json::{Map, Value};

use crate::error;

/// Config keys compared with the image's config by value.
const SCALAR_DEFAULTS: [&str; 7] = [
    "Cmd",
    "Entrypoint",
    "Healthcheck",
    "WorkingDir",
    "User",
    "StopSignal",
    "Shell",
];

/// A container's create request without its image, with the environment apart (it may hold
/// secrets and is handled separately).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    /// `ContainerCreateBody` JSON without `Image` and `Env`, with `HostConfig` and
    /// `NetworkingConfig`.
    pub body: Map<String, Value>,
    /// `NAME=value` entries in order.
    pub env: Vec<String>,
}

impl Spec {
    /// What it takes to create `c` again: its config, host config and network endpoints
    /// (aliases kept; addresses and ids Docker assigns are dropped).
    pub(crate) fn of(c: &ContainerInspectResponse) -> Spec {
        let mut body = match serde_json::to_value(&c.config) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let env = match body.remove("Env") {
            Some(Value::Array(v)) => v
                .into_iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        body.remove("Image");
        let short_id: String =
            c.id.as_deref()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect();
        if body.get("Hostname").and_then(Value::as_str) == Some(short_id.as_str()) {
            body.remove("Hostname");
        }
        if let Some(host) = &c.host_config
            && let Ok(v) = serde_json::to_value(host)
        {
            body.insert("HostConfig".into(), v);
        }
        let networks = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.clone())
            .unwrap_or_default();
        let endpoints: Map<String, Value> = networks
            .into_iter()
            .map(|(name, ep)| {
                let aliases = ep.aliases.map(|a| {
                    a.into_iter()
                        .filter(|alias| *alias != short_id)
                        .collect::<Vec<_>>()
                });
                let kept = EndpointSettings {
                    aliases: aliases.filter(|a| !a.is_empty()),
                    ipam_config: ep.ipam_config,
                    links: ep.links,
                    driver_opts: ep.driver_opts,
                    ..Default::default()
                };
                (name, serde_json::to_value(kept).unwrap_or(Value::Null))
            })
            .collect();
        body.insert(
            "NetworkingConfig".into(),
            serde_json::json!({ "EndpointsConfig": endpoints }),
        );
        Spec { body, env }
    }

    /// Drops what equals `image_config` (an image's `Config` as JSON).
    pub(crate) fn strip_image_defaults(&mut self, image_config: &Value) {
        let image_env: Vec<&str> = image_config["Env"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        self.env.retain(|e| !image_env.contains(&e.as_str()));
        for key in SCALAR_DEFAULTS {
            if self.body.get(key).is_some_and(|v| *v == image_config[key]) {
                self.body.remove(key);
            }
        }
        if let Some(Value::Object(labels)) = self.body.get_mut("Labels") {
            labels.retain(|k, v| image_config["Labels"].get(k) != Some(v));
        }
        for key in ["ExposedPorts", "Volumes"] {
            // Both are sets; bollard renders them as arrays or maps depending on the field.
            let image_has = |item: &str| match &image_config[key] {
                Value::Array(a) => a.iter().any(|x| x.as_str() == Some(item)),
                Value::Object(m) => m.contains_key(item),
                _ => false,
            };
            match self.body.get_mut(key) {
                Some(Value::Array(a)) => a.retain(|x| !x.as_str().is_some_and(image_has)),
                Some(Value::Object(m)) => m.retain(|k, _| !image_has(k)),
                _ => {}
            }
        }
    }

    /// The environment as `(name, value)` pairs.
    pub(crate) fn env_pairs(&self) -> Vec<(String, String)> {
        self.env.iter().map(|e| split_env(e)).collect()
    }

    /// Labels of the spec.
    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        self.body
            .get("Labels")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// Replaces the labels.
    pub(crate) fn set_labels(&mut self, labels: &BTreeMap<String, String>) {
        self.body.insert(
            "Labels".into(),
            serde_json::to_value(labels).unwrap_or_default(),
        );
    }

    /// The restart policy of the host config (none given: Docker's default, `no`).
    pub(crate) fn restart_policy(&self) -> RestartPolicy {
        self.body
            .get("HostConfig")
            .and_then(|h| h.get("RestartPolicy"))
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default()
    }

    /// Replaces the restart policy of the host config.
    pub(crate) fn set_restart_policy(&mut self, policy: &RestartPolicy) {
        let host = self
            .body
            .entry("HostConfig")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(host) = host {
            host.insert(
                "RestartPolicy".into(),
                serde_json::to_value(policy).unwrap_or_default(),
            );
        }
    }
}

/// The restart policy that never restarts.
pub(crate) fn no_restart() -> RestartPolicy {
    RestartPolicy {
        name: Some(RestartPolicyNameEnum::NO),
        maximum_retry_count: Some(0),
    }
}

/// Whether two restart policies behave alike: no name, `""` and `no` are one policy, and
/// the retry count only counts for `on-failure`.
pub(crate) fn same_restart(a: &RestartPolicy, b: &RestartPolicy) -> bool {
    let name = |p: &RestartPolicy| match p.name {
        None | Some(RestartPolicyNameEnum::EMPTY) => RestartPolicyNameEnum::NO,
        Some(n) => n,
    };
    let retries = |p: &RestartPolicy| match name(p) {
        RestartPolicyNameEnum::ON_FAILURE => p.maximum_retry_count.unwrap_or(0),
        _ => 0,
    };
    name(a) == name(b) && retries(a) == retries(b)
}

/// A restart policy as `docker run --restart` spells it, for messages.
pub(crate) fn describe_restart(p: &RestartPolicy) -> String {
    match p.name {
        None | Some(RestartPolicyNameEnum::EMPTY) | Some(RestartPolicyNameEnum::NO) => "no".into(),
        Some(RestartPolicyNameEnum::ON_FAILURE) => match p.maximum_retry_count {
            Some(n) if n > 0 => format!("on-failure:{n}"),
            _ => "on-failure".into(),
        },
        Some(n) => n.to_string(),
    }
}

/// `NAME=value` (or a bare `NAME`) as a pair.
pub(crate) fn split_env(entry: &str) -> (String, String) {
    match entry.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (entry.to_string(), String::new()),
    }
}

/// An image's `Config` as JSON (`Null` when the image is not present).
pub(crate) async fn image_config(docker: &Docker, image: &str) -> Result<Value> {
    match docker.inspect_image(image).await {
        Ok(i) => Ok(serde_json::to_value(i.config).unwrap_or(Value::Null)),
        Err(e) if error::is_not_found(&e) => Ok(Value::Null),
        Err(e) => Err(error::docker("inspect image", image, e)),
    }
}

/// Creates (does not start) container `name` from `image` and `spec`, connecting it to
/// every network of the spec (API 1.41 takes one network at create, the rest after).
pub(crate) async fn create(
    docker: &Docker,
    op: &str,
    name: &str,
    image: &str,
    spec: &Spec,
) -> Result<()> {
    let mut body = spec.body.clone();
    body.insert("Image".into(), Value::String(image.to_string()));
    body.insert(
        "Env".into(),
        serde_json::to_value(&spec.env).unwrap_or_default(),
    );
    let endpoints: Map<String, Value> = body
        .remove("NetworkingConfig")
        .and_then(|n| n.get("EndpointsConfig").cloned())
        .and_then(|e| e.as_object().cloned())
        .unwrap_or_default();
    let mode = body["HostConfig"]["NetworkMode"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let first = endpoints
        .keys()
        .find(|k| **k == mode)
        .or_else(|| endpoints.keys().next())
        .cloned();
    if let Some(first) = &first {
        body.insert(
            "NetworkingConfig".into(),
            serde_json::json!({ "EndpointsConfig": { first.clone(): endpoints[first].clone() } }),
        );
    }
    let body: ContainerCreateBody = serde_json::from_value(Value::Object(body)).map_err(|e| {
        error::driver(
            ErrorKind::Other,
            op,
            name,
            format!("cannot build the create request: {e}"),
        )
    })?;
    let options = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| error::docker(op, name, e))?;
    for (network, endpoint) in endpoints {
        if Some(&network) == first.as_ref() {
            continue;
        }
        let request = NetworkConnectRequest {
            container: name.to_string(),
            endpoint_config: serde_json::from_value(endpoint).ok(),
        };
        docker
            .connect_network(&network, request)
            .await
            .map_err(|e| error::docker(op, name, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: RestartPolicyNameEnum, retries: Option<i64>) -> RestartPolicy {
        RestartPolicy {
            name: Some(name),
            maximum_retry_count: retries,
        }
    }

    #[test]
    fn restart_policies_compare_by_behaviour() {
        use RestartPolicyNameEnum::*;
        assert!(same_restart(&RestartPolicy::default(), &no_restart()));
        assert!(same_restart(&policy(EMPTY, Some(0)), &no_restart()));
        assert!(same_restart(
            &policy(UNLESS_STOPPED, None),
            &policy(UNLESS_STOPPED, Some(0))
        ));
        assert!(!same_restart(&policy(UNLESS_STOPPED, None), &no_restart()));
        assert!(!same_restart(
            &policy(ON_FAILURE, Some(3)),
            &policy(ON_FAILURE, Some(5))
        ));
        assert_eq!(
            describe_restart(&policy(ON_FAILURE, Some(3))),
            "on-failure:3"
        );
        assert_eq!(describe_restart(&RestartPolicy::default()), "no");
    }

    #[test]
    fn the_restart_policy_is_read_and_replaced_in_the_host_config() {
        let mut spec = Spec {
            body: serde_json::from_value(serde_json::json!({
                "HostConfig": {
                    "NetworkMode": "none",
                    "RestartPolicy": { "Name": "unless-stopped", "MaximumRetryCount": 0 }
                }
            }))
            .unwrap(),
            env: Vec::new(),
        };
        let real = spec.restart_policy();
        assert_eq!(real.name, Some(RestartPolicyNameEnum::UNLESS_STOPPED));
        spec.set_restart_policy(&no_restart());
        assert!(same_restart(&spec.restart_policy(), &no_restart()));
        assert_eq!(
            spec.body["HostConfig"]["NetworkMode"], "none",
            "the rest kept"
        );
        let mut bare = Spec {
            body: Map::new(),
            env: Vec::new(),
        };
        assert!(same_restart(&bare.restart_policy(), &no_restart()));
        bare.set_restart_policy(&real);
        assert!(same_restart(&bare.restart_policy(), &real));
    }
}
