//! What a Docker snapshot holds, and how it keeps secrets out.
//!
//! A snapshot is journaled and written into backup manifests, so it must not hold values
//! that may be secrets. It records each container's full create request (config, host
//! config, networks) in the clear **except environment values**: each is recorded as
//! `sha256(salt ‖ NAME ‖ "=" ‖ value)` with a random salt per snapshot. `restore` takes
//! the values from containers that still have them — kept containers, current
//! instances, the definition container — or from the snapshotted image's defaults, and
//! accepts a value only if its hash matches. A value found nowhere fails the restore
//! before anything changes, naming the variable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cutover_core::{ErrorKind, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::compose::ComposeRecord;
use crate::error;
use crate::spec::Spec;

/// The schema of [`SnapshotData`].
pub(crate) const FORMAT: u32 = 1;

/// `Snapshot::data` of the Docker driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotData {
    /// [`FORMAT`].
    pub format: u32,
    /// The target's key; restore refuses another target's snapshot.
    pub target: String,
    /// Salt of every environment hash in this snapshot.
    pub salt: String,
    /// The definition: image and template of new instances.
    pub definition: Recorded,
    /// Whether a definition container held it; when not (cutover had never changed the
    /// deployment), restore removes the ones created since. Older snapshots: `true`.
    #[serde(default = "persisted_before")]
    pub persisted: bool,
    /// Every instance as it was.
    pub instances: Vec<RecordedInstance>,
    /// The compose file's image value and hash, when one is configured (never its bytes:
    /// it may hold secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<ComposeRecord>,
}

fn persisted_before() -> bool {
    true
}

/// One instance in a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RecordedInstance {
    /// Its container name.
    pub name: String,
    /// Whether it ran.
    pub running: bool,
    /// Its image and full configuration.
    pub spec: Recorded,
}

/// An image and a [`Spec`] with hashed environment values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Recorded {
    /// The image reference as written in the container's config.
    pub image: String,
    /// The create request without image and environment.
    pub body: Map<String, Value>,
    /// The environment, in order.
    pub env: Vec<HashedVar>,
}

/// An environment variable whose value is represented by its salted hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HashedVar {
    /// The variable's name.
    pub name: String,
    /// `sha256(salt ‖ name ‖ "=" ‖ value)`, hex.
    pub sha256: String,
}

impl Recorded {
    pub(crate) fn new(image: &str, spec: &Spec, salt: &str) -> Self {
        Recorded {
            image: image.to_string(),
            body: spec.body.clone(),
            env: spec
                .env_pairs()
                .into_iter()
                .map(|(name, value)| HashedVar {
                    sha256: hash(salt, &name, &value),
                    name,
                })
                .collect(),
        }
    }

    /// Whether `image` and `spec` are what was recorded (environment by hash).
    pub(crate) fn matches(&self, image: &str, spec: &Spec, salt: &str, with_body: bool) -> bool {
        self.image == image
            && (!with_body || self.body == spec.body)
            && Recorded::new(image, spec, salt).env == self.env
    }

    /// The spec with every value found in `sources` by its hash.
    ///
    /// Fails with `NotFound` naming the first variable no source has.
    pub(crate) fn resolve(
        &self,
        salt: &str,
        sources: &[(String, String)],
        subject: &str,
    ) -> Result<Spec> {
        let mut env = Vec::with_capacity(self.env.len());
        for var in &self.env {
            let value = sources
                .iter()
                .find(|(n, v)| *n == var.name && hash(salt, n, v) == var.sha256)
                .map(|(_, v)| v)
                .ok_or_else(|| {
                    error::driver(
                        ErrorKind::NotFound,
                        "restore",
                        subject,
                        format!(
                            "the snapshot records environment variable {} by its hash only, and no \
                             container or image has a matching value; recreate the container by hand \
                             or restore with a container that still has it",
                            var.name
                        ),
                    )
                })?;
            env.push(format!("{}={value}", var.name));
        }
        Ok(Spec {
            body: self.body.clone(),
            env,
        })
    }
}

fn hash(salt: &str, name: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(name.as_bytes());
    h.update(b"=");
    h.update(value.as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A salt unique to this snapshot: it need not be secret, only never reused, so that equal
/// values in two snapshots do not hash alike and precomputed tables do not apply.
pub(crate) fn new_salt() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hex(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(env: &[&str]) -> Spec {
        Spec {
            body: Map::new(),
            env: env.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn values_are_hashed_and_restored_only_from_matching_sources() {
        let salt = new_salt();
        let r = Recorded::new(
            "img:1",
            &spec(&["MYSQL_PASSWORD=hunter2", "PORT=8080"]),
            &salt,
        );
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        let sources = vec![
            ("MYSQL_PASSWORD".to_string(), "wrong".to_string()),
            ("MYSQL_PASSWORD".to_string(), "hunter2".to_string()),
            ("PORT".to_string(), "8080".to_string()),
        ];
        let back = r.resolve(&salt, &sources, "c").unwrap();
        assert_eq!(back.env, ["MYSQL_PASSWORD=hunter2", "PORT=8080"]);
        let e = r.resolve(&salt, &sources[..1], "c").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("MYSQL_PASSWORD"), "{}", e.report());
        assert!(!e.report().contains("wrong"));
    }

    #[test]
    fn salts_differ() {
        assert_ne!(new_salt(), new_salt());
    }
}
