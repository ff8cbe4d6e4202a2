//! The Docker engine of the test environment, driven through the `docker` CLI: it
//! negotiates the API version with Debian's older engine by itself, and it is what an
//! operator would type, which keeps failures easy to reproduce by hand.

use std::process::{Command, Output};

use crate::env::{TestEnv, UP_HINT};
use crate::names::unique_name;

/// A `docker` command aimed at the test environment's engine.
pub fn docker_command() -> Command {
    let mut command = Command::new("docker");
    command.env("DOCKER_HOST", TestEnv::get().docker_host());
    command
}

/// Whether a container's configured image (`.Config.Image`, a pod's image) is `want`, as
/// written or pinned to a digest (`want@sha256:…`, what cutover's upgrades write).
pub fn is_image(configured: &str, want: &str) -> bool {
    configured == want
        || configured
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with("@sha256:"))
}

/// Runs `docker ARGS…` and returns its stdout, trimmed.
///
/// # Panics
/// If docker cannot be run or exits non-zero; the message carries its stderr and, when
/// the engine does not answer, names `scripts/testenv up`.
pub fn docker(args: &[&str]) -> String {
    let output = docker_command()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker: {e}; {UP_HINT}"));
    checked(args, output)
}

pub(crate) fn checked(args: &[&str], output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let hint = if stderr.contains("Cannot connect to the Docker daemon") {
            format!("; {UP_HINT}")
        } else {
            String::new()
        };
        panic!(
            "docker {} failed ({}): {}{hint}",
            args.join(" "),
            output.status,
            stderr.trim()
        );
    }
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A named Docker volume, removed on drop.
#[derive(Debug)]
pub struct DockerVolume {
    name: String,
}

impl DockerVolume {
    /// Creates a uniquely named volume.
    pub fn create() -> Self {
        let name = unique_name("ctvol");
        docker(&["volume", "create", "--label", "cutover-test=1", &name]);
        Self { name }
    }

    /// Its name, for `-v NAME:/path`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for DockerVolume {
    fn drop(&mut self) {
        let _ = docker_command()
            .args(["volume", "rm", "-f", &self.name])
            .output();
    }
}
