//! An in-memory deployment and database, with fault injection on every method.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

#[cfg(feature = "engine")]
use crate::backup::{BackupId, BackupRef, BackupScope, BackupSummary, Backups, Swept};
use crate::driver::{
    ByteStream, Capabilities, Driver, DriverInfo, ExecIo, ExecTarget, ExitStatus, Holder, Instance,
    Observed, Pulled, Snapshot,
};
use crate::event::{EventSink, Unit};
use crate::{Error, ErrorKind, ImageRef, Result};

/// The fake's methods, for fault injection and the call log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // one per trait method
pub enum Method {
    Observe,
    Pull,
    Snapshot,
    SetImage,
    Scale,
    Restore,
    Release,
    Exec,
    Archive,
    Unarchive,
    Logs,
    Lock,
    Unlock,
    BackupPreflight,
    Backup,
    Verify,
    RestoreData,
    List,
    Prune,
    /// [`Backups::restore_test`].
    RestoreTest,
    /// The deletion of one backup inside [`Backups::prune`]: a crash after the n-th
    /// deletion leaves a prune half done.
    DeleteBackup,
    /// [`Backups::sweep`].
    Sweep,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Fail before any effect, with this kind.
    Error(ErrorKind),
    /// Never return (the caller must time out, cancel or be dropped).
    Hang,
    /// Perform the effect, signal [`FakeDriver::crashed`], then never return: the test
    /// drops the engine to simulate a process killed right after the effect.
    CrashAfterEffect,
}

/// A fault on the `nth` call (from 1) of `method`. Each fault fires once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The method.
    pub method: Method,
    /// Which call of it.
    pub nth: u32,
    /// What happens.
    pub kind: FaultKind,
}

/// The fake database: a schema version that new images migrate, and some rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeData {
    /// The schema version (the tag of the image that last migrated it).
    pub version: String,
    /// Rows of application data.
    pub rows: u64,
}

#[derive(Debug, Clone)]
struct FakeInstance {
    id: String,
    image: ImageRef,
    /// The digest of the image it was created from.
    digest: String,
    running: bool,
    started: Instant,
}

#[derive(Debug)]
struct State {
    definition: ImageRef,
    replicas: u32,
    instances: Vec<FakeInstance>,
    /// Images that exist in the "registry" (tags; each names [`registry_digest`]).
    registry: Vec<ImageRef>,
    /// Tags present on the backend and the digest each names there.
    local: HashMap<ImageRef, String>,
    /// Digests of images present on the backend.
    present: Vec<String>,
    data: FakeData,
    backups: BTreeMap<String, (FakeData, String, u64)>,
    /// Leftovers of backups that never completed: id → bytes.
    unfinished: BTreeMap<String, u64>,
    files: HashMap<String, Vec<u8>>,
    lock: Option<Holder>,
    faults: Vec<Fault>,
    calls: HashMap<Method, u32>,
    call_log: Vec<Method>,
    history: Vec<String>,
    violations: Vec<String>,
    next_id: u32,
    #[cfg_attr(not(feature = "engine"), allow(dead_code))] // read by `FakeBackups`
    next_backup: u32,
    /// The instance that last migrated the data, until it is ready.
    migrator: Option<(String, ImageRef, Instant)>,
    /// The data before a broken migration left it half-migrated.
    before_half: Option<FakeData>,
    ready_after: Duration,
    releases: Arc<Releases>,
}

/// Settings of a [`FakeDriver`].
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The running image.
    pub image: ImageRef,
    /// Its replica count.
    pub replicas: u32,
    /// Other images that exist in the registry.
    pub available: Vec<ImageRef>,
    /// How long a new instance takes to become ready.
    pub ready_after: Duration,
    /// Optional abilities.
    pub capabilities: Capabilities,
    /// Tags whose instances half-migrate the data and exit: a broken release. Only these
    /// (nothing in a tag's text makes it broken).
    pub broken: Vec<String>,
    /// Tags whose instances migrate and never become ready: an unhealthy release.
    pub unhealthy: Vec<String>,
}

/// How the releases of [`FakeConfig::broken`] and [`FakeConfig::unhealthy`] behave.
#[derive(Debug, Default)]
struct Releases {
    broken: Vec<String>,
    unhealthy: Vec<String>,
}

impl Releases {
    fn is_broken(&self, tag: &str) -> bool {
        self.broken.iter().any(|t| t == tag)
    }

    fn is_unhealthy(&self, tag: &str) -> bool {
        self.unhealthy.iter().any(|t| t == tag)
    }
}

impl FakeConfig {
    /// `image` × `replicas`, with `available` images pullable; ready after 10 ms; every
    /// capability; no broken or unhealthy release.
    pub fn new(image: ImageRef, replicas: u32, available: Vec<ImageRef>) -> Self {
        Self {
            image,
            replicas,
            available,
            ready_after: Duration::from_millis(10),
            capabilities: Capabilities::none()
                .with_exec()
                .with_archive()
                .with_lock()
                .with_logs(),
            broken: Vec::new(),
            unhealthy: Vec::new(),
        }
    }
}

/// An in-memory deployment that behaves like a real backend, and records what a test
/// needs to check the invariants.
///
/// - An instance of a tag in [`FakeConfig::broken`] half-migrates the data and exits.
/// - `logs` prints `<id> starting <image>`, then for a broken tag
///   `<id> migration to <tag> failed: broken release` and `<id> exit code 3`, else
///   `<id> serving` (`… health: unhealthy` for an unhealthy tag).
/// - An instance of a tag in [`FakeConfig::unhealthy`] migrates and never becomes ready.
/// - Any other new instance migrates the data to its tag when it starts, and becomes
///   ready after [`FakeConfig::ready_after`].
/// - Starting an instance of a version other than the data's while another instance runs
///   is recorded as a violation (two migrations at once, or old code on a new schema), as
///   is starting a new version before a backup of the current data exists.
///
/// Clones share the same deployment; [`FakeBackups`] from [`FakeDriver::backups`] shares
/// its database.
#[derive(Debug, Clone)]
pub struct FakeDriver {
    state: Arc<Mutex<State>>,
    crashed: Arc<Notify>,
    ready_after: Duration,
    capabilities: Capabilities,
    releases: Arc<Releases>,
}

impl FakeDriver {
    /// A deployment as `config` describes, its instances running and ready, on a database
    /// migrated to the running image's tag.
    pub fn new(config: FakeConfig) -> Self {
        let tag = config.image.tag().unwrap_or("latest").to_string();
        let mut registry = config.available.clone();
        registry.push(config.image.without_digest());
        let digest = config
            .image
            .digest()
            .map_or_else(|| registry_digest(&config.image), str::to_owned);
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        let instances = (0..config.replicas)
            .map(|i| FakeInstance {
                id: format!("app-{}", i + 1),
                image: config.image.clone(),
                digest: digest.clone(),
                running: true,
                started: long_ago,
            })
            .collect();
        let releases = Arc::new(Releases {
            broken: config.broken.clone(),
            unhealthy: config.unhealthy.clone(),
        });
        let state = State {
            definition: config.image.clone(),
            replicas: config.replicas,
            instances,
            registry,
            local: HashMap::from([(config.image.without_digest(), digest.clone())]),
            present: vec![digest],
            data: FakeData {
                version: tag,
                rows: 1000,
            },
            backups: BTreeMap::new(),
            unfinished: BTreeMap::new(),
            files: HashMap::new(),
            lock: None,
            faults: Vec::new(),
            calls: HashMap::new(),
            call_log: Vec::new(),
            history: Vec::new(),
            violations: Vec::new(),
            next_id: config.replicas + 1,
            next_backup: 1,
            migrator: None,
            before_half: None,
            ready_after: config.ready_after,
            releases: releases.clone(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            crashed: Arc::new(Notify::new()),
            ready_after: config.ready_after,
            capabilities: config.capabilities,
            releases,
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The backup engine over this deployment's database.
    #[cfg(feature = "engine")]
    pub fn backups(&self) -> FakeBackups {
        FakeBackups { fake: self.clone() }
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.lock_state().faults.push(fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.lock_state().faults.clear();
    }

    /// Signalled when a [`FaultKind::CrashAfterEffect`] fault fired.
    pub fn crashed(&self) -> Arc<Notify> {
        self.crashed.clone()
    }

    /// Every method call so far, in order.
    pub fn call_log(&self) -> Vec<Method> {
        self.lock_state().call_log.clone()
    }

    /// Resets the call counters and log (faults count calls from here).
    pub fn reset_calls(&self) {
        let mut s = self.lock_state();
        s.calls.clear();
        s.call_log.clear();
    }

    /// What happened, as readable lines ("start app-4 img:1.1.0", "backup b-1 of 1.0.0").
    pub fn history(&self) -> Vec<String> {
        self.lock_state().history.clone()
    }

    /// Invariant violations seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.lock_state().violations.clone()
    }

    /// The database now.
    pub fn data(&self) -> FakeData {
        self.lock_state().data.clone()
    }

    /// Adds rows, as application traffic would.
    pub fn write_rows(&self, n: u64) {
        self.lock_state().data.rows += n;
    }

    /// The definition's image and replicas.
    pub fn definition(&self) -> (ImageRef, u32) {
        let s = self.lock_state();
        (s.definition.clone(), s.replicas)
    }

    /// Leaves the parts of a backup `id` that never completed in the fake store, as a
    /// process killed mid-backup would (long ago: old enough to sweep).
    pub fn leave_unfinished(&self, id: &str, bytes: u64) {
        self.lock_state().unfinished.insert(id.to_string(), bytes);
    }

    /// The ids of unfinished backups' leftovers in the fake store.
    pub fn unfinished(&self) -> Vec<String> {
        self.lock_state().unfinished.keys().cloned().collect()
    }

    /// Points the backend's tag `image` at what its tag `to` names there, as someone's
    /// `docker tag` would: instances created from the tag afterwards run `to`'s image.
    /// Panics if `to` is not present.
    pub fn move_tag(&self, image: &ImageRef, to: &ImageRef) {
        let mut s = self.lock_state();
        let digest = s
            .resolve(to)
            .unwrap_or_else(|| panic!("{to} is not present on the fake backend"));
        s.local.insert(image.without_digest(), digest);
    }

    /// The digest the backend's tag `image` names now, if the tag is present.
    pub fn digest_of(&self, image: &ImageRef) -> Option<String> {
        self.lock_state()
            .local
            .get(&image.without_digest())
            .cloned()
    }

    /// The backend-side lock holder.
    pub fn lock_holder(&self) -> Option<Holder> {
        self.lock_state().lock.clone()
    }

    /// Counts the call and applies a fault: `Ok(Some(kind))` to apply after the effect.
    async fn enter(&self, method: Method) -> Result<bool> {
        let fault = {
            let mut s = self.lock_state();
            let n = {
                let c = s.calls.entry(method).or_insert(0);
                *c += 1;
                *c
            };
            s.call_log.push(method);
            let pos = s
                .faults
                .iter()
                .position(|f| f.method == method && f.nth == n);
            pos.map(|p| s.faults.remove(p))
        };
        match fault.map(|f| f.kind) {
            None => Ok(false),
            Some(FaultKind::Error(kind)) => {
                Err(Error::new(kind, format!("injected fault in {method:?}"))
                    .with_driver("fake")
                    .with_operation(format!("{method:?}")))
            }
            Some(FaultKind::Hang) => std::future::pending().await,
            Some(FaultKind::CrashAfterEffect) => Ok(true),
        }
    }

    /// After the effect of a call whose fault was crash-after-effect: never return.
    async fn leave<T>(&self, crash: bool, value: T) -> T {
        if crash {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
        value
    }

    fn is_ready(&self, i: &FakeInstance, now: Instant) -> bool {
        let tag = i.image.tag().unwrap_or("");
        i.running
            && !self.releases.is_unhealthy(tag)
            && now.duration_since(i.started) >= self.ready_after
    }
}

/// The digest the fake registry serves for a tag: a hash of the tag's reference.
pub fn registry_digest(image: &ImageRef) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(image.without_digest().to_string().as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl State {
    /// The digest `image` names on the backend: the one it pins if that image is present,
    /// else what its tag names; `None` if absent.
    fn resolve(&self, image: &ImageRef) -> Option<String> {
        match image.digest() {
            Some(d) => self.present.iter().any(|p| p == d).then(|| d.to_owned()),
            None => self.local.get(image).cloned(),
        }
    }

    fn start_instance(&mut self, image: &ImageRef) {
        let id = format!("app-{}", self.next_id);
        self.next_id += 1;
        let tag = image.tag().unwrap_or("latest").to_string();
        let others: Vec<String> = self
            .instances
            .iter()
            .filter(|i| i.running)
            .map(|i| i.image.tag().unwrap_or("").to_string())
            .collect();
        if self.data.version != tag {
            if !others.is_empty() {
                self.violations.push(format!(
                    "{id} ({tag}) started while {} ran: migration not alone",
                    others.join(", ")
                ));
            }
            // A half-migrated schema is what the previous data became: its backup counts.
            let pristine = self.before_half.as_ref().unwrap_or(&self.data);
            let backed_up = self.backups.values().any(|(d, _, _)| d == pristine);
            if !backed_up {
                self.violations.push(format!(
                    "{id} ({tag}) started on data version {} with no backup of it",
                    self.data.version
                ));
            }
            self.history
                .push(format!("migrate {} -> {tag} by {id}", self.data.version));
            self.migrator = Some((id.clone(), image.clone(), Instant::now()));
        } else if let Some((leader, leader_image, since)) = &self.migrator {
            let leader_ready = !self.releases.is_unhealthy(&tag)
                && self.instances.iter().any(|i| &i.id == leader && i.running)
                && since.elapsed() >= self.ready_after;
            if leader_image == image && !leader_ready {
                self.violations.push(format!(
                    "{id} ({tag}) started before the migrating leader {leader} was ready"
                ));
            }
        }
        let running = if self.releases.is_broken(&tag) {
            if self.before_half.is_none() {
                self.before_half = Some(self.data.clone());
            }
            self.data.version = format!("{tag}-half-migrated");
            false
        } else {
            self.before_half = None;
            self.data.version = tag.clone();
            true
        };
        self.history.push(format!("start {id} {image}"));
        let digest = self.resolve(image).unwrap_or_default();
        self.instances.push(FakeInstance {
            id,
            image: image.clone(),
            digest,
            running,
            started: Instant::now(),
        });
    }
}

fn snapshot_data(s: &State) -> serde_json::Value {
    let instances: Vec<serde_json::Value> = s
        .instances
        .iter()
        .map(|i| serde_json::json!({ "id": i.id, "image": i.image.to_string() }))
        .collect();
    serde_json::json!({ "instances": instances })
}

#[async_trait]
impl Driver for FakeDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: "fake".into(),
            target: "in-memory deployment".into(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn observe(&self) -> Result<Observed> {
        let crash = self.enter(Method::Observe).await?;
        let now = Instant::now();
        let seen = {
            let s = self.lock_state();
            Observed {
                image: s.definition.clone(),
                replicas: s.replicas,
                instances: s
                    .instances
                    .iter()
                    .map(|i| Instance {
                        id: i.id.clone(),
                        uid: None,
                        location: String::new(),
                        image: i.image.clone(),
                        digest: Some(i.digest.clone()).filter(|d| !d.is_empty()),
                        running: i.running,
                        ready: self.is_ready(i, now),
                    })
                    .collect(),
            }
        };
        self.leave(crash, Ok(seen)).await
    }

    async fn pull(&self, image: &ImageRef, events: &EventSink) -> Result<Pulled> {
        let crash = self.enter(Method::Pull).await?;
        let digest = {
            let mut s = self.lock_state();
            let tag = image.without_digest();
            let served = registry_digest(&tag);
            let known = match image.digest() {
                Some(d) => d == served || s.present.iter().any(|p| p == d),
                None => true,
            };
            if !s.registry.contains(&tag) || !known {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("{image} does not exist in the registry"),
                )
                .with_driver("fake")
                .with_operation("pull"));
            }
            let digest = image.digest().map_or(served, str::to_owned);
            if image.digest().is_none() {
                s.local.insert(tag, digest.clone());
            }
            if !s.present.contains(&digest) {
                s.present.push(digest.clone());
                s.history.push(format!("pull {image}"));
            }
            digest
        };
        events.progress(1, Some(1), Unit::Items);
        let pulled = Pulled {
            image: image.clone(),
            digest: Some(digest),
        };
        self.leave(crash, Ok(pulled)).await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let crash = self.enter(Method::Snapshot).await?;
        let snap = {
            let s = self.lock_state();
            Snapshot {
                driver: "fake".into(),
                image: s.definition.clone(),
                replicas: s.replicas,
                data: snapshot_data(&s),
            }
        };
        self.leave(crash, Ok(snap)).await
    }

    async fn set_image(&self, image: &ImageRef) -> Result<()> {
        let crash = self.enter(Method::SetImage).await?;
        {
            let mut s = self.lock_state();
            if s.resolve(image).is_none() {
                return Err(
                    Error::new(ErrorKind::NotFound, format!("{image} was not pulled"))
                        .with_driver("fake"),
                );
            }
            if s.definition != *image {
                s.definition = image.clone();
                s.history.push(format!("set_image {image}"));
            }
        }
        self.leave(crash, Ok(())).await
    }

    async fn scale(&self, replicas: u32) -> Result<()> {
        let crash = self.enter(Method::Scale).await?;
        {
            let mut guard = self.lock_state();
            let s = &mut *guard;
            s.replicas = replicas;
            let definition = s.definition.clone();
            // Replace what does not match the definition, and crashed instances.
            let before = s.instances.len();
            s.instances.retain(|i| i.image == definition && i.running);
            if s.instances.len() != before {
                s.history
                    .push(format!("remove {} instance(s)", before - s.instances.len()));
            }
            while s.instances.len() > replicas as usize {
                let gone = s.instances.pop().map(|i| i.id).unwrap_or_default();
                s.history.push(format!("stop {gone}"));
            }
            while s.instances.len() < replicas as usize {
                s.start_instance(&definition);
                // A crashed instance does not count towards the replicas, but the
                // backend does not restart it in a loop either.
                if s.instances.last().is_some_and(|i| !i.running) {
                    break;
                }
            }
            s.history.push(format!("scale {replicas}"));
        }
        self.leave(crash, Ok(())).await
    }

    async fn restore(&self, snapshot: &Snapshot) -> Result<()> {
        let crash = self.enter(Method::Restore).await?;
        if snapshot.driver != "fake" {
            return Err(Error::invalid(format!(
                "snapshot of the {} driver",
                snapshot.driver
            )));
        }
        {
            let mut guard = self.lock_state();
            let s = &mut *guard;
            s.definition = snapshot.image.clone();
            s.replicas = snapshot.replicas;
            let wanted: Vec<(String, String)> = snapshot.data["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    (
                        i["id"].as_str().unwrap_or_default().to_string(),
                        i["image"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            let current: Vec<(String, String)> = s
                .instances
                .iter()
                .map(|i| (i.id.clone(), i.image.to_string()))
                .collect();
            if current != wanted || s.instances.iter().any(|i| !i.running) {
                s.instances.clear();
                for (id, image) in wanted {
                    let image: ImageRef = image.parse()?;
                    if image.tag() != Some(s.data.version.as_str()) {
                        s.violations.push(format!(
                            "{id} ({image}) restored on data version {}",
                            s.data.version
                        ));
                    }
                    let digest = s.resolve(&image).unwrap_or_default();
                    s.instances.push(FakeInstance {
                        id,
                        image,
                        digest,
                        running: true,
                        started: Instant::now(),
                    });
                }
                s.history.push(format!(
                    "restore {} × {}",
                    snapshot.image, snapshot.replicas
                ));
            }
        }
        self.leave(crash, Ok(())).await
    }

    async fn release(&self, _snapshot: &Snapshot) -> Result<()> {
        let crash = self.enter(Method::Release).await?;
        self.lock_state().history.push("release".into());
        self.leave(crash, Ok(())).await
    }

    async fn exec(&self, at: &ExecTarget, argv: &[String], io: ExecIo) -> Result<ExitStatus> {
        let crash = self.enter(Method::Exec).await?;
        if !self.capabilities.exec {
            return Err(Error::unsupported("fake", "exec"));
        }
        let _ = at;
        // `echo ARGS…` prints its arguments; `cat` copies stdin; anything else exits 127.
        let (code, out) = match argv.first().map(String::as_str) {
            Some("echo") => (0, format!("{}\n", argv[1..].join(" ")).into_bytes()),
            Some("cat") => {
                let mut buf = Vec::new();
                if let Some(mut input) = io.stdin {
                    input
                        .read_to_end(&mut buf)
                        .await
                        .map_err(|e| Error::new(ErrorKind::Other, "stdin").with_source(e))?;
                }
                (0, buf)
            }
            _ => (127, Vec::new()),
        };
        if let Some(mut sink) = io.stdout {
            sink.write_all(&out)
                .await
                .map_err(|e| Error::new(ErrorKind::Other, "stdout").with_source(e))?;
            sink.shutdown()
                .await
                .map_err(|e| Error::new(ErrorKind::Other, "stdout").with_source(e))?;
        }
        let status = ExitStatus {
            code: Some(code),
            stderr_tail: if code == 0 {
                String::new()
            } else {
                "not found".into()
            },
        };
        self.leave(crash, Ok(status)).await
    }

    async fn archive(&self, at: &ExecTarget, path: &str) -> Result<ByteStream> {
        let crash = self.enter(Method::Archive).await?;
        if !self.capabilities.archive {
            return Err(Error::unsupported("fake", "archive"));
        }
        let bytes = self
            .lock_state()
            .files
            .get(&format!("{at}:{path}"))
            .cloned()
            .unwrap_or_default();
        let stream: ByteStream = Box::pin(std::io::Cursor::new(bytes));
        self.leave(crash, Ok(stream)).await
    }

    async fn unarchive(&self, at: &ExecTarget, path: &str, mut tar: ByteStream) -> Result<()> {
        let crash = self.enter(Method::Unarchive).await?;
        if !self.capabilities.archive {
            return Err(Error::unsupported("fake", "unarchive"));
        }
        let mut buf = Vec::new();
        tar.read_to_end(&mut buf)
            .await
            .map_err(|e| Error::new(ErrorKind::Other, "reading archive").with_source(e))?;
        self.lock_state().files.insert(format!("{at}:{path}"), buf);
        self.leave(crash, Ok(())).await
    }

    async fn logs(&self, instance: &str, lines: usize) -> Result<String> {
        let crash = self.enter(Method::Logs).await?;
        if !self.capabilities.logs {
            return Err(Error::unsupported("fake", "logs"));
        }
        let text = {
            let s = self.lock_state();
            let Some(i) = s.instances.iter().find(|i| i.id == instance) else {
                return Err(Error::new(ErrorKind::NotFound, "no such instance")
                    .with_driver("fake")
                    .with_operation("logs")
                    .with_subject(instance));
            };
            let tag = i.image.tag().unwrap_or("latest");
            let mut out = vec![format!("{} starting {}", i.id, i.image)];
            if self.releases.is_broken(tag) {
                out.push(format!(
                    "{} migration to {tag} failed: broken release",
                    i.id
                ));
                out.push(format!("{} exit code 3", i.id));
            } else if self.releases.is_unhealthy(tag) {
                out.push(format!("{} serving, health: unhealthy", i.id));
            } else {
                out.push(format!("{} serving", i.id));
            }
            let skip = out.len().saturating_sub(lines);
            out.into_iter()
                .skip(skip)
                .map(|l| l + "\n")
                .collect::<String>()
        };
        self.leave(crash, Ok(text)).await
    }

    async fn lock(&self, holder: &Holder) -> Result<()> {
        let crash = self.enter(Method::Lock).await?;
        if !self.capabilities.lock {
            return Err(Error::unsupported("fake", "lock"));
        }
        {
            let mut s = self.lock_state();
            match &s.lock {
                Some(h) if h.run != holder.run => {
                    return Err(
                        Error::new(ErrorKind::Locked, format!("locked by {h}")).with_driver("fake")
                    );
                }
                _ => s.lock = Some(holder.clone()),
            }
        }
        self.leave(crash, Ok(())).await
    }

    async fn unlock(&self, holder: &Holder) -> Result<()> {
        let crash = self.enter(Method::Unlock).await?;
        if !self.capabilities.lock {
            return Err(Error::unsupported("fake", "unlock"));
        }
        {
            let mut s = self.lock_state();
            if s.lock.as_ref().is_some_and(|h| h.run == holder.run) {
                s.lock = None;
            }
        }
        self.leave(crash, Ok(())).await
    }
}

/// The backup engine of a [`FakeDriver`]'s database: backups are copies of [`FakeData`].
#[cfg(feature = "engine")]
#[derive(Debug, Clone)]
pub struct FakeBackups {
    fake: FakeDriver,
}

#[cfg(feature = "engine")]
#[async_trait]
impl Backups for FakeBackups {
    async fn preflight(&self, _driver: &dyn Driver) -> Result<()> {
        let crash = self.fake.enter(Method::BackupPreflight).await?;
        self.fake.leave(crash, Ok(())).await
    }

    async fn backup(&self, scope: BackupScope<'_>, events: &EventSink) -> Result<BackupRef> {
        let crash = self.fake.enter(Method::Backup).await?;
        let backup = {
            let mut s = self.fake.lock_state();
            let id: BackupId = format!("b-{}", s.next_backup).parse()?;
            s.next_backup += 1;
            let data = s.data.clone();
            s.history.push(format!("backup {id} of {}", data.version));
            s.backups.insert(
                id.to_string(),
                (data.clone(), scope.app.to_string(), data.rows),
            );
            BackupRef {
                id,
                bytes: data.rows,
            }
        };
        events.progress(backup.bytes, Some(backup.bytes), Unit::Bytes);
        self.fake.leave(crash, Ok(backup)).await
    }

    async fn verify(&self, id: &BackupId, app: &str) -> Result<BackupRef> {
        let crash = self.fake.enter(Method::Verify).await?;
        let found = {
            let s = self.fake.lock_state();
            match s.backups.get(id.as_str()) {
                None => Err(Error::new(ErrorKind::NotFound, format!("no backup {id}"))),
                Some((_, owner, _)) if owner != app => Err(Error::new(
                    ErrorKind::Integrity,
                    format!("backup {id} belongs to {owner}, not {app}"),
                )),
                Some((_, _, bytes)) => Ok(BackupRef {
                    id: id.clone(),
                    bytes: *bytes,
                }),
            }
        };
        self.fake.leave(crash, found).await
    }

    async fn restore(
        &self,
        id: &BackupId,
        app: &str,
        _run: &str,
        _driver: &dyn Driver,
        _events: &EventSink,
    ) -> Result<()> {
        let crash = self.fake.enter(Method::RestoreData).await?;
        {
            let mut s = self.fake.lock_state();
            let Some((data, owner, _)) = s.backups.get(id.as_str()).cloned() else {
                return Err(Error::new(ErrorKind::NotFound, format!("no backup {id}")));
            };
            if owner != app {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!("backup {id} belongs to {owner}"),
                ));
            }
            if s.instances.iter().any(|i| i.running) {
                s.violations
                    .push(format!("restore of {id} while instances ran"));
            }
            s.history
                .push(format!("restore data {id} ({})", data.version));
            s.data = data;
            s.before_half = None;
        }
        self.fake.leave(crash, Ok(())).await
    }

    async fn list(&self) -> Result<Vec<BackupSummary>> {
        let crash = self.fake.enter(Method::List).await?;
        let list = {
            let s = self.fake.lock_state();
            s.backups
                .iter()
                .rev()
                .map(|(id, (data, app, bytes))| {
                    Ok(BackupSummary {
                        id: id.parse()?,
                        created: String::new(),
                        app: app.clone(),
                        image: data.version.clone(),
                        digest: None,
                        bytes: *bytes,
                        damaged: None,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        self.fake.leave(crash, Ok(list)).await
    }

    async fn prune(&self, app: &str, keep: usize, protected: &[BackupId]) -> Result<Vec<BackupId>> {
        let crash = self.fake.enter(Method::Prune).await?;
        let doomed: Vec<String> = {
            let s = self.fake.lock_state();
            let mut mine: Vec<String> = s
                .backups
                .iter()
                .filter(|(_, (_, owner, _))| owner == app)
                .map(|(id, _)| id.clone())
                .collect();
            // Ids are numbered; newest are the highest.
            mine.sort_by_key(|id| id.trim_start_matches("b-").parse::<u32>().unwrap_or(0));
            let excess = mine.len().saturating_sub(keep);
            mine.into_iter()
                .take(excess)
                .filter(|id| !protected.iter().any(|p| p.as_str() == id))
                .collect()
        };
        let mut deleted = Vec::new();
        for id in doomed {
            // One backup at a time, as a real store deletes them.
            let crash = self.fake.enter(Method::DeleteBackup).await?;
            {
                let mut s = self.fake.lock_state();
                s.backups.remove(&id);
                s.history.push(format!("delete backup {id}"));
            }
            deleted.push(id.parse()?);
            self.fake.leave(crash, ()).await;
        }
        self.fake.leave(crash, Ok(deleted)).await
    }

    async fn sweep(&self, protected: &[BackupId]) -> Result<Vec<Swept>> {
        let crash = self.fake.enter(Method::Sweep).await?;
        let swept = {
            let mut s = self.fake.lock_state();
            let doomed: Vec<String> = s
                .unfinished
                .keys()
                .filter(|id| !protected.iter().any(|p| p.as_str() == id.as_str()))
                .cloned()
                .collect();
            doomed
                .into_iter()
                .map(|id| {
                    let bytes = s.unfinished.remove(&id).unwrap_or(0);
                    s.history.push(format!("sweep unfinished {id}"));
                    Swept { name: id, bytes }
                })
                .collect()
        };
        self.fake.leave(crash, Ok(swept)).await
    }

    async fn restore_test(
        &self,
        id: &BackupId,
        app: &str,
        _driver: &dyn Driver,
        _events: &EventSink,
    ) -> Result<()> {
        let crash = self.fake.enter(Method::RestoreTest).await?;
        let found = {
            let mut s = self.fake.lock_state();
            match s.backups.get(id.as_str()) {
                None => Err(Error::new(ErrorKind::NotFound, format!("no backup {id}"))),
                Some((_, owner, _)) if owner != app => Err(Error::new(
                    ErrorKind::Integrity,
                    format!("backup {id} belongs to {owner}, not {app}"),
                )),
                Some(_) => {
                    s.history.push(format!("restore-test {id}"));
                    Ok(())
                }
            }
        };
        self.fake.leave(crash, found).await
    }
}
