//! The backend-side lock: a container that is created and never started, named
//! `<base>-cutover-lock` and labelled with the holder, so `docker ps -a` shows any
//! operator who holds the target. Docker refuses a second container of the same name,
//! which makes taking the lock atomic.

use std::collections::BTreeMap;

use cutover_core::{ErrorKind, Holder, Result};
use serde_json::{Map, Value};

use crate::definition;
use crate::driver::DockerDriver;
use crate::error;
use crate::spec::{self, Spec};
use crate::target::{self, LABEL_ROLE, LABEL_TARGET};

const LABEL_RUN: &str = "cutover.lock.run";
const LABEL_HOST: &str = "cutover.lock.host";
const LABEL_PID: &str = "cutover.lock.pid";

fn holder_of(labels: &std::collections::HashMap<String, String>) -> String {
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    format!(
        "run {} (pid {} on {})",
        get(LABEL_RUN),
        get(LABEL_PID),
        get(LABEL_HOST)
    )
}

/// Takes the lock for `holder`, or fails with `Locked` naming the current holder.
pub(crate) async fn lock(d: &DockerDriver, holder: &Holder) -> Result<()> {
    let seen = d.seen("lock").await?;
    if let Some(c) = &seen.lock {
        let labels = target::labels_of(c);
        if labels.get(LABEL_RUN) == Some(&holder.run) {
            return Ok(());
        }
        return Err(error::driver(
            ErrorKind::Locked,
            "lock",
            target::name_of(c),
            format!(
                "{} holds the lock on {}",
                holder_of(&labels),
                d.selector.describe()
            ),
        ));
    }
    // Any image present will do for a container that never starts: the definition's.
    let image = match definition::read(&d.docker, &seen, "lock").await? {
        Some(def) => def.image,
        None => {
            return Err(error::driver(
                ErrorKind::NotFound,
                "lock",
                "",
                format!("no container of {} exists", d.selector.describe()),
            ));
        }
    };
    let name = format!("{}-cutover-lock", d.selector.base(d.selector.naming(&seen)));
    let labels = BTreeMap::from([
        (LABEL_ROLE.to_string(), "lock".to_string()),
        (LABEL_TARGET.to_string(), d.selector.key()),
        (LABEL_RUN.to_string(), holder.run.clone()),
        (LABEL_HOST.to_string(), holder.host.clone()),
        (LABEL_PID.to_string(), holder.pid.to_string()),
    ]);
    let mut body = Map::new();
    body.insert(
        "Labels".into(),
        serde_json::to_value(labels).unwrap_or_default(),
    );
    body.insert("Entrypoint".into(), serde_json::json!(["/cutover-lock"]));
    body.insert("Cmd".into(), Value::Null);
    body.insert(
        "HostConfig".into(),
        serde_json::json!({ "NetworkMode": "none", "RestartPolicy": { "Name": "no" } }),
    );
    let spec = Spec {
        body,
        env: Vec::new(),
    };
    match spec::create(&d.docker, "lock", &name, &image, &spec).await {
        Ok(()) => Ok(()),
        // Another operator created it between our look and our create.
        Err(e) if e.kind() == ErrorKind::Conflict => {
            let seen = d.seen("lock").await?;
            let labels = seen
                .lock
                .as_ref()
                .map(target::labels_of)
                .unwrap_or_default();
            if labels.get(LABEL_RUN) == Some(&holder.run) {
                return Ok(());
            }
            Err(error::driver(
                ErrorKind::Locked,
                "lock",
                &name,
                format!(
                    "{} holds the lock on {}",
                    holder_of(&labels),
                    d.selector.describe()
                ),
            ))
        }
        Err(e) => Err(e),
    }
}

/// Releases the lock if `holder` has it; never another holder's.
pub(crate) async fn unlock(d: &DockerDriver, holder: &Holder) -> Result<()> {
    let seen = d.seen("unlock").await?;
    match &seen.lock {
        Some(c) if target::labels_of(c).get(LABEL_RUN) == Some(&holder.run) => {
            definition::remove(&d.docker, target::name_of(c), "unlock", true).await
        }
        _ => Ok(()),
    }
}
