//! `manifest.json`: what a backup holds, written last so that its presence means the
//! backup is complete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use cutover_core::BackupId;
use cutover_core::driver::Snapshot;
use cutover_core::{Error, ErrorKind, Result};

/// The schema identifier of manifests written by this version.
pub const MANIFEST_SCHEMA: &str = "cutover.backup.v1";

/// The database engines whose dumps cutover takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseEngine {
    /// PostgreSQL: `pg_dump` custom format, restored with `pg_restore`.
    Postgres,
    /// MySQL ≥ 8.0.17: `mysqldump`, restored with `mysql`.
    Mysql,
    /// MariaDB: `mariadb-dump`/`mysqldump`, restored with `mariadb`/`mysql`.
    Mariadb,
}

impl DatabaseEngine {
    /// Whether the dumps of `self` and `other` are interchangeable.
    pub fn compatible(self, other: Self) -> bool {
        self == other || (self != Self::Postgres && other != Self::Postgres)
    }

    /// The name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Mariadb => "mariadb",
        }
    }
}

/// What a part of a backup contains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PartKind {
    /// The database dump.
    Database,
    /// A tar archive of a storage path.
    Storage {
        /// The path inside the application's instances.
        path: String,
    },
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Its file name within the backup.
    pub name: String,
    /// What it holds.
    #[serde(flatten)]
    pub kind: PartKind,
    /// Stored (compressed) size in bytes.
    pub bytes: u64,
    /// Uncompressed size in bytes.
    pub raw_bytes: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

impl Part {
    /// The error that this part of backup `id` is damaged, when `bytes` and `sha256` (what
    /// was read of it) are not what the manifest records.
    pub fn damage(&self, id: &BackupId, bytes: u64, sha256: &str) -> Option<Error> {
        (bytes != self.bytes || sha256 != self.sha256).then(|| {
            Error::new(
                ErrorKind::Integrity,
                format!(
                    "part {} of backup {id} is damaged ({bytes} bytes, expected {}; checksum {})",
                    self.name,
                    self.bytes,
                    if sha256 == self.sha256 {
                        "matches"
                    } else {
                        "differs"
                    }
                ),
            )
            .with_subject(id.to_string())
        })
    }
}

/// One table's fingerprint: computed inside the database, so comparing costs no transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFingerprint {
    /// Row count.
    pub rows: u64,
    /// An order-independent checksum of every row's content.
    pub checksum: String,
}

/// The content of a database, table by table, plus a digest of its schema.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Tables by qualified name.
    pub tables: BTreeMap<String, TableFingerprint>,
    /// A digest of the column definitions of every table.
    pub schema: String,
    /// Schema objects by kind and name (`view public.v`, `sequence public.s`,
    /// `auto_increment t`, …): a digest of each definition, a counter's value in clear.
    /// `None` in manifests written before objects were fingerprinted: then they are
    /// not compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<BTreeMap<String, String>>,
    /// Objects whose values moved while the backup was taken (counters are not
    /// transactional, so an online backup's dump may hold another value than the one
    /// recorded): their presence is compared, their values are not.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub approximate: std::collections::BTreeSet<String>,
}

impl Fingerprint {
    /// [`Fingerprint::differences`] of the column definitions, objects and counters alone
    /// (`other` computed without the tables' content).
    pub fn definition_differences(&self, other: &Fingerprint) -> Vec<String> {
        let without_rows = Fingerprint {
            tables: Default::default(),
            ..self.clone()
        };
        without_rows.differences(other)
    }

    /// The tables that differ between `self` and `other`, by name, for error messages.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        if self.schema != other.schema {
            out.push("schema (columns)".to_string());
        }
        for (name, a) in &self.tables {
            match other.tables.get(name) {
                None => out.push(format!("{name} (missing)")),
                Some(b) if a.rows != b.rows => {
                    out.push(format!("{name} ({} rows, expected {})", b.rows, a.rows))
                }
                Some(b) if a != b => out.push(format!("{name} (content)")),
                Some(_) => {}
            }
        }
        for name in other.tables.keys() {
            if !self.tables.contains_key(name) {
                out.push(format!("{name} (unexpected)"));
            }
        }
        if let (Some(expected), Some(found)) = (&self.objects, &other.objects) {
            for (name, a) in expected {
                match found.get(name) {
                    None => out.push(format!("{name} (missing)")),
                    Some(_) if self.approximate.contains(name) => {}
                    // Counters are kept in clear: say both values.
                    Some(b) if a != b && !a.starts_with("sha256:") => {
                        out.push(format!("{name} ({b}, expected {a})"))
                    }
                    Some(b) if a != b => out.push(format!("{name} (definition)")),
                    Some(_) => {}
                }
            }
            for name in found.keys() {
                if !expected.contains_key(name) {
                    out.push(format!("{name} (unexpected)"));
                }
            }
        }
        out
    }
}

/// The database a backup was taken of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// Its engine.
    pub engine: DatabaseEngine,
    /// The server's version string.
    pub server_version: String,
    /// The database name.
    pub name: String,
    /// The dump's longest statement (MySQL/MariaDB), which the server a restore goes to
    /// must accept (`max_allowed_packet`). Absent in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_statement: Option<Statement>,
    /// Accounts the dump's views, routines, triggers and events name as `DEFINER`
    /// (MySQL/MariaDB): restoring them as another user needs `SUPER` or `SET USER`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub definers: Vec<String>,
    /// The database's size in bytes when it was backed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// The database's character set (PostgreSQL: its encoding), with which an in-place
    /// restore creates it again where it is missing. Absent in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
    /// The database's default collation (PostgreSQL: `LC_COLLATE`). Absent in older
    /// manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
}

/// A statement of a dump, by size and the table it fills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Its length in bytes.
    pub bytes: u64,
    /// The table of an `INSERT`, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

impl Statement {
    /// The statement that begins with `head`, `bytes` long: an ``INSERT INTO `t` `` names
    /// its table.
    pub fn from_head(bytes: u64, head: &[u8]) -> Self {
        let table = head
            .strip_prefix(b"INSERT INTO `")
            .and_then(|rest| rest.iter().position(|&b| b == b'`').map(|end| &rest[..end]))
            .map(|name| String::from_utf8_lossy(name).into_owned());
        Self { bytes, table }
    }

    /// `table t` or `a statement`, for messages.
    pub fn describe(&self) -> String {
        match &self.table {
            Some(t) => format!("a row of table {t}"),
            None => "a statement".to_string(),
        }
    }
}

/// Everything known about a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_SCHEMA`] for manifests this version writes.
    pub schema: String,
    /// The backup's id.
    pub id: BackupId,
    /// When it was taken, RFC 3339.
    pub created: String,
    /// The application it belongs to: restores refuse another application's backup.
    pub app: String,
    /// The image that ran, as its repository and tag (without a digest).
    pub image: String,
    /// The content digest (`sha256:…`) of the image that ran when the backup was taken,
    /// when the driver reported one; added within v1, absent in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The deployment's snapshot, when an upgrade took the backup.
    pub snapshot: Option<Snapshot>,
    /// The database.
    pub database: DatabaseInfo,
    /// The files, database dump first.
    pub parts: Vec<Part>,
    /// The data's fingerprint at the moment of the dump.
    pub fingerprint: Fingerprint,
    /// Whether the fingerprint is known to match the dump exactly (always for offline
    /// backups; for online ones when no write happened during the dump).
    pub fingerprint_exact: bool,
}

impl Manifest {
    /// Parses the manifest stored for backup `id` at `location` (for messages), refusing
    /// one that is unreadable or names another backup.
    pub fn from_stored(bytes: &[u8], id: &BackupId, location: &str) -> Result<Self> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                ErrorKind::Integrity,
                format!("the manifest of backup {id} is unreadable"),
            )
            .with_source(e)
        })?;
        if manifest.id != *id {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "the manifest at {location} names backup {}, not {id}",
                    manifest.id
                ),
            ));
        }
        Ok(manifest)
    }

    /// Total stored size.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest written before image digests were recorded reads with no digest; one
    /// with a digest round-trips it.
    #[test]
    fn the_image_digest_is_optional() {
        let id: BackupId = "b-1".parse().unwrap();
        let old = serde_json::json!({
            "schema": MANIFEST_SCHEMA, "id": "b-1", "created": "2026-11-01T00:00:00Z",
            "app": "apidog", "image": "registry.example.com/apidog/server:v2.7.80",
            "snapshot": null,
            "database": {"engine": "postgres", "server_version": "15", "name": "apidog"},
            "parts": [], "fingerprint": {"tables": {}, "schema": ""}, "fingerprint_exact": true,
        });
        let bytes = serde_json::to_vec(&old).unwrap();
        let mut manifest = Manifest::from_stored(&bytes, &id, "test").unwrap();
        assert_eq!(manifest.digest, None);
        assert!(
            !String::from_utf8(serde_json::to_vec(&manifest).unwrap())
                .unwrap()
                .contains("digest")
        );

        let digest = format!("sha256:{}", "a".repeat(64));
        manifest.digest = Some(digest.clone());
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let read = Manifest::from_stored(&bytes, &id, "test").unwrap();
        assert_eq!(read.digest, Some(digest));
    }
}
