//! What a running deployment tells about itself, for `cutover init`.
//!
//! Given one container of the application, [`discover`] reads what a configuration needs:
//! whether Compose runs it (project, service, the files and working directory Compose
//! labels it with) or a `docker run` script (its base name), how many instances the target
//! has, the image repository, whether the image brings a health check, its named volumes,
//! its environment (the application's database settings are there; the caller must never
//! print their values) and, for Compose, the project's other services with their published
//! ports and addresses (the database's, when it runs beside the application).

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::ListContainersOptions;
use cutover_core::{Error, ErrorKind, Result};

use crate::config::{ComposeTarget, ContainersTarget, DockerConfig};
use crate::error;
use crate::target::{LABEL_ROLE, labels_of, name_of};

/// A Compose service, as its container's labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeFound {
    /// `com.docker.compose.project`.
    pub project: String,
    /// `com.docker.compose.service`.
    pub service: String,
    /// `com.docker.compose.project.config_files`, split on commas.
    pub files: Vec<PathBuf>,
    /// `com.docker.compose.project.working_dir`.
    pub working_dir: Option<PathBuf>,
}

/// Another service of the same Compose project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its Compose service name.
    pub service: String,
    /// Its container's name.
    pub name: String,
    /// Container port (`3306/tcp`) → published host address and port.
    pub published: Vec<(String, String, u16)>,
    /// Its addresses on its networks.
    pub addresses: Vec<String>,
}

/// What [`discover`] found.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The engine, as a `DOCKER_HOST` value.
    pub host: String,
    /// The target as `[driver.docker]` names it.
    pub target: DockerConfig,
    /// The Compose service, if Compose runs it.
    pub compose: Option<ComposeFound>,
    /// The image reference the container was created from, as written.
    pub image: String,
    /// Instances of the target (running or not).
    pub replicas: u32,
    /// The image or container defines a health check.
    pub healthcheck: bool,
    /// Destinations of named volumes: the application's storage.
    pub volumes: Vec<String>,
    /// The container's environment. Holds secrets: use it, never print a value.
    pub env: HashMap<String, String>,
    /// The Compose project's other services.
    pub peers: Vec<Peer>,
}

/// Reads the deployment that `container` belongs to on the engine at `host` (default as
/// [`crate::connect`]).
///
/// # Errors
/// `NotFound` when there is no such container; the engine's errors otherwise.
pub async fn discover(host: Option<String>, container: &str) -> Result<Discovery> {
    let probe = crate::connect(DockerConfig {
        host: host.clone(),
        containers: Some(ContainersTarget {
            name: container.to_string(),
            label: None,
        }),
        ..DockerConfig::default()
    })
    .await?;
    let docker = &probe.docker;
    let c = match docker.inspect_container(container, None).await {
        Ok(c) => c,
        Err(e) if error::is_not_found(&e) => {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no container {container:?} on {}; `docker ps` lists the running ones",
                    probe.host
                ),
            ));
        }
        Err(e) => return Err(error::docker("init", container, e)),
    };
    let labels = labels_of(&c);
    if labels.contains_key(LABEL_ROLE) {
        return Err(Error::invalid(format!(
            "{container:?} is a container cutover made for itself; name one of the application's"
        )));
    }
    let compose = match (
        labels.get("com.docker.compose.project"),
        labels.get("com.docker.compose.service"),
    ) {
        (Some(project), Some(service)) => Some(ComposeFound {
            project: project.clone(),
            service: service.clone(),
            files: labels
                .get("com.docker.compose.project.config_files")
                .map(|f| {
                    f.split(',')
                        .filter(|s| !s.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
            working_dir: labels
                .get("com.docker.compose.project.working_dir")
                .map(PathBuf::from),
        }),
        _ => None,
    };
    let target = match &compose {
        Some(found) => DockerConfig {
            host: host.clone(),
            compose: Some(ComposeTarget {
                project: Some(found.project.clone()),
                service: found.service.clone(),
                file: None,
                env_file: None,
                naming: None,
            }),
            ..DockerConfig::default()
        },
        None => DockerConfig {
            host: host.clone(),
            containers: Some(ContainersTarget {
                name: base_name(name_of(&c)).to_string(),
                label: None,
            }),
            ..DockerConfig::default()
        },
    };
    let driver = crate::connect(target.clone()).await?;
    let replicas = driver.seen("init").await?.instances.len().max(1);
    let config = c.config.clone().unwrap_or_default();
    let healthcheck = config
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| !t.is_empty() && t[0] != "NONE");
    let volumes = c
        .mounts
        .iter()
        .flatten()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter_map(|m| m.destination.clone())
        .collect();
    let env = config
        .env
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let peers = match &compose {
        Some(found) => peers(&probe.docker, found, name_of(&c)).await?,
        None => Vec::new(),
    };
    Ok(Discovery {
        host: probe.host.clone(),
        target,
        compose,
        image: config.image.unwrap_or_default(),
        replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
        healthcheck,
        volumes,
        env,
        peers,
    })
}

/// `name` without a trailing `-N` replica number.
fn base_name(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

async fn peers(docker: &bollard::Docker, found: &ComposeFound, own: &str) -> Result<Vec<Peer>> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("com.docker.compose.project={}", found.project)],
    )]);
    let summaries = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| error::docker("init", &found.project, e))?;
    let mut out = Vec::new();
    for s in summaries {
        let Some(id) = s.id else { continue };
        let c: ContainerInspectResponse = match docker.inspect_container(&id, None).await {
            Ok(c) => c,
            Err(e) if error::is_not_found(&e) => continue,
            Err(e) => return Err(error::docker("init", &id, e)),
        };
        let labels = labels_of(&c);
        let Some(service) = labels.get("com.docker.compose.service") else {
            continue;
        };
        if name_of(&c) == own || *service == found.service || labels.contains_key(LABEL_ROLE) {
            continue;
        }
        let network = c.network_settings.clone().unwrap_or_default();
        let mut published = Vec::new();
        for (port, bindings) in network.ports.iter().flatten() {
            for b in bindings.iter().flatten() {
                if let Some(p) = b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) {
                    let ip = b
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty() && ip != "0.0.0.0" && ip != "::");
                    published.push((port.clone(), ip.unwrap_or_else(|| "127.0.0.1".into()), p));
                }
            }
        }
        published.sort();
        published.dedup();
        let addresses = network
            .networks
            .iter()
            .flatten()
            .filter_map(|(_, n)| n.ip_address.clone().filter(|ip| !ip.is_empty()))
            .collect();
        out.push(Peer {
            service: service.clone(),
            name: name_of(&c).to_string(),
            published,
            addresses,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_numbers_are_not_part_of_the_base_name() {
        assert_eq!(base_name("apidog-2"), "apidog");
        assert_eq!(base_name("apidog"), "apidog");
        assert_eq!(base_name("api-dog"), "api-dog");
        assert_eq!(base_name("apidog-"), "apidog-");
    }
}
