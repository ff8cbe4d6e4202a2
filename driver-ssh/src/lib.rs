//! cutover's SSH driver: upgrades an application that runs on several Docker hosts — each
//! started by a `docker run` script, behind a load balancer, no orchestrator — and rolls
//! the whole fleet back together.
//!
//! ```no_run
//! # async fn demo() -> cutover_core::Result<()> {
//! use cutover_driver_docker::DockerConfig;
//! use cutover_driver_ssh::{HostConfig, SshConfig, connect};
//! let host = |name: &str, address: &str| HostConfig {
//!     name: name.into(),
//!     address: address.into(),
//!     port: None,
//!     user: Some("deploy".into()),
//!     key: None,
//!     known_hosts: None,
//!     jump: None,
//!     docker_socket: None,
//!     replicas: None,
//! };
//! let config = SshConfig::new(
//!     vec![host("app1", "10.0.0.11"), host("app2", "10.0.0.12")],
//!     DockerConfig::containers("apidog"),
//! );
//! let driver = connect(config).await?;
//! driver.close().await;
//! # Ok(()) }
//! ```
//!
//! Each host is reached with the system's OpenSSH client (through the `openssh` crate and
//! its multiplexing master); the host's Docker socket is forwarded to a local Unix socket
//! and driven by `cutover-driver-docker`, so container handling — definitions, kept
//! instances, snapshots without secrets, the lock container — exists once. What the fleet
//! adds is on [`SshDriver`]: the leader, per-host shares of `scale`, parallel fleet-wide
//! operations and errors that name every host's state.
//!
//! Host keys are checked strictly unless the configuration says `accept-new`; every host
//! field is validated before any connection ([`SshConfig`]); remote commands are argument
//! vectors quoted by the crate, never shell text built from values.

mod config;
mod driver;
mod error;
mod link;

use cutover_core::Result;

pub use config::{DEFAULT_DOCKER_SOCKET, HostConfig, HostKeyChecking, SshConfig};
pub use driver::SshDriver;

/// Validates `config`, then connects to every host in parallel (SSH with the configured
/// host-key checking, the Docker socket forwarded, the engine's API version negotiated).
///
/// Fails before anything changes when a field is invalid, a host key is not the one
/// known_hosts lists, or a host cannot be reached; the error names each such host.
pub async fn connect(config: SshConfig) -> Result<SshDriver> {
    let driver = SshDriver::new(&config)?;
    if let Err(e) = driver.check_all().await {
        driver.close().await;
        return Err(e);
    }
    Ok(driver)
}
