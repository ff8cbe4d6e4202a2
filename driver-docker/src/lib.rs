//! cutover's Docker driver: upgrades an application made of containers on one Docker
//! engine — a Compose service, or plain containers started by a `docker run` script — and
//! rolls it back.
//!
//! ```no_run
//! # async fn demo() -> cutover_core::Result<()> {
//! use cutover_driver_docker::{DockerConfig, connect};
//! let driver = connect(DockerConfig::compose("apidog", "server")).await?;
//! # Ok(()) }
//! ```
//!
//! The `Driver` contract is documented on [`cutover_core::Driver`]; what is Docker-specific
//! is on [`DockerDriver`] and in the modules: where the definition is kept
//! ([`definition`]), how snapshots keep secrets out ([`snapshot`]), and how containers are
//! found and named ([`target`]).

pub mod compose;
mod config;
pub mod definition;
pub mod discover;
mod driver;
mod envfile;
mod error;
mod exec;
mod interpolation;
mod lock;
mod logs;
mod pull;
pub mod snapshot;
mod spec;
pub mod target;

use bollard::Docker;
use cutover_core::Result;

pub use config::{ComposeNaming, ComposeTarget, ContainersTarget, DockerConfig};
pub use driver::DockerDriver;

/// Connects to the engine (`config.host`, else `$DOCKER_HOST`, else the local socket),
/// negotiates the API version (engines from 20.10, API 1.41, on), and checks that it
/// answers. With `compose.file` set, also checks that the service's image in it (or in its
/// `.env` file) can be edited safely (see [`compose`]), so that an upgrade is refused
/// before it starts, and takes the project name from the file when `compose.project` is
/// not set. Without `compose.file`, when Compose's labels on the instances name a readable
/// compose file with the service's `image:` line, the driver's first `observe` logs a
/// `tracing` warning (and `pull` repeats it as the run's warning event): a later
/// `docker-compose up` would start that file's image on the migrated schema.
pub async fn connect(config: DockerConfig) -> Result<DockerDriver> {
    config.validate()?;
    let host = config
        .host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
    let docker =
        Docker::connect_with_host(&host).map_err(|e| error::docker("connect", &host, e))?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| error::docker("connect", &host, e))?;
    let mut config = config;
    let compose_file = match &mut config.compose {
        Some(c) => compose::open(c)?,
        None => None,
    };
    Ok(DockerDriver {
        compose_file,
        docker,
        selector: target::Selector::from_config(&config),
        config,
        host,
        unmanaged_checked: Default::default(),
    })
}
