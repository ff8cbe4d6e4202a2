//! Backups in S3-compatible object storage (feature `s3`), through `object_store`.
//!
//! Layout: `PREFIX/ID/PART` for each part and `PREFIX/ID/manifest.json`, written last.
//! A backup without its manifest does not exist for [`Store::list`], [`Store::manifest`]
//! or [`Store::read`], so an interrupted backup is never seen; an aborted one deletes what
//! it uploaded; one killed mid-way leaves parts without a manifest, which
//! [`Store::unfinished`] finds by their last-modified time for `prune` to delete.
//! Multipart uploads that never completed are not listed through `object_store`: a bucket
//! lifecycle rule (`AbortIncompleteMultipartUpload`) removes them. Parts stream up as multipart uploads of [`CHUNK`] bytes, a few in flight,
//! so memory stays bounded whatever the backup's size.
//!
//! Credentials come from the environment as the AWS tools read them
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or the instance's
//! role), never from cutover's configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::sync::mpsc;

use crate::manifest::Manifest;
use crate::store::{S3Settings, Staged, Store, Unfinished, is_older_than};
use cutover_core::BackupId;
use cutover_core::driver::ByteStream;
use cutover_core::{Error, ErrorKind, Result};

/// Size of each multipart upload part.
const CHUNK: usize = 8 * 1024 * 1024;
/// Parts uploading at once.
const IN_FLIGHT: usize = 2;
const MANIFEST: &str = "manifest.json";

/// A [`Store`] in a bucket, under a prefix: `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone)]
pub struct S3Store {
    objects: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

fn s3_error(what: String, e: object_store::Error) -> Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            ErrorKind::Conflict
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => ErrorKind::InvalidInput,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, what).with_source(e)
}

/// Credentials given by an embedding program instead of the environment.
#[derive(Clone)]
pub struct S3Credentials {
    /// The access key id.
    pub key_id: String,
    /// The secret access key.
    pub secret: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// The store at `url` (`s3://bucket` or `s3://bucket/prefix`), with credentials from
    /// the environment.
    pub fn new(url: &str, settings: &S3Settings) -> Result<Self> {
        Self::build(url, settings, None)
    }

    /// The store at `url` with the given credentials.
    pub fn with_credentials(
        url: &str,
        settings: &S3Settings,
        credentials: S3Credentials,
    ) -> Result<Self> {
        Self::build(url, settings, Some(credentials))
    }

    fn build(url: &str, settings: &S3Settings, credentials: Option<S3Credentials>) -> Result<Self> {
        let invalid = |why: &str| Error::invalid(format!("backup store {url:?}: {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("an object store URL starts with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("the bucket name is missing"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|s| s == "." || s == ".." || (s.is_empty() && !prefix.is_empty()))
        {
            return Err(invalid("the prefix has an empty, `.` or `..` segment"));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        match &settings.region {
            Some(region) => builder = builder.with_region(region),
            None if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none() =>
            {
                builder = builder.with_region("us-east-1")
            }
            None => {}
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        builder = builder.with_allow_http(settings.allow_http);
        if let Some(c) = credentials {
            builder = builder
                .with_access_key_id(c.key_id)
                .with_secret_access_key(c.secret);
        }
        let objects = builder
            .build()
            .map_err(|e| Error::invalid(format!("backup store {url}: {e}")))?;
        Ok(Self {
            objects: Arc::new(objects),
            prefix: Path::from(prefix),
            url: url.to_string(),
        })
    }

    fn dir(&self, id: &BackupId) -> Path {
        self.prefix.clone().join(id.as_str())
    }

    fn object(&self, id: &BackupId, name: &str) -> Result<Path> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("part name {name:?} is not a plain file name"),
            ));
        }
        Ok(self.dir(id).join(name))
    }

    /// Every object under backup `id`'s directory.
    async fn objects_of(&self, id: &BackupId) -> Result<Vec<object_store::ObjectMeta>> {
        self.objects
            .list(Some(&self.dir(id)))
            .try_collect()
            .await
            .map_err(|e| s3_error(format!("cannot list backup {id} in {}", self.url), e))
    }

    fn is_manifest(&self, id: &BackupId, path: &Path) -> bool {
        *path == self.dir(id).join(MANIFEST)
    }
}

#[async_trait]
impl Store for S3Store {
    fn describe(&self) -> String {
        self.url.clone()
    }

    async fn stage(&self, id: &BackupId) -> Result<Box<dyn Staged>> {
        match self.objects.head(&self.dir(id).join(MANIFEST)).await {
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("backup {id} already exists in {}", self.url),
                ));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(s3_error(format!("cannot reach {}", self.url), e)),
        }
        Ok(Box::new(S3Staged {
            store: self.clone(),
            id: id.clone(),
            written: Vec::new(),
        }))
    }

    async fn manifest(&self, id: &BackupId) -> Result<Manifest> {
        let path = self.dir(id).join(MANIFEST);
        let bytes = match self.objects.get(&path).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        }
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => Error::new(
                ErrorKind::NotFound,
                format!(
                    "no backup {id} in {} (see `cutover backups list`)",
                    self.url
                ),
            ),
            e => s3_error(format!("cannot read the manifest of backup {id}"), e),
        })?;
        Manifest::from_stored(&bytes, id, &format!("{}/{path}", self.url))
    }

    async fn read(&self, id: &BackupId, name: &str) -> Result<ByteStream> {
        let path = self.object(id, name)?;
        // Only parts of a complete backup are readable.
        self.manifest(id).await?;
        let got = self
            .objects
            .get(&path)
            .await
            .map_err(|e| s3_error(format!("cannot read part {name} of backup {id}"), e))?;
        let stream = got.into_stream().map_err(std::io::Error::other);
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }

    async fn list(&self) -> Result<Vec<BackupId>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let depth = self.prefix.parts().count();
        let mut out: Vec<BackupId> = self
            .objects
            .list(prefix)
            .try_filter_map(|meta| async move {
                let parts: Vec<_> = meta.location.parts().skip(depth).collect();
                Ok(match parts.as_slice() {
                    [id, file] if file.as_ref() == MANIFEST => id.as_ref().parse().ok(),
                    _ => None,
                })
            })
            .try_collect()
            .await
            .map_err(|e| s3_error(format!("cannot list {}", self.url), e))?;
        out.sort();
        out.reverse();
        Ok(out)
    }

    async fn delete(&self, id: &BackupId) -> Result<()> {
        // The manifest first: from then on the backup no longer exists, even if deleting
        // its parts is interrupted.
        match self.objects.delete(&self.dir(id).join(MANIFEST)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(s3_error(format!("cannot delete backup {id}"), e)),
        }
        let objects = self.objects_of(id).await?.into_iter().map(|m| m.location);
        let mut deleted = self
            .objects
            .delete_stream(futures_util::stream::iter(objects.map(Ok)).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_error(format!("cannot delete backup {id}"), e)),
            }
        }
        Ok(())
    }

    async fn available(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Backup directories (`PREFIX/ID/`) holding objects but no `manifest.json`, whose
    /// newest object is at least `min_age` old.
    async fn unfinished(&self, min_age: Duration) -> Result<Vec<Unfinished>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let depth = self.prefix.parts().count();
        // id → (has a manifest, bytes, newest last-modified)
        let mut dirs: BTreeMap<String, (bool, u64, SystemTime)> = BTreeMap::new();
        let mut listing = self.objects.list(prefix);
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| s3_error(format!("cannot list {}", self.url), e))?;
            let parts: Vec<_> = meta.location.parts().skip(depth).collect();
            let [id, file] = parts.as_slice() else {
                continue;
            };
            let modified = SystemTime::from(meta.last_modified);
            let dir =
                dirs.entry(id.as_ref().to_string())
                    .or_insert((false, 0, SystemTime::UNIX_EPOCH));
            dir.0 |= file.as_ref() == MANIFEST;
            dir.1 += meta.size;
            dir.2 = dir.2.max(modified);
        }
        Ok(dirs
            .into_iter()
            .filter(|(_, (complete, _, modified))| !complete && is_older_than(*modified, min_age))
            .filter_map(|(name, (_, bytes, modified))| {
                let id: BackupId = name.parse().ok()?;
                Some(Unfinished {
                    name,
                    id: Some(id),
                    bytes,
                    modified,
                })
            })
            .collect())
    }

    async fn discard(&self, leftover: &Unfinished) -> Result<()> {
        let id = leftover
            .id
            .clone()
            .or_else(|| leftover.name.parse().ok())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{:?} is not an unfinished backup in {}",
                    leftover.name, self.url
                ))
            })?;
        let objects = self.objects_of(&id).await?;
        if objects.iter().any(|m| self.is_manifest(&id, &m.location)) {
            return Err(Error::invalid(format!(
                "backup {id} in {} is complete, not unfinished",
                self.url
            )));
        }
        if objects
            .iter()
            .any(|m| SystemTime::from(m.last_modified) > leftover.modified)
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("backup {id} was written to since it was found unfinished; kept"),
            ));
        }
        let paths = objects.into_iter().map(|m| Ok(m.location));
        let mut deleted = self
            .objects
            .delete_stream(futures_util::stream::iter(paths).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(s3_error(format!("cannot delete unfinished backup {id}"), e));
                }
            }
        }
        Ok(())
    }
}

struct S3Staged {
    store: S3Store,
    id: BackupId,
    written: Vec<Path>,
}

#[async_trait]
impl Staged for S3Staged {
    async fn write_part(&mut self, name: &str, mut chunks: mpsc::Receiver<Vec<u8>>) -> Result<()> {
        let path = self.store.object(&self.id, name)?;
        let fail = |e| {
            s3_error(
                format!(
                    "cannot upload part {name} of backup {} to {}",
                    self.id, self.store.url
                ),
                e,
            )
        };
        let upload = self
            .store
            .objects
            .put_multipart(&path)
            .await
            .map_err(fail)?;
        self.written.push(path);
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        while let Some(chunk) = chunks.recv().await {
            if let Err(e) = writer.wait_for_capacity(IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(fail(e));
            }
            writer.write(&chunk);
        }
        writer.finish().await.map(|_| ()).map_err(fail)
    }

    async fn commit(self: Box<Self>, manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| {
            Error::new(ErrorKind::Other, "cannot encode the manifest").with_source(e)
        })?;
        let path = self.store.dir(&self.id).join(MANIFEST);
        let create = PutOptions::from(PutMode::Create);
        let put = self
            .store
            .objects
            .put_opts(&path, PutPayload::from(json), create)
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = s3_error(format!("cannot complete backup {}", self.id), e);
                self.abort().await;
                Err(error)
            }
        }
    }

    async fn abort(self: Box<Self>) {
        for path in &self.written {
            let _ = self.store.objects.delete(path).await;
        }
    }
}
