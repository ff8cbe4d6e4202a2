//! Running the specimen: as a local process of the static binary (fast; for database
//! behaviour) or as a container of its image (for what Docker adds: health status,
//! volumes, exit codes as the engine reports them).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::database::ScratchDatabase;
use crate::docker::{DockerVolume, docker, docker_command};
use crate::env::{TestEnv, UP_HINT};
use crate::http::SpecimenClient;
use crate::names::{free_port, unique_name};

const POLL: Duration = Duration::from_millis(100);

/// The specimen binary running as a child process on a free loopback port, with its own
/// storage directory; killed on drop.
#[derive(Debug)]
pub struct SpecimenProcess {
    child: tokio::process::Child,
    port: u16,
    version: String,
    dir: tempfile::TempDir,
}

impl SpecimenProcess {
    /// Starts `version` (e.g. `1.1.0-broken`) against `db`; `extra` adds or overrides
    /// environment variables such as `SPECIMEN_MIGRATION_SECONDS`.
    ///
    /// # Panics
    /// If the binary recorded by `scripts/testenv up` cannot be started.
    pub fn start(version: &str, db: &ScratchDatabase, extra: &[(&str, &str)]) -> Self {
        let bin = TestEnv::get().specimen_bin();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = std::fs::File::create(dir.path().join("specimen.log")).expect("a log file");
        let port = free_port();
        let mut command = tokio::process::Command::new(bin);
        command
            .env_clear()
            .env("SPECIMEN_VERSION", version)
            .env("PORT", port.to_string())
            .env("BIND_ADDRESS", "127.0.0.1")
            .env("STORAGE_DIR", dir.path().join("storage"))
            .envs(db.app_env())
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second log handle"))
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start the specimen binary {}: {e}; {UP_HINT}",
                bin.display()
            )
        });
        Self {
            child,
            port,
            version: version.to_owned(),
            dir,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client of its API.
    pub fn client(&self) -> SpecimenClient {
        SpecimenClient::new(format!("http://127.0.0.1:{}", self.port))
    }

    /// Its `STORAGE_DIR`.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Everything it printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("specimen.log")).unwrap_or_default()
    }

    /// Waits until `/health` answers 200.
    ///
    /// # Panics
    /// If the process exits first or `timeout` passes; the message carries its log.
    pub async fn wait_healthy(&mut self, timeout: Duration) {
        let client = self.client();
        let deadline = Instant::now() + timeout;
        loop {
            if client.health().await == Some(200) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "specimen {} exited with {status} before it was healthy:\n{}",
                    self.version,
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "specimen {} not healthy after {timeout:?}:\n{}",
                self.version,
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the process to exit and returns its exit code.
    ///
    /// # Panics
    /// If it still runs after `timeout`, or was ended by a signal.
    pub async fn wait_exit(&mut self, timeout: Duration) -> i32 {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status
                .code()
                .unwrap_or_else(|| panic!("specimen {} ended by {status}", self.version)),
            Ok(Err(e)) => panic!("waiting for specimen {}: {e}", self.version),
            Err(_) => panic!(
                "specimen {} still runs after {timeout:?}:\n{}",
                self.version,
                self.logs()
            ),
        }
    }

    /// Stops it with SIGTERM, as `docker stop` would, and returns the exit code.
    pub async fn stop(mut self) -> i32 {
        if let Some(pid) = self.child.id() {
            // std has no portable SIGTERM and this crate forbids unsafe (libc::kill).
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        self.wait_exit(Duration::from_secs(10)).await
    }
}

/// A specimen container from the local registry's images, on the host network (the test
/// databases listen on loopback only), removed on drop.
#[derive(Debug)]
pub struct SpecimenContainer {
    name: String,
    port: u16,
    image: String,
}

impl SpecimenContainer {
    /// Runs the image of `version` against `db`, with `volume` mounted at the image's
    /// `STORAGE_DIR` (`/data/storage`) if given. Secrets reach the container through the
    /// docker client's environment (`-e KEY`), never its argv.
    pub fn run(
        version: &str,
        db: &ScratchDatabase,
        volume: Option<&DockerVolume>,
        extra: &[(&str, &str)],
    ) -> Self {
        let image = TestEnv::get().specimen_tag(version);
        let name = unique_name("ctspecimen");
        let port = free_port();
        let mut command = docker_command();
        command.args(["run", "-d", "--name", &name, "--label", "cutover-test=1"]);
        command.args(["--network", "host"]);
        command.args([
            "-e",
            &format!("PORT={port}"),
            "-e",
            "BIND_ADDRESS=127.0.0.1",
        ]);
        if let Some(volume) = volume {
            command.args(["-v", &format!("{}:/data/storage", volume.name())]);
        }
        let env: Vec<(String, String)> = db
            .app_env()
            .into_iter()
            .chain(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .collect();
        for (key, value) in &env {
            command.args(["-e", key]).env(key, value);
        }
        command.arg(&image);
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker: {e}; {UP_HINT}"));
        crate::docker::checked(&["run", &image], output);
        Self { name, port, image }
    }

    /// The container name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The image it runs.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The port it listens on (host network).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client of its API.
    pub fn client(&self) -> SpecimenClient {
        SpecimenClient::new(format!("http://127.0.0.1:{}", self.port))
    }

    /// `docker logs`, stdout and stderr.
    pub fn logs(&self) -> String {
        let output = docker_command()
            .args(["logs", &self.name])
            .output()
            .expect("running docker logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.name])
    }

    /// Docker's health status: `starting`, `healthy` or `unhealthy`.
    pub fn health_status(&self) -> String {
        self.inspect("{{if .State.Health}}{{.State.Health.Status}}{{end}}")
    }

    /// Waits until Docker's own health check reports `want` (`healthy` or `unhealthy`).
    ///
    /// # Panics
    /// If the container stops first or `timeout` passes.
    pub async fn wait_health(&self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.health_status();
            if status == want {
                return;
            }
            let state = self.inspect("{{.State.Status}}");
            assert!(
                state == "running",
                "container {} ({}) is {state} while waiting for {want}:\n{}",
                self.name,
                self.image,
                self.logs()
            );
            assert!(
                Instant::now() < deadline,
                "container {} ({}) health is {status}, not {want}, after {timeout:?}:\n{}",
                self.name,
                self.image,
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the container has exited and returns its exit code.
    pub async fn wait_exit(&self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if self.inspect("{{.State.Status}}") == "exited" {
                let code = self.inspect("{{.State.ExitCode}}");
                return code.parse().expect("an integer exit code");
            }
            assert!(
                Instant::now() < deadline,
                "container {} still runs after {timeout:?}:\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Removes the container (and its anonymous volumes), keeping named ones.
    pub fn remove(self) {
        drop(self);
    }
}

impl Drop for SpecimenContainer {
    fn drop(&mut self) {
        let _ = docker_command()
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}
