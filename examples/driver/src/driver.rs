//! [`MemoryDriver`]: the `Driver` contract over the in-memory backend.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use cutover_core::{
    Capabilities, Driver, DriverInfo, Error, ErrorKind, EventSink, Holder, ImageRef, Observed,
    Pulled, Result, Snapshot, Unit,
};
use serde::{Deserialize, Serialize};

use crate::state::{Backend, Container, tag_key};

/// The driver kind, as registered and as recorded in snapshots.
pub const KIND: &str = "memory";

/// Where an in-memory deployment starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// The image the deployment runs (it is in the registry and on the backend).
    pub image: ImageRef,
    /// How many containers of it run.
    pub replicas: u32,
    /// Other images the registry holds, pullable but not yet on the backend.
    pub available: Vec<ImageRef>,
}

impl MemoryConfig {
    /// `replicas` containers of `image`; `available` can be pulled.
    pub fn new(image: ImageRef, replicas: u32, available: Vec<ImageRef>) -> Self {
        Self {
            image,
            replicas,
            available,
        }
    }
}

/// A driver for an in-memory deployment. Clones share the deployment.
///
/// Capabilities: `lock` and `logs`; `exec` and `archive` keep the trait's default bodies,
/// which return the typed [`ErrorKind::Unsupported`] error.
#[derive(Debug, Clone)]
pub struct MemoryDriver {
    backend: Arc<Mutex<Backend>>,
}

/// What a snapshot keeps of the deployment: the containers, with their identity, image
/// and state. Nothing secret.
#[derive(Debug, Serialize, Deserialize)]
struct Recorded {
    containers: Vec<Container>,
}

impl MemoryDriver {
    /// A deployment as `config` describes it.
    pub fn new(config: MemoryConfig) -> Self {
        let backend = Backend::new(config.image, config.replicas, config.available);
        Self {
            backend: Arc::new(Mutex::new(backend)),
        }
    }

    /// Whether the backend restarts container `id` when it exits (`None`: no such
    /// container): `false` for containers of an image set since the last release.
    pub fn restarts(&self, id: &str) -> Option<bool> {
        self.backend().find(id).map(|c| c.restarts)
    }

    /// The names of the stopped containers kept aside for a rollback.
    pub fn kept_aside(&self) -> Vec<String> {
        self.backend().aside.iter().map(|c| c.id.clone()).collect()
    }

    fn backend(&self) -> MutexGuard<'_, Backend> {
        // A panic elsewhere leaves no half-applied change: every method mutates under
        // the lock and cannot fail midway.
        self.backend.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_kind(snapshot: &Snapshot, operation: &str) -> Result<Recorded> {
        if snapshot.driver != KIND {
            return Err(Error::invalid(format!(
                "a snapshot of the {} driver cannot be used by the {KIND} driver",
                snapshot.driver
            ))
            .with_driver(KIND)
            .with_operation(operation));
        }
        serde_json::from_value(snapshot.data.clone()).map_err(|e| {
            Error::invalid("the snapshot's data is not a memory deployment's")
                .with_driver(KIND)
                .with_operation(operation)
                .with_source(e)
        })
    }
}

#[async_trait]
impl Driver for MemoryDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: KIND.into(),
            target: format!(
                "in-memory deployment of {}",
                self.backend().definition.image
            ),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with_lock().with_logs()
    }

    async fn observe(&self) -> Result<Observed> {
        let b = self.backend();
        Ok(Observed {
            image: b.definition.image.clone(),
            replicas: b.definition.replicas,
            instances: b.containers.iter().map(Container::instance).collect(),
        })
    }

    async fn pull(&self, image: &ImageRef, events: &EventSink) -> Result<Pulled> {
        let mut b = self.backend();
        let missing = || {
            Error::new(
                ErrorKind::NotFound,
                format!("the registry has no image {image}"),
            )
            .with_driver(KIND)
            .with_operation("pull")
        };
        let digest = match image.digest() {
            // By digest: any content the registry holds; no local tag moves.
            Some(pinned) => {
                if !b.registry.values().any(|d| d == pinned) {
                    return Err(missing());
                }
                pinned.to_string()
            }
            // By tag: the tag on the backend now names what the registry's does.
            None => {
                let digest = b
                    .registry
                    .get(&tag_key(image))
                    .cloned()
                    .ok_or_else(missing)?;
                b.local.insert(tag_key(image), digest.clone());
                digest
            }
        };
        b.present.insert(digest.clone());
        events.progress(1, Some(1), Unit::Items);
        Ok(Pulled {
            image: image.clone(),
            digest: Some(digest),
        })
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let b = self.backend();
        let recorded = Recorded {
            containers: b.containers.clone(),
        };
        Ok(Snapshot {
            driver: KIND.into(),
            image: b.definition.image.clone(),
            replicas: b.definition.replicas,
            data: serde_json::to_value(recorded).expect("containers serialise"),
        })
    }

    async fn set_image(&self, image: &ImageRef) -> Result<()> {
        let mut b = self.backend();
        b.resolve(image)
            .map_err(|e| e.with_operation("set_image"))?;
        if b.definition.image != *image {
            b.definition.image = image.clone();
            b.definition.withhold_restarts = true;
        }
        Ok(())
    }

    async fn scale(&self, replicas: u32) -> Result<()> {
        let mut b = self.backend();
        let image = b.definition.image.clone();
        let digest = b.resolve(&image).map_err(|e| e.with_operation("scale"))?;

        // Containers of another image are replaced: stopped and kept aside until release.
        let (current, older): (Vec<_>, Vec<_>) = std::mem::take(&mut b.containers)
            .into_iter()
            .partition(|c| c.is_of(&image, &digest));
        for mut c in older {
            c.stop();
            b.aside.push(c);
        }
        b.definition.replicas = replicas;

        // Keep running containers first, then the oldest; remove the rest.
        let mut current = current;
        current.sort_by_key(|c| !c.running);
        if replicas == 0 {
            current.iter_mut().for_each(Container::stop);
            b.containers = current;
            return Ok(());
        }
        current.truncate(replicas as usize);
        current.iter_mut().for_each(Container::start);
        b.containers = current;
        while b.containers.len() < replicas as usize {
            b.create()?;
        }
        Ok(())
    }

    async fn restore(&self, snapshot: &Snapshot) -> Result<()> {
        let recorded = Self::check_kind(snapshot, "restore")?;
        let mut b = self.backend();
        b.definition.image = snapshot.image.clone();
        b.definition.replicas = snapshot.replicas;
        b.definition.withhold_restarts = false;

        // Containers the snapshot does not have go; the snapshotted ones come back as
        // they were: the same container where the backend still has it, else recreated.
        let same = |c: &Container, r: &Container| c.id == r.id && c.uid == r.uid;
        b.containers
            .retain(|c| recorded.containers.iter().any(|r| same(c, r)));
        for r in &recorded.containers {
            if let Some(c) = b.containers.iter_mut().find(|c| same(c, r)) {
                if r.running {
                    c.start();
                } else {
                    c.stop();
                }
                c.restarts = r.restarts;
            } else if let Some(at) = b.aside.iter().position(|c| same(c, r)) {
                let mut c = b.aside.remove(at);
                if r.running {
                    c.start();
                }
                c.restarts = r.restarts;
                b.containers.push(c);
            } else {
                b.recreate(r)?;
            }
        }
        Ok(())
    }

    async fn release(&self, snapshot: &Snapshot) -> Result<()> {
        Self::check_kind(snapshot, "release")?;
        let mut b = self.backend();
        // One run at a time changes a target (the core's lock), so everything kept
        // aside was kept for this snapshot.
        b.aside.clear();
        b.definition.withhold_restarts = false;
        for c in &mut b.containers {
            c.restarts = true;
        }
        Ok(())
    }

    async fn logs(&self, instance: &str, lines: usize) -> Result<String> {
        let b = self.backend();
        let Some(c) = b.find(instance) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no container {instance} in this deployment"),
            )
            .with_driver(KIND)
            .with_operation("logs")
            .with_subject(instance));
        };
        let skip = c.log.len().saturating_sub(lines);
        Ok(c.log[skip..].join("\n"))
    }

    async fn lock(&self, holder: &Holder) -> Result<()> {
        let mut b = self.backend();
        match &b.lock {
            Some(other) if other.run != holder.run => Err(Error::new(
                ErrorKind::Locked,
                format!("the deployment is locked by {other}"),
            )
            .with_driver(KIND)
            .with_operation("lock")),
            _ => {
                b.lock = Some(holder.clone());
                Ok(())
            }
        }
    }

    async fn unlock(&self, holder: &Holder) -> Result<()> {
        let mut b = self.backend();
        if b.lock.as_ref().is_some_and(|h| h.run == holder.run) {
            b.lock = None;
        }
        Ok(())
    }
}
