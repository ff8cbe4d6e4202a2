//! cutover's Kubernetes driver: upgrades one container of a Deployment or StatefulSet
//! through the API server, and rolls it back.
//!
//! ```no_run
//! # async fn demo() -> cutover_core::Result<()> {
//! use cutover_driver_k8s::{KubernetesConfig, connect};
//! let mut config = KubernetesConfig::deployment("apidog-server");
//! config.container = Some("server".into());
//! let driver = connect(config).await?;
//! # Ok(()) }
//! ```
//!
//! The `Driver` contract is documented on [`cutover_core::Driver`]; what is
//! Kubernetes-specific is on [`KubernetesDriver`] and in [`snapshot`].

mod config;
mod driver;
mod error;
mod exec;
mod lock;
mod logs;
mod pull;
pub mod snapshot;
mod workload;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cutover_core::{Error, ErrorKind, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use config::{KubernetesConfig, WorkloadKind};
pub use driver::KubernetesDriver;

const HELM_RELEASE: &str = "meta.helm.sh/release-name";

/// Connects with the configured kubeconfig (else `$KUBECONFIG`, `~/.kube/config`, else
/// the in-cluster service account), checks that the workload and its container exist, and
/// probes whether the container has `tar` (the `archive` capability).
pub async fn connect(config: KubernetesConfig) -> Result<KubernetesDriver> {
    let (kind, name) = config.workload()?;
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..KubeConfigOptions::default()
    };
    let unreadable = |m: String| {
        Error::new(ErrorKind::InvalidInput, m)
            .with_driver("kubernetes")
            .with_operation("connect")
    };
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                unreadable(format!(
                    "driver.kubernetes.kubeconfig = {}: {e}",
                    path.display()
                ))
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| {
                    unreadable(format!(
                        "driver.kubernetes.kubeconfig = {}: {e}",
                        path.display()
                    ))
                })?
        }
        None if config.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| unreadable(format!("driver.kubernetes.context: {e}")))?,
        None => kube::Config::infer().await.map_err(|e| {
            unreadable(format!(
                "no Kubernetes configuration found ($KUBECONFIG, ~/.kube/config, in-cluster): {e}; \
                 set driver.kubernetes.kubeconfig"
            ))
        })?,
    };
    let namespace = config
        .namespace
        .clone()
        .unwrap_or_else(|| kube_config.default_namespace.clone());
    let client = kube::Client::try_from(kube_config).map_err(|e| error::kube("connect", "", e))?;
    let mut driver = KubernetesDriver {
        client,
        namespace,
        kind,
        name,
        container: config.container.clone().unwrap_or_default(),
        config,
        helm: None,
        archive: Arc::new(AtomicBool::new(false)),
        renewal: Arc::default(),
    };
    let (object, workload) = driver.get("connect").await?;
    let containers: Vec<String> = workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if driver.container.is_empty() {
        match containers.as_slice() {
            [only] => driver.container = only.clone(),
            _ => {
                return Err(Error::invalid(format!(
                    "driver.kubernetes.container: {} has containers {}; name the one to upgrade",
                    driver.subject(),
                    containers.join(", ")
                )));
            }
        }
    } else if !containers.contains(&driver.container) {
        return Err(Error::invalid(format!(
            "driver.kubernetes.container = {:?}: {} has only {}",
            driver.container,
            driver.subject(),
            containers.join(", ")
        )));
    }
    driver.helm = object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HELM_RELEASE).cloned())
        .or_else(|| {
            let labels = object.metadata.labels.as_ref()?;
            (labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("Helm"))
            .then(|| {
                labels
                    .get("app.kubernetes.io/instance")
                    .cloned()
                    .unwrap_or_else(|| "?".into())
            })
        });
    let has_tar = exec::probe_tar(&driver).await;
    driver
        .archive
        .store(has_tar, std::sync::atomic::Ordering::Relaxed);
    Ok(driver)
}
