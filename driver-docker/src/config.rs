//! `[driver.docker]`: which engine, and which containers make up the application.

use std::path::PathBuf;
use std::time::Duration;

use cutover_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The Docker driver's settings, as the `[driver.docker]` table of `cutover.toml`.
///
/// ```toml
/// [driver.docker]
/// host = "unix:///var/run/docker.sock"   # default: $DOCKER_HOST, else the local socket
/// compose = { project = "apidog", service = "server" }
/// # or, for containers started by a `docker run` script:
/// # containers = { name = "apidog", label = "cutover.app=apidog" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// The engine, as a `DOCKER_HOST` value (`unix://…`, `tcp://…`). Default: `$DOCKER_HOST`,
    /// else the local socket.
    #[serde(default)]
    pub host: Option<String>,
    /// A Compose service.
    #[serde(default)]
    pub compose: Option<ComposeTarget>,
    /// Plain containers.
    #[serde(default)]
    pub containers: Option<ContainersTarget>,
    /// How long `docker stop` waits before killing, in seconds (default 10).
    #[serde(default)]
    pub stop_timeout_secs: Option<u32>,
}

/// A Compose service, found by the labels Compose puts on its containers.
///
/// ```toml
/// [driver.docker]
/// compose = { file = "/srv/apidog", service = "server" }   # project from the file
/// # compose = { project = "apidog", service = "server" }   # containers only, no file
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeTarget {
    /// `com.docker.compose.project`. Optional when `file` is given: then Compose's own
    /// project name for it — `COMPOSE_PROJECT_NAME` from the environment, else from the
    /// `.env` file, else the file's top-level `name:`, else its directory's name,
    /// lowercased with only `a-z0-9_-` kept (see [`crate::compose`]). `connect` fills it in.
    #[serde(default)]
    pub project: Option<String>,
    /// `com.docker.compose.service`.
    pub service: String,
    /// The compose file, whose service `image:` line `set_image` edits in place (see
    /// [`crate::compose`]), or the project directory holding it (`compose.yaml`,
    /// `compose.yml`, `docker-compose.yaml`, `docker-compose.yml`, the first found). An
    /// image written `repo:${TAG}` gets `TAG` edited in the `.env` file instead. Relative
    /// paths are resolved by [`DockerConfig::resolve_paths`].
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// The env file Compose reads for interpolation and the project name, as
    /// `docker compose --env-file` gives it. Default: `.env` beside the compose file.
    #[serde(default)]
    pub env_file: Option<PathBuf>,
    /// Container names: `v1` (`project_service_1`) or `v2` (`project-service-1`). Default:
    /// as the existing containers are named, else `v2`.
    #[serde(default)]
    pub naming: Option<ComposeNaming>,
}

/// Compose's container naming scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComposeNaming {
    /// docker-compose 1.x: `project_service_1`.
    V1,
    /// Compose v2: `project-service-1`.
    V2,
}

/// Containers started without Compose (a `docker run` script).
///
/// They are the containers named `name` or `name-N`, or, when `label` is set, those
/// carrying that label (`key=value`). New containers are named `name`, `name-2`, `name-3`….
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainersTarget {
    /// The base container name.
    pub name: String,
    /// A `key=value` label selecting the containers instead of their names.
    #[serde(default)]
    pub label: Option<String>,
}

impl DockerConfig {
    /// Settings for plain containers named `name`, `name-2`, … on the default engine.
    pub fn containers(name: impl Into<String>) -> Self {
        Self {
            containers: Some(ContainersTarget {
                name: name.into(),
                label: None,
            }),
            ..Self::default()
        }
    }

    /// Settings for a Compose service on the default engine.
    pub fn compose(project: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            compose: Some(ComposeTarget {
                project: Some(project.into()),
                service: service.into(),
                ..ComposeTarget::default()
            }),
            ..Self::default()
        }
    }

    /// Resolves a relative `compose.file` and `compose.env_file` against `base` (the
    /// config file's directory).
    pub fn resolve_paths(mut self, base: &std::path::Path) -> Self {
        if let Some(c) = &mut self.compose {
            for f in [&mut c.file, &mut c.env_file].into_iter().flatten() {
                if f.is_relative() {
                    *f = base.join(&*f);
                }
            }
        }
        self
    }

    /// The stop timeout.
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.stop_timeout_secs.unwrap_or(10).into())
    }

    /// Checks that exactly one target is given and its names are usable.
    pub fn validate(&self) -> Result<()> {
        match (&self.compose, &self.containers) {
            (Some(_), Some(_)) => Err(Error::invalid(
                "driver.docker: set either `compose` or `containers`, not both",
            )),
            (None, None) => Err(Error::invalid(
                "driver.docker: set `compose = { file, service }`, `compose = { project, service }` or `containers = { name }`",
            )),
            (Some(c), None) => {
                match (&c.project, &c.file) {
                    (Some(p), _) => check_name("driver.docker.compose.project", p)?,
                    (None, Some(_)) => {}
                    (None, None) => {
                        return Err(Error::invalid(
                            "driver.docker.compose: set `project` (the Compose project name), or `file` to take it from the compose file",
                        ));
                    }
                }
                check_name("driver.docker.compose.service", &c.service)
            }
            (None, Some(c)) => {
                check_name("driver.docker.containers.name", &c.name)?;
                match &c.label {
                    Some(l) if !l.contains('=') => Err(Error::invalid(format!(
                        "driver.docker.containers.label = {l:?} is not `key=value`"
                    ))),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn check_name(key: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{key} = {name:?} is not a valid container name"
        )))
    }
}
