//! [`SshDriver`]: the `Driver` contract on a fleet of Docker hosts.
//!
//! SSH specifics of the contract:
//! - **Instances** are the containers of every host, with id `<host>/<container>` and
//!   `location` the host's name. Desired replicas are the sum over hosts.
//! - **The definition** is kept on every host by that host's Docker driver; the fleet's
//!   image is the leader's.
//! - **`scale(n)`** gives each host its share: `scale(1)` is the leader's single instance,
//!   `scale(N)` for the fleet's full size is every host's configured count, other counts
//!   are dealt out one at a time in host order starting at the leader. Hosts that go to
//!   zero are stopped first, then the others are scaled in parallel. Each host's Docker
//!   driver starts instances of a new image without a restart policy; `release` gives
//!   them the definition's on every host (see `cutover_driver_docker::definition`).
//! - **`pull`, `set_image`, `restore`, `release`** run on every host in parallel (at most
//!   `parallel` at once). A failure on some hosts names each of them and the state of
//!   every host; the core's rollback then restores every host from the fleet snapshot.
//! - **`lock`** is the leader's Docker lock container, which every operator of the fleet
//!   sees.
//! - **`exec` / `archive` / `unarchive`**: `Host(name)` runs on the host itself over SSH
//!   (`tar` for archives); `Instance("<host>/<container>")` and `Named("<host>/<name>")`
//!   go to that host's engine; `Named(name)` and `AnyInstance` go to the leader's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{
    ByteStream, Capabilities, Driver, DriverInfo, Error, ErrorKind, EventSink, ExecIo, ExecTarget,
    ExitStatus, Holder, ImageRef, Instance, Observed, Pulled, Result, Snapshot,
};
use cutover_driver_docker::DockerDriver;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::config::SshConfig;
use crate::error::{self, KIND};
use crate::link::Connection;

/// The format of the fleet snapshot's `data`.
const FORMAT: u32 = 1;

/// The fleet snapshot: one Docker snapshot per host.
#[derive(Debug, Serialize, Deserialize)]
struct FleetSnapshot {
    format: u32,
    leader: String,
    hosts: BTreeMap<String, Snapshot>,
}

/// The SSH driver; build it with [`crate::connect`].
#[derive(Debug, Clone)]
pub struct SshDriver {
    pub(crate) hosts: Arc<Vec<Connection>>,
    pub(crate) leader: usize,
    pub(crate) parallel: usize,
    pub(crate) _dir: Arc<tempfile::TempDir>,
}

/// What each host did in a fleet-wide operation.
struct Outcomes<T> {
    results: Vec<(usize, Result<T>)>,
    /// Hosts whose link could not be established or checked: nothing of the operation
    /// reached them.
    unreached: Vec<usize>,
}

/// What a fleet-wide operation may do to a host's instances. It decides how the link is
/// checked and keeps the record of hosts known to run nothing (`Connection::is_quiet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touch {
    /// Reads, or changes only the definition: starts and stops nothing.
    None,
    /// Stops every instance on the host.
    Stop,
    /// May start instances.
    Start,
}

impl SshDriver {
    pub(crate) fn new(config: &SshConfig) -> Result<Self> {
        let hosts = config.validate()?;
        let dir = tempfile::Builder::new()
            .prefix("cutover-ssh-")
            .tempdir()
            .map_err(|e| {
                error::driver(
                    ErrorKind::Other,
                    "connect",
                    "",
                    format!("cannot create a directory for SSH control sockets: {e}"),
                )
            })?;
        let timeout = Duration::from_secs(config.connect_timeout_secs.unwrap_or(10));
        let connections = hosts
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                Connection::new(
                    h,
                    i,
                    config.docker.clone(),
                    config.host_key_checking,
                    timeout,
                    dir.path(),
                )
            })
            .collect();
        Ok(Self {
            hosts: Arc::new(connections),
            leader: config.leader_index(),
            parallel: config.parallel(),
            _dir: Arc::new(dir),
        })
    }

    /// The host names, leader first.
    pub fn host_names(&self) -> Vec<String> {
        self.order()
            .into_iter()
            .map(|i| self.hosts[i].host.name.clone())
            .collect()
    }

    /// The leader's name.
    pub fn leader(&self) -> &str {
        &self.hosts[self.leader].host.name
    }

    /// Connects every host (in parallel), naming each that fails.
    pub(crate) async fn check_all(&self) -> Result<()> {
        let all: Vec<usize> = self.order();
        let done = self
            .each(&all, "connect", Touch::None, |_, _| async { Ok(()) })
            .await;
        self.all("connect", done).await.map(|_| ())
    }

    /// Closes every SSH connection explicitly. The driver connects again when used.
    pub async fn close(&self) {
        futures_util::future::join_all(self.hosts.iter().map(Connection::disconnect)).await;
    }

    /// Host indices, leader first, then in configured order.
    fn order(&self) -> Vec<usize> {
        std::iter::once(self.leader)
            .chain((0..self.hosts.len()).filter(|&i| i != self.leader))
            .collect()
    }

    fn index_of(&self, name: &str, op: &str) -> Result<usize> {
        self.hosts
            .iter()
            .position(|c| c.host.name == name)
            .ok_or_else(|| {
                error::driver(
                    ErrorKind::NotFound,
                    op,
                    name,
                    format!(
                        "no host named {name:?} in the fleet (hosts: {})",
                        self.host_names().join(", ")
                    ),
                )
            })
    }

    /// Runs `f` on the hosts `which` with at most `parallel` at once.
    ///
    /// For an operation that starts or stops instances the link is checked right before,
    /// so a host that cannot be reached then is known to have received nothing of it.
    async fn each<T, F, Fut>(
        &self,
        which: &[usize],
        op: &'static str,
        touch: Touch,
        f: F,
    ) -> Outcomes<T>
    where
        F: Fn(usize, DockerDriver) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let f = &f;
        let done: Vec<(usize, Result<T>, bool)> = futures_util::stream::iter(which.iter().copied())
            .map(|i| async move {
                let conn = &self.hosts[i];
                let linked = match touch {
                    Touch::None => conn.docker(op).await,
                    Touch::Stop | Touch::Start => conn.docker_checked(op).await,
                };
                let d = match linked {
                    Ok(d) => d,
                    Err(e) => return (i, watched(conn, Err(e)).await, false),
                };
                if touch == Touch::Start {
                    conn.set_quiet(false);
                }
                let result = f(i, d).await.map_err(|e| tag(conn, op, e));
                if touch == Touch::Stop && result.is_ok() {
                    conn.set_quiet(true);
                }
                (i, watched(conn, result).await, true)
            })
            .buffer_unordered(self.parallel)
            .collect()
            .await;
        let unreached = done
            .iter()
            .filter(|(_, _, r)| !r)
            .map(|(i, _, _)| *i)
            .collect();
        Outcomes {
            results: done.into_iter().map(|(i, r, _)| (i, r)).collect(),
            unreached,
        }
    }

    /// Counts a host that could not be reached as stopped when this process stopped it
    /// earlier and sent it nothing since that could start an instance: a fleet whose host
    /// went away mid-rollout can still be stopped, its data restored and the reachable
    /// hosts brought back, rather than stopping short of all that. Restore then names the
    /// host, which still needs its own restore.
    fn excuse_quiet(&self, stopped: &mut Outcomes<()>) {
        for (i, result) in &mut stopped.results {
            let conn = &self.hosts[*i];
            if result.is_err() && stopped.unreached.contains(i) && conn.is_quiet() {
                tracing::warn!(
                    host = %conn.host.name,
                    "unreachable, but it runs no instance: this run stopped it and has sent it \
                     nothing since; counted as stopped"
                );
                *result = Ok(());
            }
        }
    }

    /// `Ok` with every host's value when all succeeded, else one error naming each failed
    /// host and the state of every host.
    async fn all<T>(&self, op: &str, outcomes: Outcomes<T>) -> Result<Vec<(usize, T)>> {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for (i, r) in outcomes.results {
            match r {
                Ok(v) => done.push((i, v)),
                Err(e) => failed.push((i, e)),
            }
        }
        if failed.is_empty() {
            done.sort_by_key(|(i, _)| *i);
            return Ok(done);
        }
        failed.sort_by_key(|(i, _)| *i);
        let names: Vec<String> = failed
            .iter()
            .map(|(i, _)| self.hosts[*i].host.name.clone())
            .collect();
        let kind = if failed
            .iter()
            .all(|(_, e)| e.kind() == ErrorKind::Unavailable)
        {
            ErrorKind::Unavailable
        } else {
            failed
                .iter()
                .map(|(_, e)| e.kind())
                .find(|k| *k != ErrorKind::Unavailable)
                .unwrap_or(ErrorKind::Other)
        };
        let retryable = failed.iter().all(|(_, e)| e.is_retryable());
        let causes: Vec<String> = failed
            .iter()
            .map(|(_, e)| e.message().to_string())
            .collect();
        // Hosts that just failed to connect are not tried again for the state report.
        let states = self.states(&outcomes.unreached).await;
        let message = format!(
            "{op} failed on {} of {} hosts ({}): {}. Host states: {}",
            failed.len(),
            self.hosts.len(),
            names.join(", "),
            causes.join("; "),
            states
        );
        let mut err = Error::new(kind, message)
            .with_driver(KIND)
            .with_operation(op.to_string())
            .with_subject(names.join(","))
            .retryable(retryable);
        if let Some((_, first)) = failed.into_iter().next() {
            err = err.with_source(first);
        }
        Err(err)
    }

    /// What every host runs right now, for error messages: `name: unreachable` or the
    /// definition image and the instances.
    async fn states(&self, unreachable_now: &[usize]) -> String {
        let order = self.order();
        let looks = futures_util::future::join_all(order.iter().map(|&i| async move {
            let conn = &self.hosts[i];
            let unreachable = if conn.is_quiet() {
                "unreachable, running no instance when last reached"
            } else {
                "unreachable"
            };
            if unreachable_now.contains(&i) {
                return format!("{}: {unreachable}", conn.host.name);
            }
            let text = match conn.docker("observe").await {
                Err(e) if e.kind() == ErrorKind::Unavailable => unreachable.to_string(),
                Err(e) => format!("unknown ({})", e.message()),
                Ok(d) => match d.observe().await {
                    Ok(o) => {
                        let running: Vec<String> = o
                            .instances
                            .iter()
                            .map(|i| {
                                let tag = i.image.tag().unwrap_or("?");
                                let state = match (i.running, i.ready) {
                                    (true, true) => "ready",
                                    (true, false) => "starting",
                                    _ => "stopped",
                                };
                                format!("{} {tag} {state}", i.id)
                            })
                            .collect();
                        let def = o.image.tag().unwrap_or("?").to_string();
                        if running.is_empty() {
                            format!("definition {def}, no instance")
                        } else {
                            format!("definition {def}, {}", running.join(", "))
                        }
                    }
                    Err(e) => format!("unknown ({})", e.message()),
                },
            };
            format!("{}: {text}", conn.host.name)
        }))
        .await;
        looks.join("; ")
    }

    /// The share of `n` instances of each host (by host index).
    fn shares(&self, n: u32) -> Vec<u32> {
        let mut shares = vec![0u32; self.hosts.len()];
        let order = self.order();
        let mut left = n;
        // First up to each host's configured count, then round-robin beyond.
        let mut capped = true;
        while left > 0 {
            let mut gave = false;
            for &i in &order {
                if left == 0 {
                    break;
                }
                if capped && shares[i] >= self.hosts[i].host.replicas {
                    continue;
                }
                shares[i] += 1;
                left -= 1;
                gave = true;
            }
            if !gave {
                capped = false;
            }
        }
        shares
    }

    /// Splits an instance or container reference `<host>/<name>`; a bare name is on the
    /// leader.
    fn split<'a>(&self, reference: &'a str, op: &str) -> Result<(usize, &'a str)> {
        match reference.split_once('/') {
            Some((host, name)) => Ok((self.index_of(host, op)?, name)),
            None => Ok((self.leader, reference)),
        }
    }

    /// The host and the target on that host's engine.
    async fn route(&self, at: &ExecTarget, op: &str) -> Result<(usize, Option<ExecTarget>)> {
        match at {
            ExecTarget::Host(name) => Ok((self.index_of(name, op)?, None)),
            ExecTarget::Instance(id) => {
                let (i, name) = self.split(id, op)?;
                Ok((i, Some(ExecTarget::Instance(name.to_string()))))
            }
            ExecTarget::Named(reference) => {
                let (i, name) = self.split(reference, op)?;
                Ok((i, Some(ExecTarget::Named(name.to_string()))))
            }
            ExecTarget::AnyInstance => {
                // The first ready instance in host order (leader first), else the leader's.
                let o = self.observe().await?;
                let chosen = o
                    .instances
                    .iter()
                    .find(|i| i.ready)
                    .or_else(|| o.instances.first());
                match chosen {
                    Some(inst) => {
                        let (i, name) = self.split(&inst.id, op)?;
                        Ok((i, Some(ExecTarget::Instance(name.to_string()))))
                    }
                    None => Ok((self.leader, Some(ExecTarget::AnyInstance))),
                }
            }
            other => Err(error::driver(
                ErrorKind::InvalidInput,
                op,
                "",
                format!("the ssh driver cannot run at {other}"),
            )),
        }
    }
}

/// Adds the host to an error of its Docker driver (or passes an SSH error through).
fn tag(conn: &Connection, op: &str, e: Error) -> Error {
    if e.driver() == Some(KIND) {
        e
    } else {
        error::on_host(&conn.host, op, e)
    }
}

/// Refuses an image reference with anything but the characters of Docker's grammar,
/// before any host is contacted.
fn check_image(image: &ImageRef, op: &str) -> Result<()> {
    let text = image.to_string();
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-:/@".contains(*c)))
    {
        return Err(error::driver(
            ErrorKind::InvalidInput,
            op,
            "",
            format!("image reference {text:?} contains {c:?}; nothing was changed"),
        ));
    }
    Ok(())
}

#[async_trait]
impl Driver for SshDriver {
    fn info(&self) -> DriverInfo {
        let hosts: Vec<String> = self
            .order()
            .iter()
            .map(|&i| self.hosts[i].host.describe())
            .collect();
        DriverInfo {
            kind: KIND.to_string(),
            target: format!("{} hosts (leader first): {}", hosts.len(), hosts.join(", ")),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn observe(&self) -> Result<Observed> {
        let order = self.order();
        let seen = self
            .each(&order, "observe", Touch::None, |_, d| async move {
                d.observe().await
            })
            .await;
        let seen = self.all("observe", seen).await?;
        let mut image = None;
        let mut instances = Vec::new();
        let mut replicas = 0;
        // Leader first, then the configured order.
        let mut by_index: BTreeMap<usize, Observed> = seen.into_iter().collect();
        for i in order {
            let Some(o) = by_index.remove(&i) else {
                continue;
            };
            let name = &self.hosts[i].host.name;
            if i == self.leader {
                image = Some(o.image.clone());
            }
            replicas += o.replicas;
            instances.extend(o.instances.into_iter().map(|inst| Instance {
                id: format!("{name}/{}", inst.id),
                location: name.clone(),
                ..inst
            }));
        }
        Ok(Observed {
            image: image.expect("the leader was observed"),
            replicas,
            instances,
        })
    }

    async fn pull(&self, image: &ImageRef, events: &EventSink) -> Result<Pulled> {
        check_image(image, "pull")?;
        let order = self.order();
        let pulled = self
            .each(&order, "pull", Touch::None, |_, d| async move {
                d.pull(image, events).await
            })
            .await;
        let pulled = self.all("pull", pulled).await?;
        let named: Vec<(&str, &Pulled)> = pulled
            .iter()
            .map(|(i, p)| (self.hosts[*i].host.name.as_str(), p))
            .collect();
        if let Some(message) = disagreeing_digests(image, &named) {
            return Err(error::driver(ErrorKind::Conflict, "pull", "", message));
        }
        let leader = pulled
            .into_iter()
            .find(|(i, _)| *i == self.leader)
            .map(|(_, p)| p)
            .expect("the leader pulled");
        Ok(leader)
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let order = self.order();
        let snaps = self
            .each(&order, "snapshot", Touch::None, |_, d| async move {
                d.snapshot().await
            })
            .await;
        let snaps = self.all("snapshot", snaps).await?;
        let mut image = None;
        let mut replicas = 0;
        let mut hosts = BTreeMap::new();
        for (i, s) in snaps {
            if i == self.leader {
                image = Some(s.image.clone());
            }
            replicas += s.replicas;
            hosts.insert(self.hosts[i].host.name.clone(), s);
        }
        let data = FleetSnapshot {
            format: FORMAT,
            leader: self.leader().to_string(),
            hosts,
        };
        Snapshot::of(
            KIND,
            image.expect("the leader was snapshotted"),
            replicas,
            &data,
        )
    }

    async fn set_image(&self, image: &ImageRef) -> Result<()> {
        check_image(image, "set_image")?;
        let order = self.order();
        let done = self
            .each(&order, "set_image", Touch::None, |_, d| async move {
                d.set_image(image).await
            })
            .await;
        self.all("set_image", done).await.map(|_| ())
    }

    async fn scale(&self, replicas: u32) -> Result<()> {
        let shares = self.shares(replicas);
        let order = self.order();
        // Hosts that go to zero first, so that a new version never starts beside an old
        // instance on another host.
        let (down, up): (Vec<usize>, Vec<usize>) = order.into_iter().partition(|&i| shares[i] == 0);
        let shares = &shares;
        let mut stopped = self
            .each(&down, "scale", Touch::Stop, |i, d| async move {
                d.scale(shares[i]).await
            })
            .await;
        if replicas == 0 {
            self.excuse_quiet(&mut stopped);
        }
        self.all("scale", stopped).await?;
        let started = self
            .each(&up, "scale", Touch::Start, |i, d| async move {
                d.scale(shares[i]).await
            })
            .await;
        self.all("scale", started).await.map(|_| ())
    }

    async fn restore(&self, snap: &Snapshot) -> Result<()> {
        let invalid =
            |message: String| error::driver(ErrorKind::InvalidInput, "restore", "", message);
        let data: FleetSnapshot = snap.data_of(KIND)?;
        if data.format != FORMAT {
            return Err(invalid(format!(
                "ssh snapshot format {} is unknown",
                data.format
            )));
        }
        // Every host of the fleet must be in the snapshot, or restore would leave one as it is.
        let missing: Vec<String> = self
            .hosts
            .iter()
            .map(|c| c.host.name.clone())
            .filter(|n| !data.hosts.contains_key(n))
            .collect();
        if !missing.is_empty() {
            return Err(invalid(format!(
                "the snapshot has no record of host(s) {} (the fleet changed since it was \
                 taken); nothing was changed",
                missing.join(", ")
            )));
        }
        let order = self.order();
        let data = &data;
        let done = self
            .each(&order, "restore", Touch::Start, |i, d| async move {
                d.restore(&data.hosts[&self.hosts[i].host.name]).await
            })
            .await;
        self.all("restore", done).await.map(|_| ())
    }

    async fn release(&self, snap: &Snapshot) -> Result<()> {
        let data: Option<FleetSnapshot> = serde_json::from_value(snap.data.clone()).ok();
        let data = &data;
        let order = self.order();
        let done = self
            .each(&order, "release", Touch::None, |i, d| async move {
                match data
                    .as_ref()
                    .and_then(|f| f.hosts.get(&self.hosts[i].host.name))
                {
                    Some(s) => d.release(s).await,
                    // The Docker driver's release only needs the snapshot's kind.
                    None => d.release(snap).await,
                }
            })
            .await;
        self.all("release", done).await.map(|_| ())
    }

    async fn exec(&self, at: &ExecTarget, argv: &[String], io: ExecIo) -> Result<ExitStatus> {
        let (i, on_engine) = self.route(at, "exec").await?;
        let conn = &self.hosts[i];
        let result = match on_engine {
            None => conn.run("exec", argv, io).await,
            Some(t) => match conn.docker("exec").await {
                Ok(d) => d.exec(&t, argv, io).await.map_err(|e| tag(conn, "exec", e)),
                Err(e) => Err(e),
            },
        };
        watched(conn, result).await
    }

    async fn archive(&self, at: &ExecTarget, path: &str) -> Result<ByteStream> {
        let (i, on_engine) = self.route(at, "archive").await?;
        let conn = &self.hosts[i];
        let result = match on_engine {
            None => conn.tar_out("archive", path).await,
            Some(t) => match conn.docker("archive").await {
                Ok(d) => d
                    .archive(&t, path)
                    .await
                    .map_err(|e| tag(conn, "archive", e)),
                Err(e) => Err(e),
            },
        };
        watched(conn, result).await
    }

    async fn unarchive(&self, at: &ExecTarget, path: &str, tar: ByteStream) -> Result<()> {
        let (i, on_engine) = self.route(at, "unarchive").await?;
        let conn = &self.hosts[i];
        let result = match on_engine {
            None => conn.tar_in("unarchive", path, tar).await,
            Some(t) => match conn.docker("unarchive").await {
                Ok(d) => d
                    .unarchive(&t, path, tar)
                    .await
                    .map_err(|e| tag(conn, "unarchive", e)),
                Err(e) => Err(e),
            },
        };
        watched(conn, result).await
    }

    /// `<host>/<container>` (a bare name: on the leader) through that host's Docker driver,
    /// which reads only instances of the target.
    async fn logs(&self, instance: &str, lines: usize) -> Result<String> {
        let (i, name) = self.split(instance, "logs")?;
        let conn = &self.hosts[i];
        let result = match conn.docker("logs").await {
            Ok(d) => d.logs(name, lines).await.map_err(|e| tag(conn, "logs", e)),
            Err(e) => Err(e),
        };
        watched(conn, result).await
    }

    async fn lock(&self, holder: &Holder) -> Result<()> {
        let conn = &self.hosts[self.leader];
        let result = match conn.docker("lock").await {
            Ok(d) => d.lock(holder).await.map_err(|e| tag(conn, "lock", e)),
            Err(e) => Err(e),
        };
        watched(conn, result).await
    }

    async fn unlock(&self, holder: &Holder) -> Result<()> {
        let conn = &self.hosts[self.leader];
        let result = match conn.docker("unlock").await {
            Ok(d) => d.unlock(holder).await.map_err(|e| tag(conn, "unlock", e)),
            Err(e) => Err(e),
        };
        watched(conn, result).await
    }
}

/// Has the link checked again before its next use when `result` says the host could not
/// be reached.
async fn watched<T>(conn: &Connection, result: Result<T>) -> Result<T> {
    if result
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Unavailable)
    {
        conn.suspect().await;
    }
    result
}

/// Why the hosts' pulls of one tag cannot start one release, if they cannot: the tag
/// named different images on different hosts (a push to the registry during the pull,
/// or a host's own `docker tag`). The core pins the definition to the leader's digest;
/// a host with another would fail to start it, or start an image nobody checked.
fn disagreeing_digests(image: &ImageRef, pulled: &[(&str, &Pulled)]) -> Option<String> {
    let first = pulled.first()?.1.digest.as_ref();
    if pulled.iter().all(|(_, p)| p.digest.as_ref() == first) {
        return None;
    }
    let hosts = pulled
        .iter()
        .map(|(name, p)| {
            let digest = p.digest.as_deref().unwrap_or("no digest");
            format!("{name}: {digest}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "the hosts pulled different images for {image} ({hosts}); the tag moved during the pull \
         (a push to the registry, or a host's own `docker tag`). Nothing was changed; run the \
         upgrade again once the tag names one image"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostConfig;
    use cutover_driver_docker::DockerConfig;

    fn driver(counts: &[Option<u32>], leader: Option<&str>) -> SshDriver {
        let hosts = counts
            .iter()
            .enumerate()
            .map(|(i, c)| HostConfig {
                name: format!("h{}", i + 1),
                address: "127.0.0.1".into(),
                port: None,
                user: None,
                key: None,
                known_hosts: None,
                jump: None,
                docker_socket: None,
                replicas: *c,
            })
            .collect();
        let mut config = SshConfig::new(hosts, DockerConfig::containers("app"));
        config.leader = leader.map(str::to_string);
        SshDriver::new(&config).unwrap()
    }

    #[test]
    fn hosts_that_pulled_different_digests_are_named_with_them() {
        let image: ImageRef = "127.0.0.1:5000/app:1.1.0".parse().unwrap();
        let (a, b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let pulled = |d: Option<&str>| Pulled {
            image: image.clone(),
            digest: d.map(str::to_owned),
        };
        let same = [pulled(Some(&a)), pulled(Some(&a)), pulled(Some(&a))];
        let named: Vec<(&str, &Pulled)> = ["h1", "h2", "h3"].into_iter().zip(&same).collect();
        assert_eq!(disagreeing_digests(&image, &named), None);
        let none = [pulled(None), pulled(None)];
        let named: Vec<(&str, &Pulled)> = ["h1", "h2"].into_iter().zip(&none).collect();
        assert_eq!(disagreeing_digests(&image, &named), None);

        let moved = [pulled(Some(&a)), pulled(Some(&b)), pulled(None)];
        let named: Vec<(&str, &Pulled)> = ["h1", "h2", "h3"].into_iter().zip(&moved).collect();
        let message = disagreeing_digests(&image, &named).expect("refused");
        for needle in [
            format!("h1: {a}"),
            format!("h2: {b}"),
            "h3: no digest".to_string(),
            image.to_string(),
            "moved".to_string(),
        ] {
            assert!(message.contains(&needle), "{needle}: {message}");
        }
    }

    #[test]
    fn one_instance_is_the_leaders_and_the_full_count_is_every_hosts() {
        let d = driver(&[None, None, None], None);
        assert_eq!(d.shares(0), vec![0, 0, 0]);
        assert_eq!(d.shares(1), vec![1, 0, 0]);
        assert_eq!(d.shares(3), vec![1, 1, 1]);
        assert_eq!(d.shares(4), vec![2, 1, 1]);
        let d = driver(&[Some(2), Some(1), Some(3)], Some("h3"));
        assert_eq!(d.shares(1), vec![0, 0, 1]);
        assert_eq!(d.shares(6), vec![2, 1, 3]);
        assert_eq!(d.shares(3), vec![1, 1, 1]);
        assert_eq!(d.shares(7), vec![2, 1, 4]);
    }

    #[test]
    fn only_a_host_known_to_run_nothing_and_sent_nothing_counts_as_stopped() {
        let d = driver(&[None, None, None], None);
        let down = || Error::new(ErrorKind::Unavailable, "connection refused");
        // h1 was stopped by this run and is unreachable now; h2 was not known to be
        // stopped; h3 was, but the failing call reached it.
        d.hosts[0].set_quiet(true);
        d.hosts[2].set_quiet(true);
        let mut outcomes = Outcomes {
            results: vec![(0, Err(down())), (1, Err(down())), (2, Err(down()))],
            unreached: vec![0, 1],
        };
        d.excuse_quiet(&mut outcomes);
        let ok: Vec<bool> = outcomes.results.iter().map(|(_, r)| r.is_ok()).collect();
        assert_eq!(ok, vec![true, false, false]);
    }

    #[test]
    fn images_with_shell_syntax_are_refused() {
        let ok: ImageRef = "127.0.0.1:5000/specimen:1.1.0".parse().unwrap();
        check_image(&ok, "pull").unwrap();
        for bad in [
            "127.0.0.1:5000/specimen:1.1.0;id",
            "specimen:$(id)",
            "specimen:`id`",
            "specimen:a b",
            "specimen:a|b",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad} parses");
        }
    }
}
