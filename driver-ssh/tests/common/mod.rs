//! A real fleet of the specimen for the SSH driver's tests: on each SSH test host, N
//! containers named `<base>`, `<base>-2`, … of one version, all on one scratch MariaDB
//! database; and sshd processes a test owns (to stop one, or to watch what the remote
//! shell receives) in front of a test host's Docker engine.
//!
//! The hosts' engines run without a bridge, and the specimen's replicas would fight over
//! one port on the host network, so the containers have no network (`--network none`) and
//! reach MariaDB through its Unix socket, mounted from this machine (every test host's
//! engine runs here), with the password in `DATABASE_URL`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cutover_core::testkit::Fixture;
use cutover_core::testkit::conformance::ArchiveSpot;
use cutover_core::{ExecTarget, ImageRef};
use cutover_driver_docker::DockerConfig;
use cutover_driver_ssh::{HostConfig, SshConfig, SshDriver, connect};
use cutover_tests::{Engine, ScratchDatabase, SshHost, TestEnv, free_port, unique_name};

pub fn image(version: &str) -> ImageRef {
    TestEnv::get().specimen_tag(version).parse().unwrap()
}

/// The SSH test hosts of `scripts/testenv up --ssh-hosts 3`.
pub fn test_hosts() -> Vec<SshHost> {
    let hosts = TestEnv::get().ssh_hosts();
    assert!(
        hosts.len() >= 3,
        "the SSH driver's tests need 3 SSH test hosts, the env file lists {}: run \
         `scripts/testenv up --ssh-hosts 3`",
        hosts.len()
    );
    hosts
}

/// Runs `docker ARGS…` against a test host's engine (directly, not over SSH: this is the
/// test's own view) and returns its trimmed stdout.
pub fn host_docker(host: &SshHost, args: &[&str]) -> String {
    let out = host_docker_command(host)
        .args(args)
        .output()
        .expect("running docker");
    assert!(
        out.status.success(),
        "docker {} on {}: {}",
        args.join(" "),
        host.docker_host,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn host_docker_command(host: &SshHost) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", &host.docker_host);
    c
}

/// The host's configuration for the driver, named `name`.
pub fn host_config(name: &str, host: &SshHost) -> HostConfig {
    HostConfig {
        name: name.into(),
        address: host.address.clone(),
        port: Some(host.port),
        user: Some(host.user.clone()),
        key: Some(host.key.clone()),
        known_hosts: Some(host.known_hosts.clone()),
        jump: None,
        docker_socket: Some(host.docker_host.trim_start_matches("unix://").to_string()),
        replicas: None,
    }
}

/// A specimen fleet: `per_host` containers of one version on each host.
pub struct Fleet {
    pub base: String,
    pub db: ScratchDatabase,
    pub hosts: Vec<SshHost>,
    pub config: SshConfig,
    pub driver: SshDriver,
    pub password: String,
    pub per_host: u32,
}

impl Fleet {
    /// On the first three test hosts, named `h1`, `h2`, `h3`; `h1` leads.
    pub async fn start(version: &str, per_host: u32, extra: &[(&str, &str)]) -> Self {
        let hosts: Vec<SshHost> = test_hosts().into_iter().take(3).collect();
        Self::start_on(hosts, version, per_host, extra).await
    }

    /// On the first three test hosts, containers that never reach their database: they
    /// run, waiting for it, and never migrate or become healthy. For driver primitives that
    /// switch versions without restoring data (the conformance suite): with a database, an
    /// old release brought back onto a newer schema exits 4 and crash-loops, which the
    /// Docker driver rightly reports as not running.
    pub async fn start_without_database(version: &str, per_host: u32) -> Self {
        let hosts: Vec<SshHost> = test_hosts().into_iter().take(3).collect();
        let wait = [("SPECIMEN_DATABASE_WAIT_SECONDS", "86400")];
        Self::start_with(hosts, version, per_host, &wait, false).await
    }

    /// On `hosts`, named `h1`, `h2`, …; `h1` leads.
    pub async fn start_on(
        hosts: Vec<SshHost>,
        version: &str,
        per_host: u32,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::start_with(hosts, version, per_host, extra, true).await
    }

    async fn start_with(
        hosts: Vec<SshHost>,
        version: &str,
        per_host: u32,
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
        let base = unique_name("ctss").replace('_', "-");
        for host in &hosts {
            host_docker(host, &["pull", "-q", &image(version).to_string()]);
            for slot in 1..=per_host {
                let name = if slot == 1 {
                    base.clone()
                } else {
                    format!("{base}-{slot}")
                };
                let mut command = host_docker_command(host);
                command.args(["run", "-d", "--name", &name, "--network", "none"]);
                command.args(["--label", "cutover-test=1", "--restart", "unless-stopped"]);
                command.args(["-v", "/run/mysqld:/run/mysqld", "-e", "DATABASE_URL"]);
                command.env("DATABASE_URL", &url);
                for (k, v) in extra {
                    command.args(["-e", &format!("{k}={v}")]);
                }
                command.arg(image(version).to_string());
                let out = command.output().expect("docker run");
                assert!(
                    out.status.success(),
                    "docker run on {}: {}",
                    host.docker_host,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let config = SshConfig::new(
            hosts
                .iter()
                .enumerate()
                .map(|(i, h)| host_config(&format!("h{}", i + 1), h))
                .collect(),
            DockerConfig {
                // Waiting for its database, the specimen does not handle SIGTERM yet.
                stop_timeout_secs: (!database).then_some(1),
                ..DockerConfig::containers(&base)
            },
        );
        let driver = connect(config.clone())
            .await
            .unwrap_or_else(|e| panic!("connecting the fleet: {}", e.report()));
        Fleet {
            base,
            db,
            hosts,
            config,
            driver,
            password: password.to_string(),
            per_host,
        }
    }

    /// A directory on the leader host for the conformance suite's archive case. The test
    /// hosts' sshd run on this machine, so it is a local path, removed on drop.
    pub fn archive_dir(&self) -> String {
        format!("/tmp/{}-archive", self.base)
    }

    /// The conformance fixture: exec runs `echo` on the leader host itself, over SSH, and
    /// so do archive and unarchive.
    pub fn fixture(&self) -> Fixture {
        Fixture {
            old: image("1.0.0"),
            new: image("1.1.0"),
            missing: image("0.0.0-missing"),
            replicas: self.per_host * self.hosts.len() as u32,
            exec_at: ExecTarget::Host("h1".into()),
            echo: vec!["echo".into(), "conformance".into()],
            archive: ArchiveSpot::Dir {
                at: ExecTarget::Host("h1".into()),
                path: self.archive_dir(),
                stale_entries_survive: None,
            },
        }
    }

    /// Every container of this fleet on host `i`, kept and helper ones included.
    pub fn containers_on(&self, i: usize) -> Vec<String> {
        let out = host_docker(
            &self.hosts[i],
            &[
                "ps",
                "-a",
                "--format",
                "{{.Names}}",
                "--filter",
                &format!("name={}", self.base),
            ],
        );
        out.lines().map(str::to_string).collect()
    }

    /// `docker inspect` of every instance on every host, without what differs between two
    /// containers of the same configuration (ids, timestamps, state details).
    pub fn inspect_all(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (i, host) in self.hosts.iter().enumerate() {
            for name in self.containers_on(i) {
                if name.contains("cutover") {
                    continue;
                }
                let format = "{{json .Config.Image}} {{json .Config.Env}} {{json .Config.Cmd}} \
                              {{json .Config.Entrypoint}} {{json .Config.Labels}} \
                              {{json .Config.Healthcheck}} {{json .HostConfig}} {{json .Mounts}} \
                              {{.State.Running}}";
                out.insert(
                    format!("h{}/{name}", i + 1),
                    host_docker(host, &["inspect", "--format", format, &name]),
                );
            }
        }
        out
    }

    /// Container ids and names on every host: what "nothing changed" compares.
    pub fn container_ids(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let ids = host_docker(
                host,
                &[
                    "ps",
                    "-a",
                    "--no-trunc",
                    "--format",
                    "{{.ID}} {{.Names}}",
                    "--filter",
                    &format!("name={}", self.base),
                ],
            );
            out.extend(ids.lines().map(|l| format!("h{}: {l}", i + 1)));
        }
        out.sort();
        out
    }

    /// Running instance containers on host `i`, whatever their image.
    pub fn running_on(&self, i: usize) -> Vec<String> {
        self.containers_on(i)
            .into_iter()
            .filter(|n| !n.contains("cutover"))
            .filter(|n| {
                host_docker(
                    &self.hosts[i],
                    &["inspect", "--format", "{{.State.Running}}", n],
                ) == "true"
            })
            .collect()
    }

    /// Healthy instance containers of `version` on host `i`.
    pub fn healthy_on(&self, i: usize, version: &str) -> Vec<String> {
        let want = image(version).to_string();
        self.containers_on(i)
            .into_iter()
            .filter(|n| !n.contains("cutover"))
            .filter(|n| {
                let s = host_docker(
                    &self.hosts[i],
                    &[
                        "inspect",
                        "--format",
                        "{{.Config.Image}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                        n,
                    ],
                );
                s.strip_suffix(" healthy")
                    .is_some_and(|configured| cutover_tests::is_image(configured, &want))
            })
            .collect()
    }

    /// Waits until every host has `per_host` healthy containers of `version`.
    pub async fn wait_healthy(&self, version: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let counts: Vec<usize> = (0..self.hosts.len())
                .map(|i| self.healthy_on(i, version).len())
                .collect();
            if counts.iter().all(|&c| c >= self.per_host as usize) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "healthy on {version} per host after {timeout:?}: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Never panics: a host's engine may be gone (a failed test, a stopped test host).
        let _ = std::fs::remove_dir_all(self.archive_dir());
        for host in &self.hosts {
            let Ok(out) = host_docker_command(host)
                .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
                .arg(format!("name={}", self.base))
                .output()
            else {
                continue;
            };
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = host_docker_command(host)
                    .args(["rm", "-f", "-v", name])
                    .output();
            }
        }
    }
}

/// An sshd this test starts and owns, in front of the Docker engine of `host`, with its own
/// host key and known_hosts file. Stopped (with every connection it serves) on drop.
#[derive(Debug)]
pub struct OwnSshd {
    pub host: SshHost,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
}

impl OwnSshd {
    /// Starts it; `extra` lines are appended to its sshd_config.
    pub fn start(behind: &SshHost, extra: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("ctsshd").tempdir().unwrap();
        let key = dir.path().join("host_key");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(status.success(), "ssh-keygen");
        let port = free_port();
        let authorized = behind.key.with_file_name("authorized_keys");
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\n\
                 AuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nAllowTcpForwarding yes\nAllowStreamLocalForwarding yes\n\
                 SetEnv DOCKER_HOST={}\n{extra}\n",
                key.display(),
                authorized.display(),
                behind.docker_host
            ),
        )
        .unwrap();
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let fields: Vec<&str> = public.split_whitespace().take(2).collect();
        let known = dir.path().join("known_hosts");
        std::fs::write(&known, format!("[127.0.0.1]:{port} {}\n", fields.join(" "))).unwrap();
        let host = SshHost {
            address: "127.0.0.1".into(),
            port,
            known_hosts: known,
            ..behind.clone()
        };
        let mut sshd = OwnSshd {
            host,
            dir,
            config,
            child: None,
        };
        sshd.run();
        sshd
    }

    /// Starts the daemon (again, on the same port and key) and waits until it listens.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("sshd.log")).unwrap())
            .spawn()
            .expect("starting /usr/sbin/sshd (is openssh-server installed? scripts/testenv up)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.host.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "own sshd did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the daemon and every connection it serves (their processes are its
    /// descendants), as when a host's sshd goes away.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let mut pids = descendants(child.id());
        pids.push(child.id());
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for OwnSshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every process below `pid`, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parents.entry(ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &c in parents.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

impl std::ops::Deref for Fleet {
    type Target = SshDriver;
    fn deref(&self) -> &SshDriver {
        &self.driver
    }
}
