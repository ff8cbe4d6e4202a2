//! A real deployment of the specimen for the Docker driver's tests: N containers named
//! `<base>`, `<base>-2`, … on one scratch MariaDB database, removed on drop.
//!
//! The containers have no network (`--network none`): N replicas on the host network would
//! fight over one port, and the test databases listen on loopback only. They reach MariaDB
//! through its Unix socket, mounted from the host, with the password in `DATABASE_URL`.

#![allow(dead_code)]

use std::ops::Deref;
use std::time::{Duration, Instant};

use cutover_core::testkit::Fixture;
use cutover_core::testkit::conformance::ArchiveSpot;
use cutover_core::{ExecTarget, ImageRef};
use cutover_driver_docker::{DockerConfig, DockerDriver, connect};
use cutover_tests::{
    Engine, ScratchDatabase, TestEnv, docker, docker_command, is_image, unique_name,
};

/// An empty directory in the toolbox container, for the conformance suite's archive case.
pub const TOOLBOX_ARCHIVE_DIR: &str = "/conformance-archive";

/// A specimen deployment on the test engine.
pub struct Deployment {
    pub base: String,
    pub db: ScratchDatabase,
    pub driver: DockerDriver,
    pub password: String,
    pub toolbox: String,
}

pub fn image(version: &str) -> ImageRef {
    TestEnv::get().specimen_tag(version).parse().unwrap()
}

impl Deployment {
    /// `replicas` containers of `version`, with `extra` environment.
    pub async fn start(version: &str, replicas: u32, extra: &[(&str, &str)]) -> Self {
        Self::start_on(&image(version), replicas, extra, true).await
    }

    /// `replicas` containers of `image` (a specimen image under another name).
    pub async fn start_image(image: &ImageRef, replicas: u32) -> Self {
        Self::start_on(image, replicas, &[], true).await
    }

    /// `replicas` containers of `version` that never reach their database: they run,
    /// waiting for it, and never migrate or become healthy. For driver primitives that
    /// switch versions without restoring data (the conformance suite): with a database, an
    /// old release brought back onto a newer schema exits 4 and crash-loops, which the
    /// driver rightly reports as not running.
    pub async fn start_without_database(version: &str, replicas: u32) -> Self {
        Self::start_on(
            &image(version),
            replicas,
            &[("SPECIMEN_DATABASE_WAIT_SECONDS", "86400")],
            false,
        )
        .await
    }

    async fn start_on(
        image: &ImageRef,
        replicas: u32,
        extra: &[(&str, &str)],
        database: bool,
    ) -> Self {
        let env = TestEnv::get();
        let db = ScratchDatabase::create(Engine::MariaDb).await;
        let server = env.mysql_url().trim_start_matches("mysql://");
        let (user_info, _) = server.rsplit_once('@').unwrap();
        let (user, password) = user_info.split_once(':').unwrap();
        let socket = if database {
            "/run/mysqld/mysqld.sock"
        } else {
            "/run/mysqld/no-such-server.sock"
        };
        let url = format!(
            "mysql://{user}:{password}@localhost/{}?socket={socket}",
            db.name()
        );
        let base = unique_name("ctdd").replace('_', "-");
        let mut deployment = Deployment {
            driver: connect(DockerConfig {
                host: Some(env.docker_host().to_string()),
                // Waiting for its database, the specimen does not handle SIGTERM yet.
                stop_timeout_secs: (!database).then_some(1),
                ..DockerConfig::containers(&base)
            })
            .await
            .expect("connecting to the test engine"),
            toolbox: format!("{base}-toolbox"),
            base,
            db,
            password: password.to_string(),
        };
        docker(&["pull", "-q", &image.to_string()]);
        for slot in 1..=replicas {
            let name = if slot == 1 {
                deployment.base.clone()
            } else {
                format!("{}-{slot}", deployment.base)
            };
            let mut command = docker_command();
            command.args(["run", "-d", "--name", &name, "--network", "none"]);
            command.args(["--label", "cutover-test=1", "--restart", "unless-stopped"]);
            command.args(["-v", "/run/mysqld:/run/mysqld", "-e", "DATABASE_URL"]);
            command.env("DATABASE_URL", &url);
            for (k, v) in extra {
                command.args(["-e", &format!("{k}={v}")]);
            }
            command.arg(image.to_string());
            let out = command.output().expect("docker run");
            assert!(
                out.status.success(),
                "docker run: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        deployment.start_toolbox(image);
        deployment
    }

    /// A container with the host's coreutils mounted, for exec and archive tests (the
    /// specimen image has no shell and no echo).
    fn start_toolbox(&mut self, image: &ImageRef) {
        docker(&[
            "run",
            "-d",
            "--name",
            &self.toolbox,
            "--network",
            "none",
            "--label",
            "cutover-test=1",
            "-v",
            "/usr:/usr:ro",
            "-v",
            "/lib:/lib:ro",
            "-v",
            "/lib64:/lib64:ro",
            "--entrypoint",
            "/usr/bin/sleep",
            &image.to_string(),
            "infinity",
        ]);
        docker(&[
            "exec",
            &self.toolbox,
            "/usr/bin/mkdir",
            "-p",
            TOOLBOX_ARCHIVE_DIR,
        ]);
    }

    pub fn fixture(&self, replicas: u32) -> Fixture {
        Fixture {
            old: image("1.0.0"),
            new: image("1.1.0"),
            missing: image("0.0.0-missing"),
            replicas,
            exec_at: ExecTarget::Named(self.toolbox.clone()),
            echo: vec!["/usr/bin/echo".into(), "conformance".into()],
            archive: ArchiveSpot::Dir {
                at: ExecTarget::Named(self.toolbox.clone()),
                path: TOOLBOX_ARCHIVE_DIR.into(),
                stale_entries_survive: Some(
                    "Docker's archive API only adds and overwrites, and a stopped instance \
                     has no process to delete with (docs/architecture.md, Docker driver)",
                ),
            },
        }
    }

    /// Every container of this deployment, kept and helper ones included.
    pub fn all_containers(&self) -> Vec<String> {
        let out = docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("name={}", self.base),
        ]);
        out.lines().map(str::to_string).collect()
    }

    /// Waits until `n` containers of `version` report healthy.
    pub async fn wait_healthy(&self, version: &str, n: usize, timeout: Duration) {
        self.wait_healthy_image(&image(version), n, timeout).await
    }

    /// Waits until `n` containers of `image` (as written or pinned) report healthy.
    pub async fn wait_healthy_image(&self, image: &ImageRef, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let healthy = self.healthy_of_image(image);
            if healthy.len() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {healthy:?} healthy on {image} after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Names of healthy instance containers running `version`.
    pub fn healthy_of(&self, version: &str) -> Vec<String> {
        self.healthy_of_image(&image(version))
    }

    /// Names of healthy instance containers of `image`, as written or pinned.
    pub fn healthy_of_image(&self, image: &ImageRef) -> Vec<String> {
        let want = image.to_string();
        self.all_containers()
            .into_iter()
            .filter(|n| !n.contains("cutover") && *n != self.toolbox)
            .filter(|n| {
                let s = docker(&[
                    "inspect",
                    "--format",
                    "{{.Config.Image}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                    n,
                ]);
                s.strip_suffix(" healthy")
                    .is_some_and(|configured| is_image(configured, &want))
            })
            .collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for name in self.all_containers() {
            let _ = docker_command().args(["rm", "-f", "-v", &name]).output();
        }
    }
}

impl Deref for Deployment {
    type Target = DockerDriver;
    fn deref(&self) -> &DockerDriver {
        &self.driver
    }
}
