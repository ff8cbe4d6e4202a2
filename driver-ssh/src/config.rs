//! `[driver.ssh]`: the hosts of the fleet, how to reach them, and which containers on each
//! host make up the application.
//!
//! Every field that ends up on a command line (addresses, users, ports, key and
//! known_hosts paths, the jump host, the remote Docker socket) is checked against a
//! conservative character set before any connection is made, so no value from the
//! configuration can carry shell syntax to the local `ssh` or to a remote shell.

use std::path::{Path, PathBuf};

use cutover_core::{Error, Result};
use cutover_driver_docker::DockerConfig;
use serde::{Deserialize, Serialize};

/// The SSH driver's settings, as the `[driver.ssh]` table of `cutover.toml`.
///
/// ```toml
/// [driver.ssh]
/// user = "deploy"                          # default for every host
/// key = "/home/deploy/.ssh/id_ed25519"     # default for every host
/// known_hosts = "/home/deploy/.ssh/known_hosts"
/// leader = "app1"                          # default: the first host
/// docker = { containers = { name = "apidog" } }
///
/// [[driver.ssh.hosts]]
/// name = "app1"
/// address = "10.0.0.11"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// The hosts, in order; the first is the leader unless `leader` names another.
    pub hosts: Vec<HostConfig>,
    /// The host whose instance runs the migrations alone (`scale(1)`) and holds the lock.
    #[serde(default)]
    pub leader: Option<String>,
    /// Default login user for hosts that set none (default: the local ssh default).
    #[serde(default)]
    pub user: Option<String>,
    /// Default private key for hosts that set none.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Default known_hosts file for hosts that set none (default: ssh's own,
    /// `~/.ssh/known_hosts`).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// What to do with a host key that known_hosts does not list. Default `strict`.
    #[serde(default)]
    pub host_key_checking: HostKeyChecking,
    /// Default jump host (`[user@]host[:port]`) for hosts that set none.
    #[serde(default)]
    pub jump: Option<String>,
    /// The Docker socket on every host that sets none. Default `/var/run/docker.sock`.
    #[serde(default)]
    pub docker_socket: Option<String>,
    /// Instances per host in the full fleet, for hosts that set none. Default 1.
    #[serde(default)]
    pub replicas_per_host: Option<u32>,
    /// How many hosts are worked on at once. Default 8.
    #[serde(default)]
    pub parallel: Option<usize>,
    /// Seconds to wait for an SSH connection. Default 10.
    #[serde(default)]
    pub connect_timeout_secs: Option<u64>,
    /// Which containers make up the application on every host (as `[driver.docker]`,
    /// without `host`: the driver connects each host's engine through SSH).
    pub docker: DockerConfig,
}

/// One Docker host of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// A short name used in instance ids (`<name>/<container>`), errors and
    /// `ExecTarget::Host`.
    pub name: String,
    /// Host name or IP address to connect to.
    pub address: String,
    /// sshd port. Default 22.
    #[serde(default)]
    pub port: Option<u16>,
    /// Login user (default: `[driver.ssh] user`).
    #[serde(default)]
    pub user: Option<String>,
    /// Private key (default: `[driver.ssh] key`).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// known_hosts file (default: `[driver.ssh] known_hosts`).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Jump host `[user@]host[:port]` (default: `[driver.ssh] jump`).
    #[serde(default)]
    pub jump: Option<String>,
    /// The Docker socket on this host (default: `[driver.ssh] docker_socket`).
    #[serde(default)]
    pub docker_socket: Option<String>,
    /// Instances on this host in the full fleet (default: `replicas_per_host`).
    #[serde(default)]
    pub replicas: Option<u32>,
}

/// ssh's `StrictHostKeyChecking`, limited to the two safe choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyChecking {
    /// A host whose key known_hosts does not list, or lists differently, is refused.
    #[default]
    Strict,
    /// A host known_hosts does not list yet is added on first connection; a changed key
    /// is still refused.
    AcceptNew,
}

/// A host with every default applied, as the driver uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: Option<String>,
    pub key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub jump: Option<String>,
    pub docker_socket: String,
    pub replicas: u32,
}

impl Host {
    /// `name (user@address:port)`, for messages.
    pub fn describe(&self) -> String {
        match &self.user {
            Some(u) => format!("{} ({u}@{}:{})", self.name, self.address, self.port),
            None => format!("{} ({}:{})", self.name, self.address, self.port),
        }
    }
}

/// The default remote Docker socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

impl SshConfig {
    /// A fleet of `hosts` running the containers `docker` selects.
    pub fn new(hosts: Vec<HostConfig>, docker: DockerConfig) -> Self {
        Self {
            hosts,
            leader: None,
            user: None,
            key: None,
            known_hosts: None,
            host_key_checking: HostKeyChecking::Strict,
            jump: None,
            docker_socket: None,
            replicas_per_host: None,
            parallel: None,
            connect_timeout_secs: None,
            docker,
        }
    }

    /// Makes relative key and known_hosts paths relative to `base` (the config file's
    /// directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        };
        fix(&mut self.key);
        fix(&mut self.known_hosts);
        for h in &mut self.hosts {
            fix(&mut h.key);
            fix(&mut h.known_hosts);
        }
    }

    /// How many hosts are worked on at once.
    pub fn parallel(&self) -> usize {
        self.parallel.unwrap_or(8).max(1)
    }

    /// Checks every field and applies the defaults, naming the key that is wrong.
    pub(crate) fn validate(&self) -> Result<Vec<Host>> {
        if self.hosts.is_empty() {
            return Err(Error::invalid(
                "driver.ssh.hosts is empty: list at least one host ([[driver.ssh.hosts]] name, address)",
            ));
        }
        if self.docker.host.is_some() {
            return Err(Error::invalid(
                "driver.ssh.docker.host must not be set: the driver reaches each host's engine \
                 through SSH (set driver.ssh.docker_socket for a socket other than /var/run/docker.sock)",
            ));
        }
        self.docker.validate().map_err(|e| {
            Error::invalid(
                e.message()
                    .replacen("driver.docker", "driver.ssh.docker", 1),
            )
        })?;
        if self.parallel == Some(0) {
            return Err(Error::invalid("driver.ssh.parallel must be at least 1"));
        }
        if let Some(u) = &self.user {
            check_user("driver.ssh.user", u)?;
        }
        if let Some(j) = &self.jump {
            check_jump("driver.ssh.jump", j)?;
        }
        for (key, p) in [("key", &self.key), ("known_hosts", &self.known_hosts)] {
            if let Some(p) = p {
                check_path(&format!("driver.ssh.{key}"), p)?;
            }
        }
        if let Some(s) = &self.docker_socket {
            check_socket("driver.ssh.docker_socket", s)?;
        }
        let mut hosts = Vec::with_capacity(self.hosts.len());
        for (i, h) in self.hosts.iter().enumerate() {
            let at = |field: &str| format!("driver.ssh.hosts[{i}].{field}");
            check_name(&at("name"), &h.name)?;
            if hosts.iter().any(|o: &Host| o.name == h.name) {
                return Err(Error::invalid(format!(
                    "{} = {:?} names two hosts; host names must be unique",
                    at("name"),
                    h.name
                )));
            }
            check_address(&at("address"), &h.address)?;
            if h.port == Some(0) {
                return Err(Error::invalid(format!("{} = 0 is not a port", at("port"))));
            }
            if let Some(u) = &h.user {
                check_user(&at("user"), u)?;
            }
            if let Some(j) = &h.jump {
                check_jump(&at("jump"), j)?;
            }
            for (field, p) in [("key", &h.key), ("known_hosts", &h.known_hosts)] {
                if let Some(p) = p {
                    check_path(&at(field), p)?;
                }
            }
            if let Some(s) = &h.docker_socket {
                check_socket(&at("docker_socket"), s)?;
            }
            hosts.push(Host {
                name: h.name.clone(),
                address: h.address.clone(),
                port: h.port.unwrap_or(22),
                user: h.user.clone().or_else(|| self.user.clone()),
                key: h.key.clone().or_else(|| self.key.clone()),
                known_hosts: h.known_hosts.clone().or_else(|| self.known_hosts.clone()),
                jump: h.jump.clone().or_else(|| self.jump.clone()),
                docker_socket: h
                    .docker_socket
                    .clone()
                    .or_else(|| self.docker_socket.clone())
                    .unwrap_or_else(|| DEFAULT_DOCKER_SOCKET.to_string()),
                replicas: h.replicas.or(self.replicas_per_host).unwrap_or(1),
            });
        }
        if let Some(leader) = &self.leader
            && !hosts.iter().any(|h| &h.name == leader)
        {
            return Err(Error::invalid(format!(
                "driver.ssh.leader = {leader:?} is not the name of a host in driver.ssh.hosts"
            )));
        }
        Ok(hosts)
    }

    /// The index of the leader among the validated hosts.
    pub(crate) fn leader_index(&self) -> usize {
        self.leader
            .as_ref()
            .and_then(|l| self.hosts.iter().position(|h| &h.name == l))
            .unwrap_or(0)
    }
}

fn refuse(key: &str, value: &str, rule: &str) -> Error {
    Error::invalid(format!(
        "{key} = {value:?} is refused: {rule}; nothing was contacted or changed"
    ))
}

/// The first character that is not allowed, if any.
fn bad_char(value: &str, allowed: impl Fn(char) -> bool) -> Option<char> {
    value.chars().find(|&c| !allowed(c))
}

/// A token of ASCII letters and digits plus `more`, starting with a letter, a digit or
/// one of `first`, at most `max` long; else refused with `rule`.
fn check_token(
    key: &str,
    value: &str,
    (first, more, max): (&str, &str, usize),
    rule: &str,
) -> Result<()> {
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || first.contains(c));
    if !first_ok
        || value.len() > max
        || bad_char(value, |c| c.is_ascii_alphanumeric() || more.contains(c)).is_some()
    {
        return Err(refuse(key, value, rule));
    }
    Ok(())
}

/// A host name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64 characters.
pub(crate) fn check_name(key: &str, name: &str) -> Result<()> {
    check_token(
        key,
        name,
        ("", "._-", 64),
        "a host name is letters, digits, '.', '_' and '-', starting with a letter or digit",
    )
}

/// A DNS name, an IPv4 address or a bare IPv6 address; never starts with `-` (which ssh
/// would read as an option).
fn check_address(key: &str, address: &str) -> Result<()> {
    check_token(
        key,
        address,
        (":", ".-:", 253),
        "an address is a DNS name or an IP address (letters, digits, '.', '-', ':')",
    )
}

/// A login name: `[A-Za-z0-9_][A-Za-z0-9._-]*`, at most 64 characters.
fn check_user(key: &str, user: &str) -> Result<()> {
    check_token(
        key,
        user,
        ("_", "._-", 64),
        "a user name is letters, digits, '.', '_' and '-'",
    )
}

/// A jump host `[user@]host[:port]` split into user, host and port, unchecked. A bare
/// IPv6 address has no port.
pub(crate) fn split_jump(jump: &str) -> (Option<&str>, &str, Option<&str>) {
    let (user, rest) = match jump.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, jump),
    };
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (user, h, Some(p)),
        _ => (user, rest, None),
    }
}

/// `[user@]host[:port]`.
fn check_jump(key: &str, jump: &str) -> Result<()> {
    let (user, host, port) = split_jump(jump);
    let ok = user.is_none_or(|u| check_user(key, u).is_ok())
        && check_address(key, host).is_ok()
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(refuse(key, jump, "a jump host is [user@]host[:port]"))
    }
}

/// A local file path: no whitespace (ssh splits `UserKnownHostsFile` on it), no quotes,
/// no control characters, no shell syntax.
fn check_path(key: &str, path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if text.is_empty()
        || text.starts_with('-')
        || bad_char(&text, |c| c.is_alphanumeric() || "._/+@=,~-".contains(c)).is_some()
    {
        return Err(refuse(
            key,
            &text,
            "a path is letters, digits and '._/+@=,~-' (no spaces, quotes or shell syntax)",
        ));
    }
    Ok(())
}

/// The remote Docker socket: an absolute path of plain characters.
fn check_socket(key: &str, socket: &str) -> Result<()> {
    if !socket.starts_with('/')
        || bad_char(socket, |c| c.is_ascii_alphanumeric() || "._/-".contains(c)).is_some()
    {
        return Err(refuse(
            key,
            socket,
            "the Docker socket is an absolute path of letters, digits and '._/-'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: &str) -> HostConfig {
        HostConfig {
            name: name.into(),
            address: address.into(),
            port: None,
            user: None,
            key: None,
            known_hosts: None,
            jump: None,
            docker_socket: None,
            replicas: None,
        }
    }

    fn fleet(hosts: Vec<HostConfig>) -> SshConfig {
        SshConfig::new(hosts, DockerConfig::containers("apidog"))
    }

    #[test]
    fn defaults_apply_and_the_first_host_leads() {
        let mut c = fleet(vec![host("a", "10.0.0.1"), host("b", "app2.example.com")]);
        c.user = Some("deploy".into());
        let hosts = c.validate().unwrap();
        assert_eq!(hosts[1].user.as_deref(), Some("deploy"));
        assert_eq!(hosts[1].port, 22);
        assert_eq!(hosts[0].docker_socket, DEFAULT_DOCKER_SOCKET);
        assert_eq!(hosts[0].replicas, 1);
        assert_eq!(c.leader_index(), 0);
        c.leader = Some("b".into());
        assert_eq!(c.leader_index(), 1);
        c.leader = Some("c".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn shell_metacharacters_in_any_host_field_are_refused() {
        let bad = [
            "127.0.0.1;touch /tmp/x",
            "$(id)",
            "`id`",
            "a b",
            "-oProxyCommand=sh",
            "a|b",
            "a&b",
            "a\nb",
            "a'b",
            "a\"b",
            "a>b",
        ];
        for value in bad {
            let mut h = host("a", "10.0.0.1");
            h.address = value.into();
            assert!(fleet(vec![h]).validate().is_err(), "address {value:?}");
            let mut h = host("a", "10.0.0.1");
            h.user = Some(value.into());
            assert!(fleet(vec![h]).validate().is_err(), "user {value:?}");
            let mut h = host("a", "10.0.0.1");
            h.name = value.into();
            assert!(fleet(vec![h]).validate().is_err(), "name {value:?}");
            let mut h = host("a", "10.0.0.1");
            h.jump = Some(value.into());
            assert!(fleet(vec![h]).validate().is_err(), "jump {value:?}");
            let mut h = host("a", "10.0.0.1");
            h.key = Some(value.into());
            assert!(fleet(vec![h]).validate().is_err(), "key {value:?}");
            if value.starts_with('-') {
                // Inside a path a leading '-' is harmless; alone it is refused (above, `key`).
                continue;
            }
            let mut h = host("a", "10.0.0.1");
            h.known_hosts = Some(format!("/tmp/{value}").into());
            assert!(fleet(vec![h]).validate().is_err(), "known_hosts {value:?}");
            let mut h = host("a", "10.0.0.1");
            h.docker_socket = Some(format!("/run/{value}"));
            assert!(
                fleet(vec![h]).validate().is_err(),
                "docker_socket {value:?}"
            );
        }
        let err = fleet(vec![host("a", "10.0.0.1;reboot")])
            .validate()
            .unwrap_err();
        assert!(
            err.message().contains("driver.ssh.hosts[0].address"),
            "{err}"
        );
    }

    #[test]
    fn good_values_pass() {
        let mut h = host("app-1.eu", "fe80::1");
        h.user = Some("deploy_user".into());
        h.jump = Some("ops@bastion.example.com:2222".into());
        h.key = Some("/home/deploy/.ssh/id_ed25519".into());
        h.known_hosts = Some("~/.ssh/known_hosts".into());
        h.docker_socket = Some("/run/user/1000/docker.sock".into());
        fleet(vec![h]).validate().unwrap();
    }

    #[test]
    fn the_fleet_needs_hosts_unique_names_and_no_docker_host() {
        assert!(fleet(vec![]).validate().is_err());
        assert!(
            fleet(vec![host("a", "10.0.0.1"), host("a", "10.0.0.2")])
                .validate()
                .is_err()
        );
        let mut c = fleet(vec![host("a", "10.0.0.1")]);
        c.docker.host = Some("unix:///var/run/docker.sock".into());
        assert!(c.validate().is_err());
    }
}
