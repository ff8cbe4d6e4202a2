//! Which containers make up the application, what they are called, and which of them
//! cutover set aside.
//!
//! A target's containers fall into four groups, told apart by name and labels:
//! - **instances**: the application's containers (Compose labels, a `key=value` label, or
//!   the names `name` / `name-N`);
//! - **kept**: instances stopped by `scale` and renamed `<name>-cutover-kept` until
//!   `release`, so that `restore` can start them again unchanged;
//! - the **definition**: a container that is created and never started, labelled
//!   `cutover.role=definition`, whose image and configuration new instances copy;
//! - the **lock**: a created, never started container labelled `cutover.role=lock`.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::ListContainersOptions;
use cutover_core::Result;

use crate::config::{ComposeNaming, DockerConfig};
use crate::error;

/// Suffix of a kept container's name.
pub(crate) const KEPT_SUFFIX: &str = "-cutover-kept";
/// Label naming the target a definition or lock container belongs to.
pub(crate) const LABEL_TARGET: &str = "cutover.target";
/// Label telling a definition container from a lock container.
pub(crate) const LABEL_ROLE: &str = "cutover.role";
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// Compose's label of `docker-compose run` containers, which `up` leaves alone.
const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
/// Compose's replica number label, which each new instance gets for its slot.
pub(crate) const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";

/// How the target's containers are found and named.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    Compose {
        project: String,
        service: String,
        naming: Option<ComposeNaming>,
    },
    Named {
        name: String,
        label: Option<(String, String)>,
    },
}

/// The containers of a target, inspected.
#[derive(Debug, Default)]
pub(crate) struct Containers {
    /// Instances, sorted by name.
    pub instances: Vec<ContainerInspectResponse>,
    /// Kept containers, sorted by name.
    pub kept: Vec<ContainerInspectResponse>,
    /// Definition containers, newest last.
    pub definitions: Vec<ContainerInspectResponse>,
    /// The lock container, if any.
    pub lock: Option<ContainerInspectResponse>,
}

impl Selector {
    pub(crate) fn from_config(config: &DockerConfig) -> Self {
        match (&config.compose, &config.containers) {
            (Some(c), _) => Selector::Compose {
                // `connect` fills it in from the compose file when not configured.
                project: c.project.clone().unwrap_or_default(),
                service: c.service.clone(),
                naming: c.naming,
            },
            (None, Some(c)) => Selector::Named {
                name: c.name.clone(),
                label: c.label.as_ref().and_then(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                }),
            },
            (None, None) => unreachable!("validated config has a target"),
        }
    }

    /// A stable key for labels and snapshots, e.g. `compose:apidog/server`.
    pub(crate) fn key(&self) -> String {
        match self {
            Selector::Compose {
                project, service, ..
            } => format!("compose:{project}/{service}"),
            Selector::Named { name, .. } => format!("containers:{name}"),
        }
    }

    /// Human description for [`cutover_core::DriverInfo`].
    pub(crate) fn describe(&self) -> String {
        match self {
            Selector::Compose {
                project, service, ..
            } => format!("compose service {project}/{service}"),
            Selector::Named {
                name,
                label: Some((k, v)),
            } => format!("containers labelled {k}={v} (named {name}…)"),
            Selector::Named { name, label: None } => format!("containers named {name}, {name}-N"),
        }
    }

    /// Labels of the definition container beside cutover's own: for a Compose service,
    /// Compose's project and service labels and `com.docker.compose.oneoff=True`, the
    /// labels of a `docker-compose run` container. `docker-compose up` ignores such a
    /// container (it neither starts nor counts it), and `docker-compose down` removes it
    /// with the project, so nothing cutover made outlives the project.
    pub(crate) fn helper_labels(&self) -> Vec<(String, String)> {
        match self {
            Selector::Compose {
                project, service, ..
            } => vec![
                (COMPOSE_PROJECT.to_string(), project.clone()),
                (COMPOSE_SERVICE.to_string(), service.clone()),
                (COMPOSE_ONEOFF.to_string(), "True".to_string()),
            ],
            Selector::Named { .. } => Vec::new(),
        }
    }

    /// The base of helper names (`project_service`, `project-service`, `name`).
    pub(crate) fn base(&self, naming: ComposeNaming) -> String {
        match (self, naming) {
            (
                Selector::Compose {
                    project, service, ..
                },
                ComposeNaming::V1,
            ) => {
                format!("{project}_{service}")
            }
            (
                Selector::Compose {
                    project, service, ..
                },
                ComposeNaming::V2,
            ) => {
                format!("{project}-{service}")
            }
            (Selector::Named { name, .. }, _) => name.clone(),
        }
    }

    /// The name of the instance in `slot` (1-based).
    pub(crate) fn slot_name(&self, naming: ComposeNaming, slot: u32) -> String {
        match (self, naming) {
            (Selector::Compose { .. }, ComposeNaming::V1) => {
                format!("{}_{slot}", self.base(naming))
            }
            (Selector::Compose { .. }, ComposeNaming::V2) => {
                format!("{}-{slot}", self.base(naming))
            }
            (Selector::Named { name, .. }, _) if slot == 1 => name.clone(),
            (Selector::Named { name, .. }, _) => format!("{name}-{slot}"),
        }
    }

    /// The slot of an instance: Compose's number label, else parsed from the name.
    pub(crate) fn slot_of(&self, c: &ContainerInspectResponse) -> Option<u32> {
        let name = name_of(c);
        match self {
            Selector::Compose { .. } => labels_of(c)
                .get(COMPOSE_NUMBER)
                .and_then(|n| n.parse().ok())
                .or_else(|| {
                    [ComposeNaming::V1, ComposeNaming::V2]
                        .iter()
                        .find_map(|&n| {
                            let rest = name.strip_prefix(&self.base(n))?;
                            rest.strip_prefix(['_', '-'])?.parse().ok()
                        })
                }),
            Selector::Named { name: base, .. } => {
                if name == base {
                    Some(1)
                } else {
                    name.strip_prefix(base.as_str())?
                        .strip_prefix('-')?
                        .parse()
                        .ok()
                        .filter(|n| *n >= 2)
                }
            }
        }
    }

    /// The naming in use: configured, else as the existing containers are named, else v2.
    pub(crate) fn naming(&self, seen: &Containers) -> ComposeNaming {
        if let Selector::Compose {
            naming: Some(n), ..
        } = self
        {
            return *n;
        }
        let v1 = self.base(ComposeNaming::V1);
        let uses_v1 = seen
            .instances
            .iter()
            .chain(&seen.kept)
            .any(|c| name_of(c).starts_with(&format!("{v1}_")));
        if uses_v1 {
            ComposeNaming::V1
        } else {
            ComposeNaming::V2
        }
    }

    fn filters(&self) -> HashMap<String, Vec<String>> {
        let label = match self {
            Selector::Compose {
                project, service, ..
            } => vec![
                format!("{COMPOSE_PROJECT}={project}"),
                format!("{COMPOSE_SERVICE}={service}"),
            ],
            Selector::Named {
                label: Some((k, v)),
                ..
            } => vec![format!("{k}={v}")],
            Selector::Named { name, label: None } => {
                return HashMap::from([("name".into(), vec![name.clone()])]);
            }
        };
        HashMap::from([("label".into(), label)])
    }

    /// Lists and inspects every container of the target.
    pub(crate) async fn containers(&self, docker: &Docker, op: &str) -> Result<Containers> {
        let key = self.key();
        let mut seen = Containers::default();
        for c in list(docker, op, self.filters()).await? {
            let name = name_of(&c).to_string();
            if let Some(original) = name.strip_suffix(KEPT_SUFFIX) {
                if self.owns(original, &c) {
                    seen.kept.push(c);
                }
            // Definition and lock containers carry cutover's target label (a Compose
            // target's definition also Compose's labels): never instances.
            } else if !labels_of(&c).contains_key(LABEL_TARGET) && self.owns(&name, &c) {
                seen.instances.push(c);
            }
        }
        let mine = HashMap::from([("label".into(), vec![format!("{LABEL_TARGET}={key}")])]);
        for c in list(docker, op, mine).await? {
            match labels_of(&c).get(LABEL_ROLE).map(String::as_str) {
                Some("definition") => seen.definitions.push(c),
                Some("lock") => seen.lock = Some(c),
                _ => {}
            }
        }
        seen.instances.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        seen.kept.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        seen.definitions.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(seen)
    }

    /// Whether a container named `name` (without the kept suffix) is one of the target's.
    fn owns(&self, name: &str, c: &ContainerInspectResponse) -> bool {
        match self {
            // Selected by labels already.
            Selector::Compose { .. } | Selector::Named { label: Some(_), .. } => true,
            Selector::Named { name: base, .. } => {
                let _ = c;
                name == base
                    || name
                        .strip_prefix(base.as_str())
                        .and_then(|r| r.strip_prefix('-'))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            }
        }
    }
}

async fn list(
    docker: &Docker,
    op: &str,
    filters: HashMap<String, Vec<String>>,
) -> Result<Vec<ContainerInspectResponse>> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let summaries = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| error::docker(op, "", e))?;
    let mut out = Vec::new();
    for s in summaries {
        let Some(id) = s.id else { continue };
        match docker.inspect_container(&id, None).await {
            Ok(c) => out.push(c),
            // Removed between list and inspect.
            Err(e) if error::is_not_found(&e) => {}
            Err(e) => return Err(error::docker(op, &id, e)),
        }
    }
    Ok(out)
}

/// A container's name without Docker's leading `/`.
pub(crate) fn name_of(c: &ContainerInspectResponse) -> &str {
    c.name
        .as_deref()
        .map(|n| n.trim_start_matches('/'))
        .unwrap_or_default()
}

/// A container's labels.
pub(crate) fn labels_of(c: &ContainerInspectResponse) -> HashMap<String, String> {
    c.config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

/// The image reference the container was created from, as written.
pub(crate) fn image_of(c: &ContainerInspectResponse) -> &str {
    c.config
        .as_ref()
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default()
}

/// Whether the container's process runs.
pub(crate) fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state
        .as_ref()
        .is_some_and(|s| s.running == Some(true) || s.restarting == Some(true))
}

/// How long after a restart by its restart policy a container counts as crash-looping:
/// Docker's own rule (its restart back-off resets once a container has run this long).
const RESTART_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the container is in a crash loop under its restart policy: restarting now, or
/// restarted by the policy (`RestartCount` > 0) less than [`RESTART_SETTLE`] ago and not
/// `healthy`. (The exit code cannot tell: Docker resets it to 0 when the container runs
/// again.)
///
/// Such a container is reported as not running, as it would be without a restart policy,
/// so that the core's early crash detection sees a release that exits at start-up instead
/// of waiting for the health deadline. A container that stays up [`RESTART_SETTLE`] after
/// its last restart, or reports `healthy`, runs again. The time is compared with this
/// machine's clock (the engine's `StartedAt`).
pub(crate) fn is_crash_looping(c: &ContainerInspectResponse) -> bool {
    use bollard::models::HealthStatusEnum;
    let Some(state) = &c.state else { return false };
    if state.restarting == Some(true) {
        return true;
    }
    let restarted = c.restart_count.unwrap_or(0) > 0;
    let healthy = state.health.as_ref().and_then(|h| h.status) == Some(HealthStatusEnum::HEALTHY);
    if !restarted || healthy || state.running != Some(true) {
        return false;
    }
    let started = state
        .started_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
    match started {
        Some(at) => std::time::SystemTime::now()
            .duration_since(at)
            .map_or(true, |up| up < RESTART_SETTLE),
        None => false,
    }
}

/// Ready by Docker's own signal: `healthy` with a healthcheck, else running.
pub(crate) fn is_ready(c: &ContainerInspectResponse) -> bool {
    use bollard::models::HealthStatusEnum;
    let Some(state) = &c.state else { return false };
    if state.running != Some(true) {
        return false;
    }
    match state.health.as_ref().and_then(|h| h.status) {
        None | Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY) => true,
        Some(status) => status == HealthStatusEnum::HEALTHY,
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerState, Health, HealthStatusEnum};

    use super::*;

    fn container(restarts: i64, started: std::time::SystemTime) -> ContainerInspectResponse {
        ContainerInspectResponse {
            restart_count: Some(restarts),
            state: Some(ContainerState {
                running: Some(true),
                restarting: Some(false),
                exit_code: Some(0),
                started_at: Some(humantime::format_rfc3339_nanos(started).to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_container_restarted_after_a_crash_counts_as_crashed_until_it_settles() {
        let now = std::time::SystemTime::now();
        let long_ago = now - std::time::Duration::from_secs(60);
        assert!(is_crash_looping(&container(3, now)));
        assert!(!is_crash_looping(&container(3, long_ago)), "settled");
        assert!(!is_crash_looping(&container(0, now)), "first start");
        let mut restarting = container(1, long_ago);
        restarting.state.as_mut().unwrap().restarting = Some(true);
        assert!(is_crash_looping(&restarting));
        let mut healthy = container(3, now);
        healthy.state.as_mut().unwrap().health = Some(Health {
            status: Some(HealthStatusEnum::HEALTHY),
            ..Default::default()
        });
        assert!(!is_crash_looping(&healthy), "healthy again");
    }
}
