//! The definition: the image and configuration new instances get, persisted in Docker.
//!
//! Docker has no deployment object outside Compose files, so the driver keeps the
//! definition in a **definition container**: created, never started, named
//! `<base>-cutover-definition-<millis>` and labelled `cutover.role=definition`,
//! `cutover.target=<target>`; for a Compose service also Compose's project and service
//! labels and `com.docker.compose.oneoff=True`, like a `docker-compose run` container,
//! so that `docker-compose up` neither starts nor counts it and `docker-compose down`
//! removes it with the project. Its image is the definition image; the label
//! `cutover.template` holds the template (the create request minus image and env), its
//! own environment holds the template's environment (where Docker keeps the instances'
//! secrets anyway). It has no network, no mounts and no restart policy, so it never runs
//! and holds nothing. Any cutover process on any machine reading the same engine sees it,
//! which is why it is preferred over a state file beside the journal.
//!
//! Until cutover first changes a deployment there is no such container: the definition
//! is then read from a reference instance (the first running one, else any instance, else
//! a kept one): its image, and its configuration minus that image's defaults.
//!
//! **Pending release.** A definition whose image `set_image` changed is labelled
//! `cutover.pending-release=true` until `release` (the commit) rewrites it without the
//! label. Instances created from a pending definition start with restart policy `no`
//! whatever the template says, so that a release that has never been healthy is not
//! restarted by Docker while no cutover process watches it (one restart re-runs its
//! start-up migrations); `release` gives them the template's policy. The template itself
//! keeps the real policy, and so do snapshots of it. A definition read from an instance,
//! or put back by `restore`, describes what already served and is not pending.

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::RemoveContainerOptions;
use cutover_core::{ErrorKind, Result};
use serde_json::{Map, Value};

use crate::error;
use crate::spec::{self, Spec};
use crate::target::{self, Containers, LABEL_ROLE, LABEL_TARGET, Selector};

const LABEL_TEMPLATE: &str = "cutover.template";
const LABEL_PENDING: &str = "cutover.pending-release";

/// The image and template of new instances.
#[derive(Debug, Clone)]
pub(crate) struct Definition {
    /// The image reference, as written.
    pub image: String,
    /// The configuration without the image's defaults.
    pub spec: Spec,
    /// Whether a definition container holds it (else it was read from an instance).
    pub persisted: bool,
    /// Whether its image awaits release: instances start without a restart policy.
    pub pending_release: bool,
}

/// The current definition, or `None` when the target has no container at all.
pub(crate) async fn read(
    docker: &Docker,
    seen: &Containers,
    op: &str,
) -> Result<Option<Definition>> {
    if let Some(marker) = seen.definitions.last() {
        let image = target::image_of(marker).to_string();
        let name = target::name_of(marker);
        let labels = target::labels_of(marker);
        let template = labels
            .get(LABEL_TEMPLATE)
            .and_then(|t| serde_json::from_str::<Map<String, Value>>(t).ok())
            .ok_or_else(|| {
                error::driver(
                    ErrorKind::Other,
                    op,
                    name,
                    format!("definition container has no readable {LABEL_TEMPLATE} label"),
                )
            })?;
        let mut spec = Spec::of(marker);
        spec.body = template;
        let defaults = spec::image_config(docker, &image).await?;
        let image_env = Spec {
            body: Map::new(),
            env: spec.env.clone(),
        };
        let mut stripped = image_env;
        stripped.strip_image_defaults(&defaults);
        spec.env = stripped.env;
        return Ok(Some(Definition {
            image,
            spec,
            persisted: true,
            pending_release: labels.get(LABEL_PENDING).is_some_and(|v| v == "true"),
        }));
    }
    let reference = seen
        .instances
        .iter()
        .find(|c| target::is_running(c))
        .or_else(|| seen.instances.first())
        .or_else(|| seen.kept.first());
    let Some(reference) = reference else {
        return Ok(None);
    };
    Ok(Some(from_instance(docker, reference).await?))
}

/// The definition an instance was created from: its image, its config minus the image's.
pub(crate) async fn from_instance(
    docker: &Docker,
    c: &ContainerInspectResponse,
) -> Result<Definition> {
    let image = target::image_of(c).to_string();
    let mut spec = Spec::of(c);
    spec.strip_image_defaults(&spec::image_config(docker, &image).await?);
    Ok(Definition {
        image,
        spec,
        persisted: false,
        pending_release: false,
    })
}

/// Persists `image` + `spec` as the definition, pending release if `pending_release`,
/// replacing older definition containers.
///
/// The new container is created before the old ones are removed, so a crash in between
/// leaves two, of which the newest counts.
pub(crate) async fn write(
    docker: &Docker,
    selector: &Selector,
    seen: &Containers,
    image: &str,
    spec: &Spec,
    pending_release: bool,
    op: &str,
) -> Result<()> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let name = format!(
        "{}-cutover-definition-{millis}",
        selector.base(selector.naming(seen))
    );
    let template = serde_json::to_string(&spec.body).unwrap_or_default();
    let mut labels = BTreeMap::from([
        (LABEL_ROLE.to_string(), "definition".to_string()),
        (LABEL_TARGET.to_string(), selector.key()),
        (LABEL_TEMPLATE.to_string(), template),
    ]);
    if pending_release {
        labels.insert(LABEL_PENDING.to_string(), "true".to_string());
    }
    labels.extend(selector.helper_labels());
    let mut body = Map::new();
    body.insert(
        "Labels".into(),
        serde_json::to_value(labels).unwrap_or_default(),
    );
    // Never started; an entrypoint keeps images without one creatable.
    body.insert(
        "Entrypoint".into(),
        serde_json::json!(["/cutover-definition"]),
    );
    body.insert("Cmd".into(), Value::Null);
    body.insert(
        "HostConfig".into(),
        serde_json::json!({ "NetworkMode": "none", "RestartPolicy": { "Name": "no" } }),
    );
    let marker = Spec {
        body,
        env: spec.env.clone(),
    };
    spec::create(docker, op, &name, image, &marker).await?;
    for old in &seen.definitions {
        remove(docker, target::name_of(old), op, true).await?;
    }
    Ok(())
}

/// Removes a container, with its anonymous volumes if `volumes`; already gone is fine.
///
/// Instances are removed without their volumes: an anonymous volume may be the only copy
/// of data the operator did not know was there.
pub(crate) async fn remove(docker: &Docker, name: &str, op: &str, volumes: bool) -> Result<()> {
    let options = RemoveContainerOptions {
        force: true,
        v: volumes,
        ..Default::default()
    };
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if error::is_not_found(&e) => Ok(()),
        // Removal already in progress.
        Err(e) if error::is_conflict(&e) => Ok(()),
        Err(e) => Err(error::docker(op, name, e)),
    }
}
