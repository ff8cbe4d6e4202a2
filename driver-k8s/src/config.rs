//! `[driver.kubernetes]`: which cluster, which workload, which container.

use std::path::PathBuf;
use std::time::Duration;

use cutover_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The Kubernetes driver's settings, as the `[driver.kubernetes]` table of `cutover.toml`.
///
/// ```toml
/// [driver.kubernetes]
/// kubeconfig = "~/.kube/config"   # default: $KUBECONFIG, ~/.kube/config, else in-cluster
/// context = "prod"                # default: the kubeconfig's current context
/// namespace = "apidog"            # default: the context's namespace, else "default"
/// deployment = "apidog-server"    # or: statefulset = "…"
/// container = "server"            # default: the only container of the pod template
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig file. Default: `$KUBECONFIG`, else `~/.kube/config`, else the
    /// in-cluster service account.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context. Default: its current context.
    #[serde(default)]
    pub context: Option<String>,
    /// The namespace. Default: the context's, else `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The Deployment to upgrade.
    #[serde(default)]
    pub deployment: Option<String>,
    /// The StatefulSet to upgrade (instead of a Deployment).
    #[serde(default)]
    pub statefulset: Option<String>,
    /// The container whose image changes. Default: the pod template's only container.
    #[serde(default)]
    pub container: Option<String>,
    /// How long `scale` and `restore` wait for the rollout to converge (pods created,
    /// surplus pods gone), in seconds. Default 600.
    #[serde(default)]
    pub rollout_timeout_secs: Option<u64>,
    /// The Lease's duration in seconds (renewed every third of it). Default 30.
    #[serde(default)]
    pub lease_seconds: Option<u32>,
}

/// Which kind of workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

impl WorkloadKind {
    /// `deployment` or `statefulset`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::StatefulSet => "statefulset",
        }
    }
}

impl KubernetesConfig {
    /// Settings for the Deployment `name` with the default kubeconfig.
    pub fn deployment(name: impl Into<String>) -> Self {
        Self {
            deployment: Some(name.into()),
            ..Self::default()
        }
    }

    /// The workload: its kind and name.
    pub fn workload(&self) -> Result<(WorkloadKind, String)> {
        let (kind, name) = match (&self.deployment, &self.statefulset) {
            (Some(d), None) => (WorkloadKind::Deployment, d),
            (None, Some(s)) => (WorkloadKind::StatefulSet, s),
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "driver.kubernetes: set either `deployment` or `statefulset`, not both",
                ));
            }
            (None, None) => {
                return Err(Error::invalid(
                    "driver.kubernetes: set `deployment = \"<name>\"` or `statefulset = \"<name>\"`",
                ));
            }
        };
        check_name(&format!("driver.kubernetes.{}", kind.as_str()), name)?;
        Ok((kind, name.clone()))
    }

    /// The rollout wait.
    pub fn rollout_timeout(&self) -> Duration {
        Duration::from_secs(self.rollout_timeout_secs.unwrap_or(600))
    }

    /// The Lease's duration.
    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(self.lease_seconds.unwrap_or(30).max(3).into())
    }
}

/// A DNS-1123 subdomain: what Kubernetes accepts as an object name.
fn check_name(key: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{key} = {name:?} is not a valid Kubernetes object name (lowercase letters, digits, '-' and '.')"
        )))
    }
}
