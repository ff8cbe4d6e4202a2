//! [`DockerDriver`]: the `Driver` contract on one Docker engine.
//!
//! Docker specifics of the contract:
//! - **Instances** are containers, identified by name; `location` is empty (one engine).
//!   Readiness is Docker's health status (`healthy`) when the container has a healthcheck,
//!   else running. A container crash-looping under its restart policy is reported as not
//!   running (see [`crate::target::is_crash_looping`]), so the core detects a release that
//!   exits at start-up without waiting for the health deadline.
//! - **Desired replicas** are the number of instance containers, running or not (a crashed
//!   instance still counts); kept and definition containers do not count.
//! - **The definition** lives in a definition container (see [`crate::definition`]).
//! - **`scale`** stops instances it takes out of service and renames them
//!   `<name>-cutover-kept` (unless one is kept under that name already, in which case the
//!   newer one is removed: the older one is what rollback needs). New instances are
//!   named as Compose would (`project_service_N`, `project-service-N`) or `name`,
//!   `name-N`, and get Compose's container-number label for their slot. Instances of a
//!   definition pending release (a new image, see [`crate::definition`]) are created
//!   with restart policy `no`: Docker never restarts a release that has not been healthy
//!   once, even when no cutover process watches it.
//! - **`restore`** removes instances the snapshot does not have, renames kept containers
//!   back and starts them, and recreates from the snapshot what is gone (see
//!   [`crate::snapshot`] for how secrets are handled). With a compose file, it puts the
//!   recorded image value (and `.env` value) back (see [`crate::compose`]); a file that is
//!   gone or can no longer be edited is left alone with a warning, so the containers still
//!   come back.
//! - **`pull`**, without `compose.file`, warns when the compose file Compose's labels
//!   (`com.docker.compose.project.config_files`, `…working_dir`) name still sets the
//!   service's image: a later `docker-compose up` would start it on the migrated schema.
//!   With `compose.file`, it warns when those labels name other files only.
//! - **`release`** gives the instances of the definition's image the definition's restart
//!   policy (`update`, no restart), marks the definition released, and removes kept
//!   containers, never their volumes. Kept containers keep their own policy, so a
//!   rollback (`restore`) brings the old instances back with the old definition's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerUpdateBody, RestartPolicy};
use bollard::query_parameters::{RenameContainerOptions, StopContainerOptions};
use cutover_core::{
    ByteStream, Capabilities, Driver, DriverInfo, ErrorKind, EventSink, ExecIo, ExecTarget,
    ExitStatus, Holder, ImageRef, Instance, Observed, Pulled, Result, Snapshot,
};

use crate::compose::ComposeFile;
use crate::config::DockerConfig;
use crate::definition::{self, Definition};
use crate::error::{self, KIND};
use crate::snapshot::{self, Recorded, RecordedInstance, SnapshotData};
use crate::spec::{self, Spec};
use crate::target::{self, COMPOSE_NUMBER, Containers, KEPT_SUFFIX, Selector};

/// The Docker driver; build it with [`crate::connect`].
#[derive(Debug, Clone)]
pub struct DockerDriver {
    pub(crate) docker: Docker,
    pub(crate) selector: Selector,
    pub(crate) config: DockerConfig,
    pub(crate) host: String,
    /// The compose file whose `image:` line `set_image` edits, when configured.
    pub(crate) compose_file: Option<ComposeFile>,
    /// Whether the first `observe` looked for an unmanaged compose file (it reads files:
    /// once per driver, not on every readiness poll).
    pub(crate) unmanaged_checked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DockerDriver {
    pub(crate) async fn seen(&self, op: &str) -> Result<Containers> {
        self.selector.containers(&self.docker, op).await
    }

    async fn definition(&self, seen: &Containers, op: &str) -> Result<Definition> {
        definition::read(&self.docker, seen, op)
            .await?
            .ok_or_else(|| {
                error::driver(
                    ErrorKind::NotFound,
                    op,
                    "",
                    format!("no container of {} exists", self.selector.describe()),
                )
            })
    }

    async fn start(&self, name: &str, op: &str) -> Result<()> {
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) if error::is_not_modified(&e) => Ok(()),
            Err(e) => Err(error::docker(op, name, e)),
        }
    }

    async fn stop(&self, name: &str, op: &str) -> Result<()> {
        let options = StopContainerOptions {
            t: Some(self.config.stop_timeout().as_secs() as i32),
            ..Default::default()
        };
        match self.docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if error::is_not_modified(&e) || error::is_not_found(&e) => Ok(()),
            Err(e) => Err(error::docker(op, name, e)),
        }
    }

    async fn rename(&self, from: &str, to: &str, op: &str) -> Result<()> {
        let options = RenameContainerOptions {
            name: to.to_string(),
        };
        self.docker
            .rename_container(from, options)
            .await
            .map_err(|e| error::docker(op, from, e))
    }

    /// Stops an instance taken out of service and, if `keep`, keeps it aside unless one is
    /// kept under its name already (then this newer one is removed).
    async fn retire(
        &self,
        c: &ContainerInspectResponse,
        keep: bool,
        kept: &HashSet<String>,
    ) -> Result<()> {
        let name = target::name_of(c);
        self.stop(name, "scale").await?;
        if !keep || kept.contains(name) {
            definition::remove(&self.docker, name, "scale", false).await
        } else {
            self.rename(name, &format!("{name}{KEPT_SUFFIX}"), "scale")
                .await
        }
    }

    /// Creates and starts the instance of `slot` from the definition; without a restart
    /// policy while the definition is pending release.
    async fn create_slot(&self, def: &Definition, seen: &Containers, slot: u32) -> Result<()> {
        let name = self.selector.slot_name(self.selector.naming(seen), slot);
        let mut spec = def.spec.clone();
        if def.pending_release {
            spec.set_restart_policy(&spec::no_restart());
        }
        if matches!(self.selector, Selector::Compose { .. }) {
            let mut labels = spec.labels();
            labels.insert(COMPOSE_NUMBER.to_string(), slot.to_string());
            spec.set_labels(&labels);
        }
        spec::create(&self.docker, "scale", &name, &def.image, &spec).await?;
        self.start(&name, "scale").await
    }

    /// Gives every instance of the definition's image the definition's restart policy.
    async fn supervise(&self, def: &Definition, seen: &Containers) -> Result<()> {
        let policy = def.spec.restart_policy();
        for c in seen
            .instances
            .iter()
            .filter(|c| target::image_of(c) == def.image)
        {
            self.set_restart(c, target::name_of(c), &policy, "release")
                .await?;
        }
        Ok(())
    }

    /// Gives container `c`, now named `name`, restart policy `policy` in place (Docker's
    /// `update`: nothing restarts); already so: nothing.
    async fn set_restart(
        &self,
        c: &ContainerInspectResponse,
        name: &str,
        policy: &RestartPolicy,
        op: &str,
    ) -> Result<()> {
        let current = c
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.clone())
            .unwrap_or_default();
        if spec::same_restart(&current, policy) {
            return Ok(());
        }
        let update = ContainerUpdateBody {
            restart_policy: Some(policy.clone()),
            ..Default::default()
        };
        self.docker
            .update_container(name, update)
            .await
            .map_err(|e| {
                let hint = format!(
                    "{name} keeps restart policy {} until `docker update --restart {} {name}`",
                    spec::describe_restart(&current),
                    spec::describe_restart(policy),
                );
                error::docker_with_hint(op, name, e, &hint)
            })
    }

    /// Environment values that restore may take by hash: from every container of the
    /// target and from the default environment of the snapshotted images.
    async fn env_sources(
        &self,
        seen: &Containers,
        data: &SnapshotData,
    ) -> Result<Vec<(String, String)>> {
        let mut sources: Vec<(String, String)> = seen
            .instances
            .iter()
            .chain(&seen.kept)
            .chain(&seen.definitions)
            .flat_map(|c| Spec::of(c).env_pairs())
            .collect();
        let images: HashSet<&str> = data
            .instances
            .iter()
            .map(|i| i.spec.image.as_str())
            .chain([data.definition.image.as_str()])
            .collect();
        for image in images {
            let config = spec::image_config(&self.docker, image).await?;
            if let Some(env) = config["Env"].as_array() {
                sources.extend(env.iter().filter_map(|e| e.as_str()).map(spec::split_env));
            }
        }
        Ok(sources)
    }

    /// The digest each instance runs, by container name: among the repository digests
    /// of its image, the one its reference pins if listed (an image pushed under several
    /// manifests has several), else the first of its repository.
    async fn digests(&self, seen: &Containers) -> HashMap<String, Option<String>> {
        let mut repo_digests: HashMap<String, Vec<String>> = HashMap::new();
        let mut out = HashMap::new();
        for c in &seen.instances {
            let Some(id) = c.image.clone() else { continue };
            if !repo_digests.contains_key(&id) {
                let listed = match self.docker.inspect_image(&id).await {
                    Ok(i) => i.repo_digests.unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                repo_digests.insert(id.clone(), listed);
            }
            let reference = target::image_of(c).parse::<ImageRef>().ok();
            let repository = reference.as_ref().map(|i| i.repository());
            let of_repository: Vec<&str> = repo_digests[&id]
                .iter()
                .filter_map(|d| d.split_once('@'))
                .filter(|(r, _)| Some(*r) == repository.as_deref())
                .map(|(_, d)| d)
                .collect();
            let pinned = reference
                .as_ref()
                .and_then(|r| r.digest())
                .filter(|d| of_repository.contains(d));
            let digest = pinned.or(of_repository.first().copied());
            out.insert(target::name_of(c).to_string(), digest.map(str::to_owned));
        }
        out
    }
}

/// Compose's labels naming the files and directory a container's project came from.
const COMPOSE_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
const COMPOSE_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";

impl DockerDriver {
    /// The compose files Compose's labels on the instances name, readable here, with the
    /// service label of the container naming them.
    fn labelled_files(seen: &Containers) -> Vec<(PathBuf, String)> {
        let mut out: Vec<(PathBuf, String)> = Vec::new();
        for c in seen.instances.iter().chain(&seen.kept) {
            let labels = target::labels_of(c);
            let (Some(files), Some(service)) = (
                labels.get(COMPOSE_CONFIG_FILES),
                labels.get(COMPOSE_SERVICE),
            ) else {
                continue;
            };
            let dir = labels.get(COMPOSE_WORKING_DIR).map(PathBuf::from);
            for file in files.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                let mut path = PathBuf::from(file);
                if path.is_relative()
                    && let Some(dir) = &dir
                {
                    path = dir.join(path);
                }
                if path.is_file() && !out.iter().any(|(p, _)| *p == path) {
                    out.push((path, service.clone()));
                }
            }
        }
        out
    }

    /// The warning that a compose file Compose used for the instances is one cutover does
    /// not edit, so that a later `docker-compose up` starts its image again on the
    /// migrated schema: without `compose.file`, the first labelled file with the service's
    /// own `image:` line; with it, labelled files none of which is `compose.file`. `None`
    /// without such labels or files readable here.
    pub(crate) fn unmanaged_file_warning(&self, seen: &Containers) -> Option<String> {
        let labelled = Self::labelled_files(seen);
        if let Some(configured) = &self.compose_file {
            let mine = std::fs::canonicalize(&configured.path).ok();
            let used = labelled
                .iter()
                .any(|(p, _)| std::fs::canonicalize(p).ok() == mine);
            if labelled.is_empty() || used {
                return None;
            }
            let names: Vec<String> = labelled
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            return Some(format!(
                "the service's containers were started by Compose from {}, but compose.file is \
                 {}: cutover edits only that file, and a later `docker-compose up` from the \
                 other would start its image on the schema cutover migrated. Point \
                 compose.file at the file Compose uses",
                names.join(", "),
                configured.path.display()
            ));
        }
        for (path, service) in labelled {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Ok(line) = crate::compose::find_image(&text, &service) {
                return Some(format!(
                    "the compose file {} names service `{service}`'s image on line {} ({}), \
                     and cutover does not edit it because [driver.docker] has no \
                     `compose.file`: a later `docker-compose up` would start that image on \
                     the schema cutover migrated. Set compose.file = \"{}\" in \
                     [driver.docker] so that upgrades and rollbacks keep it in step",
                    path.display(),
                    line.line,
                    line.value,
                    path.display()
                ));
            }
        }
        None
    }
}

fn parse_image(image: &str, op: &str, subject: &str) -> Result<ImageRef> {
    image.parse().map_err(|e: cutover_core::Error| {
        error::driver(
            ErrorKind::Other,
            op,
            subject,
            format!(
                "container image {image:?} is not a reference cutover understands: {}",
                e.message()
            ),
        )
    })
}

fn invalid_snapshot(message: String) -> cutover_core::Error {
    error::driver(ErrorKind::InvalidInput, "restore", "", message)
}

#[async_trait]
impl Driver for DockerDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: KIND.to_string(),
            target: format!("{} on {}", self.selector.describe(), self.host),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn observe(&self) -> Result<Observed> {
        let seen = self.seen("observe").await?;
        // Logged at the first observation, from the containers it lists anyway, so that
        // every command that looks at the deployment shows it, `cutover plan` included
        // (the CLI turns warning records into warning events).
        if !self
            .unmanaged_checked
            .swap(true, std::sync::atomic::Ordering::Relaxed)
            && let Some(warning) = self.unmanaged_file_warning(&seen)
        {
            tracing::warn!("{warning}");
        }
        let def = self.definition(&seen, "observe").await?;
        let digests = self.digests(&seen).await;
        let instances = seen
            .instances
            .iter()
            .map(|c| {
                let name = target::name_of(c);
                Ok(Instance {
                    id: name.to_string(),
                    uid: c.id.clone(),
                    location: String::new(),
                    image: parse_image(target::image_of(c), "observe", name)?,
                    digest: digests.get(name).cloned().flatten(),
                    running: target::is_running(c) && !target::is_crash_looping(c),
                    ready: target::is_ready(c) && !target::is_crash_looping(c),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Observed {
            image: parse_image(&def.image, "observe", "")?,
            replicas: instances.len() as u32,
            instances,
        })
    }

    async fn pull(&self, image: &ImageRef, events: &EventSink) -> Result<Pulled> {
        // Every upgrade pulls: the run's own warning, whatever subscriber the caller has.
        if let Ok(seen) = self.seen("pull").await
            && let Some(warning) = self.unmanaged_file_warning(&seen)
        {
            events.warn(warning);
        }
        crate::pull::pull(&self.docker, image, events).await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let seen = self.seen("snapshot").await?;
        let def = self.definition(&seen, "snapshot").await?;
        let salt = snapshot::new_salt();
        let instances = seen
            .instances
            .iter()
            .map(|c| RecordedInstance {
                name: target::name_of(c).to_string(),
                running: target::is_running(c),
                spec: Recorded::new(target::image_of(c), &Spec::of(c), &salt),
            })
            .collect::<Vec<_>>();
        let compose = match &self.compose_file {
            Some(f) => Some(f.record("snapshot")?),
            None => None,
        };
        let data = SnapshotData {
            format: snapshot::FORMAT,
            compose,
            target: self.selector.key(),
            definition: Recorded::new(&def.image, &def.spec, &salt),
            persisted: def.persisted,
            salt,
            instances,
        };
        Snapshot::of(
            KIND,
            parse_image(&def.image, "snapshot", "")?,
            data.instances.len() as u32,
            &data,
        )
    }

    async fn set_image(&self, image: &ImageRef) -> Result<()> {
        let seen = self.seen("set_image").await?;
        let def = self.definition(&seen, "set_image").await?;
        let wanted = image.to_string();
        // The file first: one that cannot be edited fails before the definition changes.
        if let Some(file) = &self.compose_file {
            file.set_image(&wanted, "set_image")?;
        }
        if def.image == wanted && def.persisted {
            return Ok(());
        }
        let pending_release = def.pending_release || def.image != wanted;
        definition::write(
            &self.docker,
            &self.selector,
            &seen,
            &wanted,
            &def.spec,
            pending_release,
            "set_image",
        )
        .await
    }

    async fn scale(&self, replicas: u32) -> Result<()> {
        let seen = self.seen("scale").await?;
        let def = self.definition(&seen, "scale").await?;
        if !def.persisted {
            definition::write(
                &self.docker,
                &self.selector,
                &seen,
                &def.image,
                &def.spec,
                def.pending_release,
                "scale",
            )
            .await?;
        }
        let kept: HashSet<String> = seen
            .kept
            .iter()
            .map(|c| target::name_of(c).trim_end_matches(KEPT_SUFFIX).to_string())
            .collect();
        // Out of service first, so a new version never starts beside an old one.
        let mut serving: BTreeMap<u32, &ContainerInspectResponse> = BTreeMap::new();
        for c in &seen.instances {
            let slot = self.selector.slot_of(c).filter(|s| *s <= replicas);
            let current = target::image_of(c) == def.image;
            match slot {
                Some(s) if current && !serving.contains_key(&s) => {
                    serving.insert(s, c);
                }
                // Scaling down within one definition drops the extras.
                _ => self.retire(c, replicas == 0 || !current, &kept).await?,
            }
        }
        for slot in 1..=replicas {
            match serving.get(&slot) {
                Some(c) if target::is_running(c) => {}
                Some(c) => self.start(target::name_of(c), "scale").await?,
                None => self.create_slot(&def, &seen, slot).await?,
            }
        }
        Ok(())
    }

    async fn restore(&self, snap: &Snapshot) -> Result<()> {
        let data: SnapshotData = snap.data_of(KIND)?;
        if data.format != snapshot::FORMAT || data.target != self.selector.key() {
            return Err(invalid_snapshot(format!(
                "the snapshot is of {} (format {}), not {}",
                data.target,
                data.format,
                self.selector.key()
            )));
        }
        let compose = match (&self.compose_file, &data.compose) {
            // The containers matter more than the file (it is read at the next
            // `docker compose up`): one that is gone or no longer editable is left as it
            // is, with a warning, rather than failing a rollback with the app stopped.
            (Some(file), Some(record)) => match file.check_restore(record, "restore") {
                Ok(()) => Some((file, record)),
                Err(e) => {
                    let env = record.env.as_ref().map_or(String::new(), |v| {
                        format!(
                            " and {}={} in {}",
                            v.variable,
                            v.value_token,
                            v.path.display()
                        )
                    });
                    tracing::warn!(
                        "the compose file is left as it is; put image {}{env} back by hand: {}",
                        record.image_token,
                        e.report()
                    );
                    None
                }
            },
            _ => None,
        };
        let seen = self.seen("restore").await?;
        let salt = data.salt.as_str();
        let current: HashMap<&str, &ContainerInspectResponse> = seen
            .instances
            .iter()
            .map(|c| (target::name_of(c), c))
            .collect();
        // A kept container is the snapshotted instance only if it matches the record: after
        // a committed upgrade, rollback_stop keeps the new version's containers aside.
        let kept_by_name: HashMap<&str, &ContainerInspectResponse> =
            seen.kept.iter().map(|c| (target::name_of(c), c)).collect();
        let mut kept: HashSet<String> = HashSet::new();
        let mut stale_kept: Vec<String> = Vec::new();
        for r in &data.instances {
            let kept_name = format!("{}{KEPT_SUFFIX}", r.name);
            if let Some(c) = kept_by_name.get(kept_name.as_str()) {
                if r.spec
                    .matches(target::image_of(c), &Spec::of(c), salt, false)
                {
                    kept.insert(kept_name);
                } else {
                    stale_kept.push(kept_name);
                }
            }
        }
        let unchanged = |r: &RecordedInstance| {
            current.get(r.name.as_str()).is_some_and(|c| {
                r.spec
                    .matches(target::image_of(c), &Spec::of(c), salt, false)
            })
        };

        // Everything that must be recreated is resolved before anything changes.
        let sources = self.env_sources(&seen, &data).await?;
        let def_spec = match definition::read(&self.docker, &seen, "restore").await? {
            // Before cutover changed anything the instances were the definition.
            _ if !data.persisted => None,
            Some(d) if d.persisted && data.definition.matches(&d.image, &d.spec, salt, true) => {
                None
            }
            _ => Some(data.definition.resolve(salt, &sources, "definition")?),
        };
        let mut recreate = HashMap::new();
        for r in &data.instances {
            let kept_name = format!("{}{KEPT_SUFFIX}", r.name);
            if !unchanged(r) && !kept.contains(kept_name.as_str()) {
                recreate.insert(r.name.clone(), r.spec.resolve(salt, &sources, &r.name)?);
            }
        }

        for c in &seen.instances {
            let name = target::name_of(c);
            if !data
                .instances
                .iter()
                .any(|r| r.name == name && unchanged(r))
            {
                definition::remove(&self.docker, name, "restore", false).await?;
            }
        }
        for name in &stale_kept {
            definition::remove(&self.docker, name, "restore", false).await?;
        }
        if let Some((file, record)) = compose {
            file.restore(record, "restore")?;
        }
        if let Some(spec) = def_spec {
            let image = &data.definition.image;
            // What the snapshot recorded served before: not pending release.
            definition::write(
                &self.docker,
                &self.selector,
                &seen,
                image,
                &spec,
                false,
                "restore",
            )
            .await?;
        } else if !data.persisted {
            for c in &seen.definitions {
                definition::remove(&self.docker, target::name_of(c), "restore", false).await?;
            }
        }
        for r in &data.instances {
            let kept_name = format!("{}{KEPT_SUFFIX}", r.name);
            // Containers put back as they are get the recorded restart policy too: one
            // created while its definition was pending release may still lack it.
            let policy = Spec {
                body: r.spec.body.clone(),
                env: Vec::new(),
            }
            .restart_policy();
            let running = if unchanged(r) {
                let c = current[r.name.as_str()];
                self.set_restart(c, &r.name, &policy, "restore").await?;
                target::is_running(c)
            } else if let Some(spec) = recreate.get(&r.name) {
                spec::create(&self.docker, "restore", &r.name, &r.spec.image, spec).await?;
                false
            } else {
                self.rename(&kept_name, &r.name, "restore").await?;
                self.set_restart(
                    kept_by_name[kept_name.as_str()],
                    &r.name,
                    &policy,
                    "restore",
                )
                .await?;
                false
            };
            match (r.running, running) {
                (true, false) => self.start(&r.name, "restore").await?,
                (false, true) => self.stop(&r.name, "restore").await?,
                _ => {}
            }
        }
        Ok(())
    }

    async fn release(&self, _snapshot: &Snapshot) -> Result<()> {
        let seen = self.seen("release").await?;
        if let Some(def) = definition::read(&self.docker, &seen, "release").await? {
            self.supervise(&def, &seen).await?;
            // Marked released last: a crash before it re-runs the (idempotent) updates.
            if def.pending_release {
                definition::write(
                    &self.docker,
                    &self.selector,
                    &seen,
                    &def.image,
                    &def.spec,
                    false,
                    "release",
                )
                .await?;
            }
        }
        for c in &seen.kept {
            definition::remove(&self.docker, target::name_of(c), "release", false).await?;
        }
        Ok(())
    }

    async fn exec(&self, at: &ExecTarget, argv: &[String], io: ExecIo) -> Result<ExitStatus> {
        let name = self.resolve(at, "exec").await?;
        crate::exec::exec(&self.docker, &name, argv, io).await
    }

    async fn archive(&self, at: &ExecTarget, path: &str) -> Result<ByteStream> {
        let name = self.resolve(at, "archive").await?;
        crate::exec::archive(&self.docker, &name, path).await
    }

    async fn unarchive(&self, at: &ExecTarget, path: &str, tar: ByteStream) -> Result<()> {
        let name = self.resolve(at, "unarchive").await?;
        crate::exec::unarchive(&self.docker, &name, path, tar).await
    }

    async fn logs(&self, instance: &str, lines: usize) -> Result<String> {
        // Only the target's own instances: not the database's or another app's container.
        let seen = self.seen("logs").await?;
        if !seen
            .instances
            .iter()
            .any(|c| target::name_of(c) == instance)
        {
            return Err(error::driver(
                ErrorKind::NotFound,
                "logs",
                instance,
                format!("no instance {instance} of {}", self.selector.describe()),
            ));
        }
        crate::logs::tail(&self.docker, instance, lines).await
    }

    async fn lock(&self, holder: &Holder) -> Result<()> {
        crate::lock::lock(self, holder).await
    }

    async fn unlock(&self, holder: &Holder) -> Result<()> {
        crate::lock::unlock(self, holder).await
    }
}
