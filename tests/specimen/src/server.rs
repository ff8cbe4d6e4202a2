//! The HTTP API. It listens before migrations finish so that `/health` can say
//! "not yet" (503) rather than refuse connections, like most vendor applications.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::db::{Db, Item, Param};
use crate::log::now_micros;
use crate::migrate::{dotted, item_columns};

/// Migrations still running (or failed).
pub const STARTING: u8 = 0;
/// Migrated and serving.
pub const READY: u8 = 1;
/// Serving, but a `-unhealthy` build: health stays 503.
pub const UNHEALTHY: u8 = 2;

/// Shared by all handlers.
#[derive(Debug)]
pub struct App {
    /// One of [`STARTING`], [`READY`], [`UNHEALTHY`].
    pub phase: AtomicU8,
    /// Set once connected.
    pub db: OnceLock<Db>,
    /// The start-up configuration.
    pub config: Config,
}

/// Routes of the API.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/items", get(list_items).post(create_item))
        .route("/items/summary", get(summary))
        .route("/files/{name}", get(get_file).put(put_file))
        .with_state(app)
}

type Reply = Result<Response, (StatusCode, String)>;

fn unavailable(what: &str) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, what.to_owned())
}

fn internal(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn ready_db(app: &App) -> Result<&Db, (StatusCode, String)> {
    if app.phase.load(Ordering::Acquire) == STARTING {
        return Err(unavailable("migrating"));
    }
    app.db.get().ok_or_else(|| unavailable("no database"))
}

async fn health(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    match app.phase.load(Ordering::Acquire) {
        READY => (StatusCode::OK, "ok\n"),
        UNHEALTHY => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
    }
}

async fn version(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({
        "version": app.config.version.full,
        "schema": dotted(app.config.version.base),
        "instance": app.config.instance,
    }))
}

#[derive(Deserialize)]
struct NewItem {
    name: String,
    body: String,
}

async fn create_item(State(app): State<Arc<App>>, Json(item): Json<NewItem>) -> Reply {
    let db = ready_db(&app)?;
    let columns = item_columns(app.config.version.base);
    let folded = item.name.to_lowercase();
    let bytes = i64::try_from(item.body.len()).map_err(internal)?;
    let all = [
        Param::Text(&item.name),
        Param::Text(&item.body),
        Param::Int(now_micros()),
        Param::Text(&folded),
        Param::Int(bytes),
    ];
    let id = db
        .insert_item(columns, &all[..columns.len()])
        .await
        .map_err(internal)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

/// SHA-256 over every item's id, name and body in id order: equal across releases for the
/// same data, whatever columns a migration added.
fn checksum(items: &[Item]) -> String {
    let mut hash = Sha256::new();
    for item in items {
        hash.update(item.id.to_string().as_bytes());
        hash.update([0]);
        hash.update(item.name.as_bytes());
        hash.update([0]);
        hash.update(item.body.as_bytes());
        hash.update([b'\n']);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

async fn list_items(State(app): State<Arc<App>>) -> Reply {
    let items = ready_db(&app)?.items().await.map_err(internal)?;
    let body = json!({ "count": items.len(), "checksum": checksum(&items), "items": items });
    Ok(Json(body).into_response())
}

async fn summary(State(app): State<Arc<App>>) -> Reply {
    let items = ready_db(&app)?.items().await.map_err(internal)?;
    Ok(Json(json!({ "count": items.len(), "checksum": checksum(&items) })).into_response())
}

/// A file name without directories, so requests cannot escape `STORAGE_DIR`.
fn stored_path(app: &App, name: &str) -> Result<PathBuf, (StatusCode, String)> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        return Err((StatusCode::BAD_REQUEST, "invalid file name".to_owned()));
    }
    Ok(app.config.storage_dir.join(name))
}

async fn put_file(State(app): State<Arc<App>>, Path(name): Path<String>, body: Bytes) -> Reply {
    ready_db(&app)?;
    let path = stored_path(&app, &name)?;
    tokio::fs::create_dir_all(&app.config.storage_dir)
        .await
        .map_err(internal)?;
    // Written aside and renamed so a reader never sees half a file.
    let partial = app.config.storage_dir.join(format!(".{name}.partial"));
    tokio::fs::write(&partial, &body).await.map_err(internal)?;
    tokio::fs::rename(&partial, &path).await.map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_file(State(app): State<Arc<App>>, Path(name): Path<String>) -> Reply {
    ready_db(&app)?;
    let path = stored_path(&app, &name)?;
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(bytes.into_response()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err((StatusCode::NOT_FOUND, "no such file".to_owned()))
        }
        Err(e) => Err(internal(e)),
    }
}
