//! The in-memory backend the driver manages: what a container engine or an orchestrator
//! would hold for a real driver.

use std::collections::{BTreeMap, BTreeSet};

use cutover_core::driver::same_image;
use cutover_core::{Error, ErrorKind, Holder, ImageRef, Instance, Result};
use serde::{Deserialize, Serialize};

use crate::driver::KIND;

/// One container of the application, running or stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Container {
    /// Stable name, `app-N`.
    pub id: String,
    /// This incarnation: a new one each time a container is created under a name.
    pub uid: String,
    /// The reference it was created from.
    pub image: ImageRef,
    /// The digest of the image it was created from.
    pub digest: String,
    /// Whether its process runs.
    pub running: bool,
    /// Whether the backend restarts it when it exits.
    pub restarts: bool,
    /// What it printed, oldest first (not part of a snapshot).
    #[serde(skip)]
    pub log: Vec<String>,
}

impl Container {
    /// What `observe` reports of it. An in-memory process is ready as soon as it runs.
    pub fn instance(&self) -> Instance {
        Instance {
            id: self.id.clone(),
            uid: Some(self.uid.clone()),
            location: String::new(),
            image: self.image.clone(),
            digest: Some(self.digest.clone()),
            running: self.running,
            ready: self.running,
        }
    }

    /// Whether it is a container of `image` whose content is `digest`.
    pub fn is_of(&self, image: &ImageRef, digest: &str) -> bool {
        same_image(&self.image, image) && self.digest == digest
    }

    pub fn start(&mut self) {
        if !self.running {
            self.running = true;
            self.log
                .push(format!("{} started from {}", self.id, self.image));
        }
    }

    pub fn stop(&mut self) {
        if self.running {
            self.running = false;
            self.log.push(format!("{} stopped", self.id));
        }
    }
}

/// The deployment definition: what new containers are created from.
#[derive(Debug, Clone)]
pub(crate) struct Definition {
    pub image: ImageRef,
    pub replicas: u32,
    /// `image` was set since the last release: its containers get no restart policy, so
    /// a failing start-up does not run its migrations again while nobody watches.
    pub withhold_restarts: bool,
}

/// Everything the backend holds.
#[derive(Debug)]
pub(crate) struct Backend {
    pub definition: Definition,
    /// The application's containers, as `observe` lists them.
    pub containers: Vec<Container>,
    /// Stopped containers of an older definition, kept for a fast restore until release.
    pub aside: Vec<Container>,
    /// The registry: `repository:tag` → digest.
    pub registry: BTreeMap<String, String>,
    /// Tags pulled onto the backend: `repository:tag` → the digest it named when pulled.
    pub local: BTreeMap<String, String>,
    /// Digests of the images present on the backend.
    pub present: BTreeSet<String>,
    pub lock: Option<Holder>,
    next_ordinal: u64,
    next_uid: u64,
}

/// The registry key of a reference: `repository:tag`, without a digest.
pub(crate) fn tag_key(image: &ImageRef) -> String {
    image.without_digest().to_string()
}

impl Backend {
    /// A backend running `replicas` containers of `image`, whose registry also holds
    /// `available`. Digests are assigned in order, as a registry would on push.
    pub fn new(image: ImageRef, replicas: u32, available: Vec<ImageRef>) -> Self {
        let mut registry = BTreeMap::new();
        for (n, i) in std::iter::once(&image).chain(&available).enumerate() {
            registry
                .entry(tag_key(i))
                .or_insert_with(|| match i.digest() {
                    Some(pinned) => pinned.to_string(),
                    None => format!("sha256:{:064x}", n + 1),
                });
        }
        let running = registry[&tag_key(&image)].clone();
        let mut backend = Backend {
            definition: Definition {
                image: image.clone(),
                replicas,
                withhold_restarts: false,
            },
            containers: Vec::new(),
            aside: Vec::new(),
            local: BTreeMap::from([(tag_key(&image), running.clone())]),
            present: BTreeSet::from([running]),
            registry,
            lock: None,
            next_ordinal: 1,
            next_uid: 1,
        };
        for _ in 0..replicas {
            backend.create().expect("the running image is present");
        }
        backend
    }

    /// The digest `image` runs on this backend: the one it pins, else the one its tag
    /// named when pulled. An image that was not pulled cannot run.
    pub fn resolve(&self, image: &ImageRef) -> Result<String> {
        let found = match image.digest() {
            Some(pinned) => self.present.contains(pinned).then(|| pinned.to_string()),
            None => self.local.get(&tag_key(image)).cloned(),
        };
        found.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("image {image} is not on the backend; pull it first"),
            )
            .with_driver(KIND)
        })
    }

    /// Creates and starts a container of the definition.
    pub fn create(&mut self) -> Result<()> {
        let image = self.definition.image.clone();
        let digest = self.resolve(&image)?;
        let id = format!("app-{}", self.next_ordinal);
        self.next_ordinal += 1;
        let mut container = Container {
            id: id.clone(),
            uid: self.new_uid(),
            image: image.clone(),
            digest,
            running: false,
            restarts: !self.definition.withhold_restarts,
            log: vec![format!("{id} created from {image}")],
        };
        container.start();
        self.containers.push(container);
        Ok(())
    }

    /// Recreates `recorded` (a container a snapshot holds) under its name, from its image.
    pub fn recreate(&mut self, recorded: &Container) -> Result<()> {
        if !self.present.contains(&recorded.digest) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "image {} ({}) of snapshotted {} is no longer on the backend",
                    recorded.image, recorded.digest, recorded.id
                ),
            )
            .with_driver(KIND)
            .with_operation("restore"));
        }
        let mut container = Container {
            uid: self.new_uid(),
            running: false,
            log: vec![format!(
                "{} recreated from {} by a restore",
                recorded.id, recorded.image
            )],
            ..recorded.clone()
        };
        if recorded.running {
            container.start();
        }
        self.containers.push(container);
        Ok(())
    }

    fn new_uid(&mut self) -> String {
        let uid = format!("{:012x}", self.next_uid);
        self.next_uid += 1;
        uid
    }

    /// A container the backend still has, listed or kept aside.
    pub fn find(&self, id: &str) -> Option<&Container> {
        self.containers
            .iter()
            .chain(&self.aside)
            .find(|c| c.id == id)
    }
}
