//! `specimen`: a stand-in for a vendor's application container in cutover's tests.
//!
//! It is configured like the reference product (`MYSQL_*` or `DATABASE_URL`, `PORT`,
//! `STORAGE_DIR`), migrates its database at start-up without a lock, and behaves according
//! to the version baked into its image (`SPECIMEN_VERSION`): `1.0.0`, `1.1.0`, `1.2.0`,
//! and `-broken` / `-unhealthy` variants of each. `specimen healthcheck` is the image's
//! HEALTHCHECK. Exit codes: 0 stopped by a signal, 1 configuration, 2 database,
//! 3 broken release, 4 schema newer than this release.

mod config;
mod db;
mod healthcheck;
mod log;
mod migrate;
mod server;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use config::{Config, Variant};
use log::Log;
use server::{App, READY, STARTING, UNHEALTHY};

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => {}
        Some("healthcheck") => {
            return match config::listen_address(&env) {
                Ok(listen) if healthcheck::probe(listen) => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            };
        }
        Some(other) => {
            eprintln!("usage: specimen [serve|healthcheck] (got `{other}`)");
            return ExitCode::from(1);
        }
    }
    let config = match Config::from_env(env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("specimen: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("specimen: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
    let log = Log::new(&config.version.full, &config.instance);
    log.event(
        "starting",
        &[
            ("database", &config.database.display),
            ("listen", &config.listen),
            ("storage", &config.storage_dir.display()),
        ],
    );
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            log.event("exit", &[("code", &1), ("error", &format!("listen: {e}"))]);
            return ExitCode::from(1);
        }
    };
    let app = Arc::new(App {
        phase: STARTING.into(),
        db: OnceLock::new(),
        config: config.clone(),
    });
    let server =
        axum::serve(listener, server::router(app.clone())).with_graceful_shutdown(stop_signal());
    let server = tokio::spawn(async move { server.await });

    let db = match db::Db::connect(&config.database, config.database_wait).await {
        Ok(db) => db,
        Err(e) => {
            log.event(
                "exit",
                &[("code", &2), ("error", &format!("database: {e}"))],
            );
            return ExitCode::from(2);
        }
    };
    let _ = app.db.set(db.clone());
    if let Err(failure) = migrate::run(&db, &config, &log).await {
        let (code, error) = match failure {
            migrate::Failure::Database(e) => (2, format!("migration: {e}")),
            migrate::Failure::Broken => (3, "broken release".to_owned()),
            migrate::Failure::SchemaNewer { schema } => (
                4,
                format!(
                    "database schema {schema} is newer than this release {}",
                    config.version.full
                ),
            ),
        };
        log.event("exit", &[("code", &code), ("error", &error)]);
        return ExitCode::from(code);
    }
    let schema = migrate::schema_version(&db)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    if config.version.variant == Variant::Unhealthy {
        app.phase.store(UNHEALTHY, Ordering::Release);
        log.event("serving", &[("health", &"unhealthy"), ("schema", &schema)]);
    } else {
        app.phase.store(READY, Ordering::Release);
        log.event("serving", &[("health", &"ok"), ("schema", &schema)]);
    }
    match server.await {
        Ok(Ok(())) => {
            log.event("exit", &[("code", &0)]);
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            log.event("exit", &[("code", &1), ("error", &format!("server: {e}"))]);
            ExitCode::from(1)
        }
        Err(e) => {
            log.event(
                "exit",
                &[("code", &1), ("error", &format!("server task: {e}"))],
            );
            ExitCode::from(1)
        }
    }
}

/// SIGTERM (docker stop) or SIGINT. As pid 1 in a container the process gets no default
/// handler for SIGTERM, so without this `docker stop` would wait for its timeout.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
