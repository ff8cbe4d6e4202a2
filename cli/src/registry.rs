//! Drivers by name: the built-in ones and those embedders and third parties register.
//!
//! A driver crate exposes a function that adds itself:
//!
//! ```ignore
//! pub fn register(registry: &mut cutover::Registry) {
//!     registry.register("nomad", "HashiCorp Nomad jobs", |ctx| Box::pin(async move {
//!         let settings: NomadConfig = ctx.settings()?;
//!         Ok(cutover::Target::new(Arc::new(NomadDriver::connect(settings).await?)))
//!     }));
//! }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use cutover_core::testkit::{FakeConfig, FakeDriver};
use cutover_core::{Backups, Driver, Error, ImageRef, Result};
use serde::Deserialize;

/// What a factory gets: the driver's own config table and the application's settings.
#[derive(Debug, Clone)]
pub struct DriverContext {
    /// The driver kind being built.
    pub kind: String,
    /// The `[driver.<kind>]` table.
    pub table: figment::value::Value,
    /// `[app] image`: the repository.
    pub repository: ImageRef,
    /// `[app] name`.
    pub app: String,
    /// The config file's directory, for relative paths.
    pub base_dir: PathBuf,
    /// Where the configuration came from, for error messages.
    pub source: String,
}

impl DriverContext {
    /// Deserialises the driver's table, naming the key on error.
    pub fn settings<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        self.table.deserialize::<T>().map_err(|e| {
            let key = if e.path.is_empty() {
                format!("driver.{}", self.kind)
            } else {
                format!("driver.{}.{}", self.kind, e.path.join("."))
            };
            Error::invalid(format!("{key} in {}: {}", self.source, e.kind))
        })
    }
}

/// A built driver, with the backup engine it brings if any (the in-memory driver has its
/// own database; real backends use the one from `[database]`).
#[derive(Debug, Clone)]
pub struct Target {
    /// The driver.
    pub driver: Arc<dyn Driver>,
    /// Its own backup engine, if it brings one.
    pub backups: Option<Arc<dyn Backups>>,
}

impl Target {
    /// A driver without its own backup engine.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        Self {
            driver,
            backups: None,
        }
    }
}

/// The future a factory returns.
pub type TargetFuture = Pin<Box<dyn Future<Output = Result<Target>> + Send>>;

type Factory = Arc<dyn Fn(DriverContext) -> TargetFuture + Send + Sync>;

/// Driver factories by kind.
#[derive(Clone, Default)]
pub struct Registry {
    drivers: BTreeMap<String, (String, Factory)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.drivers.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The drivers that ship with cutover.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.register(
            "fake",
            "in-memory deployment for demos and tests; changes nothing real",
            |ctx| Box::pin(fake_target(ctx)),
        );
        r.register(
            "docker",
            "containers or a Compose service on a Docker engine",
            |ctx| {
                Box::pin(async move {
                    let settings: cutover_driver_docker::DockerConfig = ctx.settings()?;
                    let settings = settings.resolve_paths(&ctx.base_dir);
                    let driver = cutover_driver_docker::connect(settings).await?;
                    Ok(Target::new(Arc::new(driver)))
                })
            },
        );
        r.register(
            "kubernetes",
            "a Deployment or StatefulSet container, through the Kubernetes API",
            |ctx| {
                Box::pin(async move {
                    let settings: cutover_driver_k8s::KubernetesConfig = ctx.settings()?;
                    let driver = cutover_driver_k8s::connect(settings).await?;
                    Ok(Target::new(Arc::new(driver)))
                })
            },
        );
        r.register(
            "ssh",
            "a fleet of Docker hosts reached over SSH (containers started by `docker run` scripts)",
            |ctx| {
                Box::pin(async move {
                    let mut settings: cutover_driver_ssh::SshConfig = ctx.settings()?;
                    settings.resolve_paths(&ctx.base_dir);
                    let driver = cutover_driver_ssh::connect(settings).await?;
                    Ok(Target::new(Arc::new(driver)))
                })
            },
        );
        r
    }

    /// Adds (or replaces) the driver `kind`.
    pub fn register(
        &mut self,
        kind: &str,
        about: &str,
        factory: impl Fn(DriverContext) -> TargetFuture + Send + Sync + 'static,
    ) {
        self.drivers
            .insert(kind.to_string(), (about.to_string(), Arc::new(factory)));
    }

    /// The registered kinds with their descriptions.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &str)> {
        self.drivers
            .iter()
            .map(|(k, (a, _))| (k.as_str(), a.as_str()))
    }

    /// Builds the driver `ctx.kind`.
    pub async fn build(&self, ctx: DriverContext) -> Result<Target> {
        let Some((_, factory)) = self.drivers.get(&ctx.kind) else {
            let known: Vec<&str> = self.drivers.keys().map(String::as_str).collect();
            return Err(Error::invalid(format!(
                "driver.kind = {:?} is not a registered driver (known: {})",
                ctx.kind,
                known.join(", ")
            )));
        };
        factory(ctx).await
    }
}

/// `[driver.fake]`: the in-memory deployment's starting point.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeSettings {
    /// The running tag.
    running: String,
    /// Replicas running.
    #[serde(default = "one")]
    replicas: u32,
    /// Other tags that exist in the registry.
    #[serde(default)]
    tags: Vec<String>,
    /// Tags that exist and are broken releases: their instances half-migrate the data and
    /// exit.
    #[serde(default)]
    broken: Vec<String>,
    /// Tags that exist and are unhealthy releases: their instances migrate and never
    /// become ready.
    #[serde(default)]
    unhealthy: Vec<String>,
    /// How long a new instance takes to become ready.
    #[serde(default = "ready_after", with = "cutover_core::health::duration")]
    ready_after: std::time::Duration,
}

fn one() -> u32 {
    1
}
fn ready_after() -> std::time::Duration {
    std::time::Duration::from_millis(50)
}

async fn fake_target(ctx: DriverContext) -> Result<Target> {
    let s: FakeSettings = ctx.settings()?;
    let image = ctx.repository.with_tag(&s.running)?;
    let available = s
        .tags
        .iter()
        .chain(&s.broken)
        .chain(&s.unhealthy)
        .map(|t| ctx.repository.with_tag(t))
        .collect::<Result<Vec<_>>>()?;
    let mut config = FakeConfig::new(image, s.replicas, available);
    config.ready_after = s.ready_after;
    config.broken = s.broken;
    config.unhealthy = s.unhealthy;
    let fake = FakeDriver::new(config);
    Ok(Target {
        backups: Some(Arc::new(fake.backups())),
        driver: Arc::new(fake),
    })
}
