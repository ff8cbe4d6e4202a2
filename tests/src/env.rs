//! The env file written by `scripts/testenv up`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What every failure to find the test services tells the reader to do.
pub const UP_HINT: &str = "start the test services with `scripts/testenv up` (as root)";

/// Why the env file could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum EnvError {
    /// The file cannot be read.
    Unreadable {
        /// Where it was looked for.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not `KEY=VALUE`.
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A key the caller needs is absent.
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { path, source } => write!(
                f,
                "cannot read the test environment file {}: {source}; {UP_HINT}",
                path.display()
            ),
            Self::Malformed { path, line } => write!(
                f,
                "{}:{line} is not a KEY=VALUE line; re-create it: {UP_HINT}",
                path.display()
            ),
            Self::MissingKey { path, key } => write!(
                f,
                "{} has no {key}; the services it needs are not up: {UP_HINT}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for EnvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreadable { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Endpoints and credentials of the running test services.
#[derive(Debug, Clone)]
pub struct TestEnv {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

impl TestEnv {
    /// Where the env file is: `$CUTOVER_TESTENV_FILE`, else `$CUTOVER_TESTENV_DIR/env`,
    /// else `/var/tmp/cutover-testenv/env` (the script's default state directory).
    pub fn default_path() -> PathBuf {
        if let Some(file) = std::env::var_os("CUTOVER_TESTENV_FILE") {
            return file.into();
        }
        let dir = std::env::var_os("CUTOVER_TESTENV_DIR")
            .unwrap_or_else(|| "/var/tmp/cutover-testenv".into());
        Path::new(&dir).join("env")
    }

    /// Reads and parses an env file (`KEY=VALUE` lines; blank lines and `#` comments allowed).
    pub fn load_from(path: &Path) -> Result<Self, EnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let mut values = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| EnvError::Malformed {
                path: path.to_owned(),
                line: index + 1,
            })?;
            values.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        Ok(Self {
            path: path.to_owned(),
            values,
        })
    }

    /// The environment of this test process, loaded once.
    ///
    /// # Panics
    /// If the env file cannot be read: the message names `scripts/testenv up`.
    pub fn get() -> &'static TestEnv {
        static ENV: OnceLock<TestEnv> = OnceLock::new();
        ENV.get_or_init(|| Self::load_from(&Self::default_path()).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A value, or an error naming `scripts/testenv up`.
    pub fn var(&self, key: &str) -> Result<&str, EnvError> {
        self.values
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| EnvError::MissingKey {
                path: self.path.clone(),
                key: key.to_owned(),
            })
    }

    /// A value that must be there.
    ///
    /// # Panics
    /// If it is absent, with a message naming `scripts/testenv up`.
    pub fn require(&self, key: &str) -> &str {
        self.var(key).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `127.0.0.1:PORT` of the local registry.
    pub fn registry(&self) -> &str {
        self.require("CUTOVER_TEST_REGISTRY")
    }

    /// The specimen repository in the local registry, without a tag.
    pub fn specimen_image(&self) -> &str {
        self.require("CUTOVER_TEST_SPECIMEN_IMAGE")
    }

    /// The specimen image of one version, e.g. `127.0.0.1:5000/specimen:1.1.0`.
    pub fn specimen_tag(&self, version: &str) -> String {
        format!("{}:{version}", self.specimen_image())
    }

    /// Every specimen version the registry holds.
    pub fn specimen_versions(&self) -> Vec<&str> {
        self.require("CUTOVER_TEST_SPECIMEN_VERSIONS")
            .split(',')
            .collect()
    }

    /// The static specimen binary, for running it as a local process.
    pub fn specimen_bin(&self) -> &Path {
        Path::new(self.require("CUTOVER_TEST_SPECIMEN_BIN"))
    }

    /// `postgres://user:password@127.0.0.1:PORT`, without a database.
    pub fn postgres_url(&self) -> &str {
        self.require("CUTOVER_TEST_PG_URL")
    }

    /// The PostgreSQL server as its bootstrap superuser `postgres` (credentials, no
    /// database).
    pub fn postgres_superuser_url(&self) -> &str {
        self.require("CUTOVER_TEST_PG_SUPERUSER_URL")
    }

    /// `mysql://user:password@127.0.0.1:PORT` (MariaDB), without a database.
    pub fn mysql_url(&self) -> &str {
        self.require("CUTOVER_TEST_MYSQL_URL")
    }

    /// The Docker engine the tests use, as a `DOCKER_HOST` value.
    pub fn docker_host(&self) -> &str {
        self.require("CUTOVER_TEST_DOCKER_HOST")
    }

    /// All keys and values, for tests that need one this type has no accessor for.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// The SSH test hosts `scripts/testenv up` started, in order.
    ///
    /// # Panics
    /// If there are none, with a message naming `scripts/testenv up --ssh-hosts N`.
    pub fn ssh_hosts(&self) -> Vec<SshHost> {
        let count: usize = self
            .require("CUTOVER_TEST_SSH_HOSTS")
            .parse()
            .unwrap_or_else(|_| panic!("CUTOVER_TEST_SSH_HOSTS is not a number; {UP_HINT}"));
        assert!(
            count > 0,
            "no SSH test hosts in {}: run `scripts/testenv up --ssh-hosts 2`",
            self.path.display()
        );
        (1..=count)
            .map(|i| SshHost {
                address: self
                    .require(&format!("CUTOVER_TEST_SSH_{i}_HOST"))
                    .to_owned(),
                port: self
                    .require(&format!("CUTOVER_TEST_SSH_{i}_PORT"))
                    .parse()
                    .unwrap_or_else(|_| panic!("CUTOVER_TEST_SSH_{i}_PORT is not a port")),
                user: self.require("CUTOVER_TEST_SSH_USER").to_owned(),
                key: self.require("CUTOVER_TEST_SSH_KEY").into(),
                known_hosts: self.require("CUTOVER_TEST_SSH_KNOWN_HOSTS").into(),
                docker_host: self
                    .require(&format!("CUTOVER_TEST_SSH_{i}_DOCKER_HOST"))
                    .to_owned(),
            })
            .collect()
    }
}

/// One SSH test host: an sshd on loopback whose sessions see their own Docker engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHost {
    /// IP address to connect to.
    pub address: String,
    /// sshd port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key the host authorizes (mode 0600).
    pub key: PathBuf,
    /// known_hosts file listing every test host's key as `[address]:port`.
    pub known_hosts: PathBuf,
    /// This host's Docker engine, as a `DOCKER_HOST` value on this machine; sessions over
    /// SSH get the same value.
    pub docker_host: String,
}

impl SshHost {
    /// `user@address`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.address)
    }

    /// An `ssh` command for this host with strict host-key checking and no prompts;
    /// append the remote command.
    pub fn ssh_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new("ssh");
        command
            .arg("-i")
            .arg(&self.key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .args(["-o", "ConnectTimeout=10", "-p", &self.port.to_string()])
            .arg(self.destination())
            .stdin(std::process::Stdio::null());
        command
    }
}
