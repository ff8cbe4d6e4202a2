//! The contract between the core's procedure and a backend: the [`Driver`] trait.
//!
//! Drivers execute small, idempotent primitives; the core owns the order in which they
//! run, the journal, the backup and the health checks. A driver never decides to roll
//! back, never waits for health on its own and never touches the database.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::event::EventSink;
use crate::{Error, ImageRef, Result};

/// A stream of bytes (a tar archive, a dump) read by the consumer.
pub type ByteStream = Pin<Box<dyn AsyncRead + Send>>;

/// A sink for bytes produced by a remote process (a dump's stdout).
pub type ByteSink = Pin<Box<dyn AsyncWrite + Send>>;

/// Who a driver is and what it manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverInfo {
    /// The registered kind, e.g. `docker`, `kubernetes`, `ssh`.
    pub kind: String,
    /// A human description of the target, e.g. `compose service apidog/server on unix:///var/run/docker.sock`.
    pub target: String,
}

/// Optional abilities of a driver.
///
/// A method whose capability is `false` returns an [`Error`] of kind
/// [`crate::ErrorKind::Unsupported`] (see [`Error::unsupported`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Driver::exec`] runs commands in instances or hosts.
    pub exec: bool,
    /// [`Driver::archive`] and [`Driver::unarchive`] move storage paths as tar streams.
    pub archive: bool,
    /// [`Driver::lock`] and [`Driver::unlock`] hold a lock that other operators can see.
    pub lock: bool,
    /// [`Driver::logs`] reads the last lines an instance printed.
    pub logs: bool,
}

impl Capabilities {
    /// No optional ability.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every optional ability: exec, archive, lock and logs.
    pub fn all() -> Self {
        Self::none()
            .with_exec()
            .with_archive()
            .with_lock()
            .with_logs()
    }

    /// With [`Driver::exec`].
    pub fn with_exec(mut self) -> Self {
        self.exec = true;
        self
    }

    /// With [`Driver::archive`] / [`Driver::unarchive`].
    pub fn with_archive(mut self) -> Self {
        self.archive = true;
        self
    }

    /// With [`Driver::lock`] / [`Driver::unlock`].
    pub fn with_lock(mut self) -> Self {
        self.lock = true;
        self
    }

    /// With [`Driver::logs`].
    pub fn with_logs(mut self) -> Self {
        self.logs = true;
        self
    }
}

/// One running or stopped instance of the application (a container, a pod).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Stable identifier within the backend (container name, pod name).
    pub id: String,
    /// The backend's identity of this incarnation (container ID, pod UID), when it has
    /// one: it changes when an instance is recreated under the same `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Where it runs: a host or node name; empty when there is only one place.
    pub location: String,
    /// The image it was created from.
    pub image: ImageRef,
    /// The content digest of that image, when the backend knows it.
    pub digest: Option<String>,
    /// Whether its process runs.
    pub running: bool,
    /// Whether it is ready by the backend's own signal (Docker health, pod Ready).
    pub ready: bool,
}

impl Instance {
    /// Whether this instance runs `image`: the same repository and tag and, when `image`
    /// pins a digest, that digest. The digest the backend reports decides over the one
    /// the instance's reference pins, since it is what actually runs; an instance with
    /// neither does not run a pinned image (nothing shows which image it runs).
    pub fn runs(&self, image: &ImageRef) -> bool {
        same_image(&self.image, image)
            && image
                .digest()
                .is_none_or(|want| self.running_digest() == Some(want))
    }

    /// The digest of what runs: the one the backend reports, else the one the instance's
    /// reference pins.
    pub fn running_digest(&self) -> Option<&str> {
        self.digest.as_deref().or(self.image.digest())
    }
}

/// What a driver sees of the deployment right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The image new instances would be created from (the deployment definition).
    pub image: ImageRef,
    /// The number of instances the definition asks for.
    pub replicas: u32,
    /// Every instance of the application, running or not, excluding ones kept for rollback.
    pub instances: Vec<Instance>,
}

impl Observed {
    /// Instances of `image` that run and are ready (see [`Instance::runs`] for how a
    /// pinned digest counts).
    pub fn ready_of(&self, image: &ImageRef) -> usize {
        self.instances
            .iter()
            .filter(|i| i.running && i.ready && i.runs(image))
            .count()
    }

    /// Instances of `image`'s repository and tag that do not run the digest `image` pins:
    /// they run another one (the tag moved after it was resolved), or one nobody can name
    /// (created from the tag, with no digest reported). Empty when `image` pins none.
    pub fn moved_from(&self, image: &ImageRef) -> Vec<&Instance> {
        let Some(want) = image.digest() else {
            return Vec::new();
        };
        self.instances
            .iter()
            .filter(|i| i.image.repository() == image.repository() && i.image.tag() == image.tag())
            .filter(|i| i.running_digest() != Some(want))
            .collect()
    }

    /// Instances that run, of any image.
    pub fn running(&self) -> usize {
        self.instances.iter().filter(|i| i.running).count()
    }
}

/// Whether two references name the same image, ignoring a digest only one of them pins.
pub fn same_image(a: &ImageRef, b: &ImageRef) -> bool {
    if a.repository() != b.repository() || a.tag() != b.tag() {
        return false;
    }
    match (a.digest(), b.digest()) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

/// The result of [`Driver::pull`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pulled {
    /// The image that was pulled.
    pub image: ImageRef,
    /// Its content digest (`sha256:…`), when the backend reports one.
    pub digest: Option<String>,
}

/// Everything [`Driver::restore`] needs to bring the deployment back as it was.
///
/// Opaque to the core: each driver serialises what it needs into `data`. It is stored in
/// the journal and backup manifests, so it must never contain secrets (drivers keep a
/// reference to where the secret lives, e.g. the kept container, instead of its value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The driver kind that produced it; restore refuses a snapshot of another kind.
    pub driver: String,
    /// The image of the definition when the snapshot was taken.
    pub image: ImageRef,
    /// The replica count of the definition when the snapshot was taken.
    pub replicas: u32,
    /// Driver-specific content.
    pub data: serde_json::Value,
}

impl Snapshot {
    /// A snapshot by driver `kind` of a definition running `image` × `replicas`, holding
    /// the driver's own `data`.
    ///
    /// # Errors
    /// `Other` when `data` cannot be written as JSON.
    pub fn of(
        kind: &str,
        image: ImageRef,
        replicas: u32,
        data: &impl Serialize,
    ) -> Result<Snapshot> {
        let data = serde_json::to_value(data).map_err(|e| {
            Error::new(
                crate::ErrorKind::Other,
                format!("the {kind} driver's snapshot cannot be written as JSON: {e}"),
            )
            .with_operation("snapshot")
        })?;
        Ok(Snapshot {
            driver: kind.to_string(),
            image,
            replicas,
            data,
        })
    }

    /// The data of a snapshot by driver `kind`.
    ///
    /// # Errors
    /// `InvalidInput` when another driver took it, or its data is not `T`.
    pub fn data_of<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Result<T> {
        if self.driver != kind {
            return Err(Error::invalid(format!(
                "the snapshot was taken by the {} driver, not the {kind} driver",
                self.driver
            ))
            .with_operation("restore"));
        }
        serde_json::from_value(self.data.clone()).map_err(|e| {
            Error::invalid(format!("the snapshot's data is not a {kind} snapshot: {e}"))
                .with_operation("restore")
        })
    }
}

/// Where [`Driver::exec`], [`Driver::archive`] and [`Driver::unarchive`] act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
#[non_exhaustive]
pub enum ExecTarget {
    /// An instance of the application by [`Instance::id`] (may be stopped for `archive`).
    Instance(String),
    /// Any instance of the application: the first ready one, else the first one.
    AnyInstance,
    /// Another container, pod or service by name (e.g. the database's).
    Named(String),
    /// A host of the backend by name (SSH driver hosts).
    Host(String),
}

impl fmt::Display for ExecTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Instance(id) => write!(f, "instance {id}"),
            Self::AnyInstance => f.write_str("any instance"),
            Self::Named(n) => write!(f, "{n}"),
            Self::Host(h) => write!(f, "host {h}"),
        }
    }
}

/// Standard streams and environment for [`Driver::exec`].
///
/// Values in `env` may be secrets (a database password): drivers pass them through the
/// process environment only, never on a command line, in a log or an error message.
#[derive(Default)]
pub struct ExecIo {
    /// Extra environment variables for the process.
    pub env: Vec<(String, String)>,
    /// Fed to the process's stdin, then stdin is closed. `None`: empty stdin.
    pub stdin: Option<ByteStream>,
    /// Receives the process's stdout. `None`: discarded.
    pub stdout: Option<ByteSink>,
}

impl fmt::Debug for ExecIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExecIo")
            .field("env", &names)
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .finish()
    }
}

/// How a process run by [`Driver::exec`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// The last few KiB of stderr, for error messages.
    pub stderr_tail: String,
}

impl ExitStatus {
    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// `exit code N: STDERR-TAIL` or `killed by a signal: …`, for error messages.
    pub fn describe(&self) -> String {
        let how = match self.code {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".to_string(),
        };
        let tail = self.stderr_tail.trim();
        if tail.is_empty() {
            how
        } else {
            format!("{how}: {tail}")
        }
    }
}

/// The identity of a run holding a lock.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Holder {
    /// The run's id.
    pub run: String,
    /// The host the run's process executes on.
    pub host: String,
    /// The run's process id.
    pub pid: u32,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run {} (pid {} on {})", self.run, self.pid, self.host)
    }
}

/// A backend that cutover upgrades: Docker, Kubernetes, Docker hosts over SSH, or a
/// third party's.
///
/// Every mutating method is idempotent: calling it again after a crash, a timeout or a
/// success converges to the same state without doing the work twice. The core calls the
/// methods in the order of its procedure and journals each call before and after, so a
/// driver keeps no procedure state of its own beyond what it can observe in the backend.
///
/// The conformance suite in `cutover_core::testkit` (feature `testkit`) checks these
/// contracts against any implementation.
#[async_trait]
pub trait Driver: fmt::Debug + Send + Sync + 'static {
    /// Who this driver is and what it targets.
    fn info(&self) -> DriverInfo;

    /// Which optional methods work.
    fn capabilities(&self) -> Capabilities;

    /// Reads the deployment's definition and instances.
    ///
    /// # Behavior
    /// - Side-effect free: changes nothing in the backend, however often it is called.
    /// - Lists every instance of the application that exists, running or not, except
    ///   instances the driver keeps aside for rollback.
    /// - An instance created from a pinned reference (`repo:tag@sha256:…`) reports that
    ///   reference, or at least its digest in [`Instance::digest`]: the core waits for
    ///   the digest it pulled and fails on an instance of the tag that shows another or
    ///   none.
    /// - Fails with [`crate::ErrorKind::NotFound`] when the target does not exist at all.
    async fn observe(&self) -> Result<Observed>;

    /// Makes `image` available wherever new instances may start.
    ///
    /// # Behavior
    /// - Touches no instance and not the definition: nothing restarts.
    /// - Already present: succeeds quickly (a registry check at most).
    /// - A reference that does not exist fails with [`crate::ErrorKind::NotFound`].
    /// - Reports progress (bytes or layers) to `events`; never logs registry credentials.
    async fn pull(&self, image: &ImageRef, events: &EventSink) -> Result<Pulled>;

    /// Captures all that [`Driver::restore`] needs.
    ///
    /// # Behavior
    /// - Side-effect free, except that the driver may mark resources to keep.
    /// - The snapshot holds no secret values.
    async fn snapshot(&self) -> Result<Snapshot>;

    /// Changes the definition so that instances created from now on use `image`.
    ///
    /// # Behavior
    /// - Restarts, creates and removes no instance.
    /// - Already set: succeeds without change.
    async fn set_image(&self, image: &ImageRef) -> Result<()>;

    /// Converges to exactly `replicas` instances of the current definition.
    ///
    /// # Behavior
    /// - `0` stops every instance; stopped instances of an older definition are kept
    ///   aside (not deleted) until [`Driver::release`] so that restore is fast.
    /// - Instances that do not match the definition's image are replaced.
    /// - Returns once the backend has accepted the change; readiness is the core's to wait
    ///   for (through [`Driver::observe`]).
    /// - Already converged: succeeds without change.
    /// - Instances of an image set since the last [`Driver::release`] get no restart policy
    ///   (or the backend's nearest equivalent) where the backend allows it: an instance that
    ///   exits is not restarted on its own, so a failing start-up and its migrations do not
    ///   run again while no cutover process watches.
    async fn scale(&self, replicas: u32) -> Result<()>;

    /// Brings the definition and instances back exactly as `snapshot` recorded them.
    ///
    /// # Behavior
    /// - Removes instances that the snapshot does not have; recreates the snapshotted
    ///   ones from what was kept aside, or from the snapshot if that is gone.
    /// - Idempotent; fails with [`crate::ErrorKind::InvalidInput`] for another driver's
    ///   snapshot.
    async fn restore(&self, snapshot: &Snapshot) -> Result<()>;

    /// Drops what was kept aside for rolling back to `snapshot` (at commit).
    ///
    /// # Behavior
    /// - Restarts, replaces and removes no instance of the current definition; gives them
    ///   the definition's restart policy where [`Driver::scale`] withheld it.
    /// - Nothing left to drop: succeeds.
    async fn release(&self, snapshot: &Snapshot) -> Result<()>;

    /// Runs `argv` at `at` and streams its output. Capability: `exec`.
    ///
    /// # Behavior
    /// - `argv` is passed as a vector, never through a shell; secrets come only through
    ///   `io.env`.
    /// - A non-zero exit is an `Ok` [`ExitStatus`]; only failing to run is an error.
    async fn exec(&self, at: &ExecTarget, argv: &[String], io: ExecIo) -> Result<ExitStatus> {
        let _ = (at, argv, io);
        Err(Error::unsupported(&self.info().kind, "exec"))
    }

    /// Streams the directory `path` at `at` as a tar archive. Capability: `archive`.
    ///
    /// # Behavior
    /// - The entries are the directory's content with names relative to it (`./`,
    ///   `./name`, …), as `tar -C path -c .` writes them, with their modes.
    /// - Works on stopped instances and on volumes where the backend allows it.
    /// - Changes nothing.
    /// - A path that does not exist fails, here or while the stream is read; it never
    ///   reads as an archive.
    async fn archive(&self, at: &ExecTarget, path: &str) -> Result<ByteStream> {
        let _ = (at, path);
        Err(Error::unsupported(&self.info().kind, "archive"))
    }

    /// Replaces the content of `path` at `at` with the tar archive `tar`. Capability: `archive`.
    ///
    /// # Behavior
    /// - `tar` is as [`Driver::archive`] writes it: names relative to `path`.
    /// - Afterwards `path` holds exactly the archive's entries, with their modes: an entry
    ///   that was there and is not in the archive is gone.
    async fn unarchive(&self, at: &ExecTarget, path: &str, tar: ByteStream) -> Result<()> {
        let _ = (at, path, tar);
        Err(Error::unsupported(&self.info().kind, "unarchive"))
    }

    /// The last `lines` lines instance `instance` (an [`Instance::id`]) printed, stdout
    /// and stderr interleaved as the backend keeps them, oldest first. Capability: `logs`.
    ///
    /// # Behavior
    /// - Read-only: changes nothing, and works on a stopped or exited instance as long as
    ///   the backend still has it (the core calls it when a new release's instance
    ///   failed, before its rollback removes the instance).
    /// - Returns the text as the application printed it (invalid UTF-8 replaced), at most
    ///   `lines` lines; an instance that printed nothing gives an empty string.
    /// - Adds nothing of its own (no credentials, no environment).
    /// - An instance that does not exist fails with [`crate::ErrorKind::NotFound`].
    async fn logs(&self, instance: &str, lines: usize) -> Result<String> {
        let _ = (instance, lines);
        Err(Error::unsupported(&self.info().kind, "logs"))
    }

    /// Takes the backend-side lock that other operators and tools can see. Capability: `lock`.
    ///
    /// # Behavior
    /// - Already held by `holder`: succeeds (and refreshes it).
    /// - Held by another holder: fails with [`crate::ErrorKind::Locked`] naming it.
    async fn lock(&self, holder: &Holder) -> Result<()> {
        let _ = holder;
        Err(Error::unsupported(&self.info().kind, "lock"))
    }

    /// Releases the backend-side lock. Capability: `lock`.
    ///
    /// # Behavior
    /// - Not held, or held by `holder`: afterwards not held. Never releases another
    ///   holder's lock.
    async fn unlock(&self, holder: &Holder) -> Result<()> {
        let _ = holder;
        Err(Error::unsupported(&self.info().kind, "unlock"))
    }
}

/// Conveniences over any [`Driver`], so implementors cannot get them subtly wrong.
#[async_trait]
pub trait DriverExt: Driver {
    /// Runs `argv` and collects stdout into memory (for small outputs such as versions).
    async fn exec_output(&self, at: &ExecTarget, argv: &[String]) -> Result<(ExitStatus, Vec<u8>)> {
        let (reader, writer) = tokio::io::duplex(64 * 1024);
        let io = ExecIo {
            stdout: Some(Box::pin(writer)),
            ..ExecIo::default()
        };
        let collect = async move {
            let mut reader = reader;
            let mut out = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut out)
                .await
                .map(|_| out)
        };
        let (status, out) = tokio::join!(self.exec(at, argv, io), collect);
        let out = out.map_err(|e| {
            Error::new(crate::ErrorKind::Other, "reading exec output").with_source(e)
        })?;
        Ok((status?, out))
    }
}

impl<D: Driver + ?Sized> DriverExt for D {}

/// A shared driver, as the engine and registries hold it.
pub type SharedDriver = Arc<dyn Driver>;
