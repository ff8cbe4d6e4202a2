//! `Driver::logs`: a pod's log through the API's `pods/{name}/log` subresource.

use cutover_core::{ErrorKind, Result};
use kube::api::LogParams;

use crate::driver::KubernetesDriver;
use crate::error;

/// The last `lines` lines of our container in pod `instance`, which must be one of the
/// workload's pods (another pod's log, the database's say, is `NotFound`).
///
/// A container waiting to be restarted (`CrashLoopBackOff`) has no current log to read;
/// the run that failed is then the previous one (`previous=true`).
pub(crate) async fn tail(d: &KubernetesDriver, instance: &str, lines: usize) -> Result<String> {
    let (_, workload) = d.get("logs").await?;
    let pods = d.list_pods(&workload, "logs").await?;
    if !pods
        .iter()
        .any(|p| p.metadata.name.as_deref() == Some(instance))
    {
        return Err(error::driver(
            ErrorKind::NotFound,
            "logs",
            instance,
            format!("no pod {instance} of {}", d.subject()),
        ));
    }
    let params = LogParams {
        container: Some(d.container.clone()),
        tail_lines: Some(i64::try_from(lines).unwrap_or(i64::MAX)),
        ..LogParams::default()
    };
    match d.pods().logs(instance, &params).await {
        Ok(text) => Ok(text),
        Err(current) => {
            let previous = LogParams {
                previous: true,
                ..params
            };
            d.pods()
                .logs(instance, &previous)
                .await
                .map_err(|_| error::kube("logs", instance, current))
        }
    }
}
