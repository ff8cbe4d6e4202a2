//! `backup`, `backups list|show|verify|prune`: the backup engine of `[database]`, the
//! store, and the stand-in when no database is configured.

use std::sync::Arc;

use async_trait::async_trait;
#[cfg(feature = "s3")]
use cutover_backup::S3Store;
use cutover_backup::{Database, DumpBackups, LocalStore, Store, ToolSite};
use cutover_core::{
    BackupId, BackupRef, BackupScope, BackupSummary, Backups, Driver, Engine, Error, ErrorKind,
    EventSink, ExecTarget, Plan,
};
use serde_json::json;

use super::{Outcome, drive::drive, finish};
use crate::args::BackupsCommand;
use crate::config::Config;
use crate::exit;
use crate::render::Renderer;

/// The backup engine of `[database]` and `[backup]`.
pub(crate) fn dump_backups(
    config: &Config,
    db: &crate::config::DatabaseConfig,
) -> Outcome<DumpBackups> {
    let resolved = crate::database::resolve(config, db, |var| std::env::var(var).ok())?;
    for warning in &resolved.warnings {
        tracing::warn!("{warning}");
    }
    let site = match (&db.exec_in, &db.exec_on_host) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "database.exec_in and database.exec_on_host exclude each other",
            )
            .into());
        }
        (Some(name), None) => ToolSite::Exec(ExecTarget::Named(name.clone())),
        (None, Some(host)) => ToolSite::Exec(ExecTarget::Host(host.clone())),
        (None, None) => ToolSite::Local,
    };
    let mut database = Database::new(db.engine, &resolved.url, resolved.password, site)?;
    if let Some((user, password)) = resolved.admin {
        database = database.with_admin(&user, password)?;
    }
    Ok(DumpBackups::new(
        database,
        store(config)?,
        config.backup.paths.clone(),
        ExecTarget::AnyInstance,
    ))
}

/// `[backup] store`: a directory, or `s3://bucket/prefix` with `[backup.s3]`.
fn store(config: &Config) -> Outcome<Arc<dyn Store>> {
    let store = &config.backup.store;
    if store.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return Ok(Arc::new(S3Store::new(store, &config.backup.s3)?));
        #[cfg(not(feature = "s3"))]
        return Err(Error::invalid(format!(
            "backup.store = {store:?}: this cutover was built without the `s3` feature"
        ))
        .into());
    }
    if store.contains("://") {
        return Err(Error::invalid(format!(
            "backup.store = {store:?}: a store is a directory or an s3:// URL"
        ))
        .into());
    }
    Ok(Arc::new(LocalStore::new(config.resolve(store))))
}

pub(super) async fn backups(
    config: &Config,
    engine: &Engine,
    sub: &BackupsCommand,
    r: &Renderer,
) -> Outcome {
    let store = engine.backups();
    let summary = |b: &BackupSummary| json!({ "id": b.id.to_string(), "created": b.created, "app": b.app, "image": b.image, "bytes": b.bytes, "damaged": b.damaged });
    match sub {
        BackupsCommand::List => {
            let list = store.list().await?;
            r.document(
                json!({ "command": "backups list", "backups": list.iter().map(summary).collect::<Vec<_>>() }),
                || {
                    let mut out: String = list
                        .iter()
                        .map(|b| match &b.damaged {
                            Some(why) => format!("{}  DAMAGED: {why}\n", b.id),
                            None => format!("{}  {}  {}  {} bytes\n", b.id, b.created, b.image, b.bytes),
                        })
                        .collect();
                    if out.is_empty() {
                        out = "no backups\n".into();
                    }
                    out
                },
            );
        }
        BackupsCommand::Show { id } => {
            let id: BackupId = id.parse()?;
            let found = store
                .list()
                .await?
                .into_iter()
                .find(|b| b.id == id)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("no backup {id} (see `cutover backups list`)"),
                    )
                })?;
            r.document(
                json!({ "command": "backups show", "backup": summary(&found) }),
                || {
                    format!(
                        "id       {}\ncreated  {}\napp      {}\nimage    {}\nbytes    {}\n",
                        found.id, found.created, found.app, found.image, found.bytes
                    )
                },
            );
        }
        BackupsCommand::Verify { id, restore_test } => {
            let plan = Plan::Verify {
                backup: id.parse()?,
                restore_test: *restore_test,
            };
            return finish(drive(engine, engine.start(plan)).await?);
        }
        BackupsCommand::Prune { keep } => {
            let plan = Plan::Prune {
                keep: keep.unwrap_or(config.backup.keep),
            };
            return finish(drive(engine, engine.start(plan)).await?);
        }
    }
    Ok(exit::SUCCESS)
}

/// The backup engine when no `[database]` is configured.
#[derive(Debug)]
pub(crate) struct NoBackups;

impl NoBackups {
    fn error(&self) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            "no [database] is configured, so nothing can be backed up or restored; add [database] (see the README) or upgrade with --backup skip",
        )
    }
}

#[async_trait]
impl Backups for NoBackups {
    async fn preflight(&self, _driver: &dyn Driver) -> cutover_core::Result<()> {
        Err(self.error())
    }
    async fn backup(
        &self,
        _scope: BackupScope<'_>,
        _events: &EventSink,
    ) -> cutover_core::Result<BackupRef> {
        Err(self.error())
    }
    async fn verify(&self, _id: &BackupId, _app: &str) -> cutover_core::Result<BackupRef> {
        Err(self.error())
    }
    async fn restore(
        &self,
        _id: &BackupId,
        _app: &str,
        _run: &str,
        _driver: &dyn Driver,
        _events: &EventSink,
    ) -> cutover_core::Result<()> {
        Err(self.error())
    }
    async fn list(&self) -> cutover_core::Result<Vec<BackupSummary>> {
        Ok(Vec::new())
    }
    async fn prune(
        &self,
        _app: &str,
        _keep: usize,
        _protected: &[BackupId],
    ) -> cutover_core::Result<Vec<BackupId>> {
        Ok(Vec::new())
    }
}
