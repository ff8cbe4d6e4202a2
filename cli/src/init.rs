//! `cutover init`: a commented `cutover.toml` written from a running Docker deployment.
//!
//! The Docker driver reads what the deployment tells about itself
//! ([`cutover_driver_docker::discover`]); this module turns it into a configuration an
//! operator can read: each value says where it came from, each guess says so. The
//! database settings are not copied: when the Compose project's `.env` holds them, the
//! config names that file (`app_env`), so the password stays where the vendor put it;
//! otherwise the URL is written without its password and a comment says where to put it.
//! No secret is ever written or printed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cutover_core::{Error, ImageRef};
use cutover_driver_docker::discover::{Discovery, Peer, discover};

use crate::config::DatabaseEngine;
use crate::database::default_vars;

/// Writes the configuration found from `container` to `path` (refusing to replace a file
/// unless `force`); returns what it wrote.
pub async fn run(
    container: &str,
    host: Option<String>,
    path: &Path,
    force: bool,
) -> cutover_core::Result<String> {
    if path.exists() && !force {
        return Err(Error::invalid(format!(
            "{} exists; cutover init does not replace it (pass --force, or --config PATH for another file)",
            path.display()
        )));
    }
    let found = discover(host, container).await?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let text = render(&found, container, &dir, local_has)?;
    std::fs::write(path, &text)
        .map_err(|e| Error::invalid(format!("cannot write {}: {e}", path.display())))?;
    Ok(text)
}

/// Whether `tool` is on this machine's `PATH`.
fn local_has(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// The application's variables: the Compose project's `.env` (which the config can name)
/// or else the container's environment.
struct AppSettings {
    vars: HashMap<String, String>,
    /// The `.env` file, when the settings are in it.
    file: Option<PathBuf>,
}

fn app_settings(found: &Discovery) -> AppSettings {
    let dotenv = found
        .compose
        .as_ref()
        .and_then(|c| c.working_dir.as_ref())
        .map(|d| d.join(".env"))
        .filter(|p| p.is_file());
    if let Some(file) = dotenv {
        let vars: HashMap<String, String> = dotenvy::from_path_iter(&file)
            .map(|iter| iter.filter_map(std::result::Result::ok).collect())
            .unwrap_or_default();
        let names = [DatabaseEngine::Mariadb, DatabaseEngine::Postgres]
            .into_iter()
            .flat_map(default_vars)
            .flat_map(|(_, names)| names.iter());
        let holds_settings = names
            .clone()
            .any(|n| vars.contains_key(*n) && !n.contains("PASSWORD"));
        if holds_settings {
            return AppSettings {
                vars,
                file: Some(file),
            };
        }
    }
    AppSettings {
        vars: found.env.clone(),
        file: None,
    }
}

/// The first default variable of `key` that is set.
fn pick<'a>(
    vars: &'a HashMap<String, String>,
    engine: DatabaseEngine,
    key: &str,
) -> Option<(&'static str, &'a str)> {
    default_vars(engine)
        .into_iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, names)| {
            names.iter().find_map(|n| {
                vars.get(*n)
                    .filter(|v| !v.is_empty())
                    .map(|v| (*n, v.as_str()))
            })
        })
}

/// TOML string escaping for values written between double quotes.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The configuration text.
fn render(
    found: &Discovery,
    container: &str,
    dir: &Path,
    has_tool: impl Fn(&str) -> bool,
) -> cutover_core::Result<String> {
    let image = ImageRef::parse(&found.image).map_err(|e| {
        Error::invalid(format!(
            "{container:?} runs {:?}, which is not an image reference cutover can upgrade: {e}",
            found.image
        ))
    })?;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Written by `cutover init` from container {container} on {}.\n\
         # Each value says where it came from; check them, then run `cutover check --to TAG`\n\
         # (it tests this file against the deployment and changes nothing) and `cutover plan --to TAG`.\n",
        found.host
    );
    let name = match &found.compose {
        Some(c) => format!("{}-{}", c.project, c.service),
        None => found
            .target
            .containers
            .as_ref()
            .map_or_else(|| container.to_string(), |c| c.name.clone()),
    };
    let app_name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let _ = writeln!(t, "[app]");
    let _ = writeln!(
        t,
        "name = {}  # the lock key and the identity of backups",
        quoted(&app_name)
    );
    let _ = writeln!(
        t,
        "image = {}  # the repository; `--to TAG` picks the tag (it runs {})",
        quoted(&image.repository()),
        found.image
    );
    let _ = writeln!(
        t,
        "replicas = {}  # instances after an upgrade (found: {})\n",
        found.replicas, found.replicas
    );

    let _ = writeln!(t, "[health]");
    if found.healthcheck {
        let _ = writeln!(
            t,
            "# The image defines a HEALTHCHECK: Docker's `healthy` is the readiness cutover waits for.\n\
             # Add http = \"http://127.0.0.1:PORT/PATH\" for a check of its own on top."
        );
    } else {
        let _ = writeln!(
            t,
            "# The image has no HEALTHCHECK, so a running container counts as ready. Name what answers\n\
             # when the application is up, e.g.:\n\
             # http = \"http://127.0.0.1:8080/health\""
        );
    }
    let _ = writeln!(
        t,
        "timeout = \"10m\"  # the first instance's deadline: migrations and start-up\n"
    );

    let _ = writeln!(t, "[driver]\nkind = \"docker\"\n\n[driver.docker]");
    let _ = writeln!(t, "host = {}", quoted(&found.host));
    match &found.compose {
        Some(c) => {
            let file = c.files.first().map_or_else(
                || "# file = \"docker-compose.yml\"  # Compose did not label its file: name it, so upgrades edit its image line".to_string(),
                |f| {
                    format!(
                        "# The file whose `image:` line (or .env variable) upgrades edit in place; without it, a\n\
                         # later `docker-compose up` would start the old tag on the migrated schema.\n\
                         compose = {{ project = {}, service = {}, file = {} }}",
                        quoted(&c.project),
                        quoted(&c.service),
                        quoted(&f.to_string_lossy())
                    )
                },
            );
            if c.files.is_empty() {
                let _ = writeln!(
                    t,
                    "compose = {{ project = {}, service = {} }}\n{file}",
                    quoted(&c.project),
                    quoted(&c.service)
                );
            } else {
                let _ = writeln!(t, "{file}");
            }
        }
        None => {
            let _ = writeln!(
                t,
                "containers = {{ name = {} }}  # {name}, {name}-2, … started by a `docker run` script",
                quoted(&name)
            );
        }
    }
    t.push('\n');

    database(&mut t, found, dir, &has_tool);

    let _ = writeln!(t, "[backup]");
    let _ = writeln!(
        t,
        "store = \".cutover/backups\"  # a directory with room for a compressed dump, or \"s3://bucket/prefix\""
    );
    let _ = writeln!(t, "keep = 10");
    if found.volumes.is_empty() {
        let _ = writeln!(
            t,
            "# paths = [\"/data\"]  # the container has no named volume; list storage paths to back up"
        );
    } else {
        let paths: Vec<String> = found.volumes.iter().map(|v| quoted(v)).collect();
        let _ = writeln!(
            t,
            "paths = [{}]  # the container's named volumes: backed up with the database",
            paths.join(", ")
        );
    }
    Ok(t)
}

/// The `[database]` table, from the application's own variables.
fn database(t: &mut String, found: &Discovery, dir: &Path, has_tool: &impl Fn(&str) -> bool) {
    let app = app_settings(found);
    let url = app
        .vars
        .get("DATABASE_URL")
        .and_then(|u| url::Url::parse(u).ok());
    let engine = match url.as_ref().map(url::Url::scheme) {
        Some("postgres" | "postgresql") => Some(DatabaseEngine::Postgres),
        Some("mysql" | "mariadb") => Some(DatabaseEngine::Mariadb),
        _ if pick(&app.vars, DatabaseEngine::Mariadb, "host").is_some() => {
            Some(DatabaseEngine::Mariadb)
        }
        _ if pick(&app.vars, DatabaseEngine::Postgres, "host").is_some() => {
            Some(DatabaseEngine::Postgres)
        }
        _ => None,
    };
    let Some(mut engine) = engine else {
        let _ = writeln!(
            t,
            "# [database]  # no DATABASE_URL, MYSQL_* or POSTGRES_* variable found: name the database\n\
             # engine = \"mariadb\"\n\
             # url = \"mysql://user@127.0.0.1:3306/name\"\n"
        );
        return;
    };
    // MySQL's and MariaDB's dump tools differ: take the ones this machine has.
    if engine == DatabaseEngine::Mariadb && !has_tool("mariadb-dump") && has_tool("mysqldump") {
        engine = DatabaseEngine::Mysql;
    }
    let _ = writeln!(t, "[database]");
    let _ = writeln!(
        t,
        "engine = \"{}\"  # mysql | mariadb | postgres: the dump tools on this machine must fit the server",
        engine.as_str()
    );
    let host = match &url {
        Some(u) => u.host_str().map(str::to_string),
        None => pick(&app.vars, engine, "host").map(|(_, v)| v.to_string()),
    };
    match &app.file {
        Some(file) => {
            let shown = file
                .strip_prefix(dir)
                .map_or_else(|_| file.clone(), Path::to_path_buf);
            let _ = writeln!(
                t,
                "app_env = {}  # the application's own settings (password included) are read from here",
                quoted(&shown.to_string_lossy())
            );
        }
        None => {
            let user = url
                .as_ref()
                .map(|u| u.username().to_string())
                .or_else(|| pick(&app.vars, engine, "user").map(|(_, v)| v.to_string()));
            let name = url
                .as_ref()
                .map(|u| u.path().trim_start_matches('/').to_string())
                .or_else(|| pick(&app.vars, engine, "database").map(|(_, v)| v.to_string()));
            let port = url
                .as_ref()
                .and_then(url::Url::port)
                .or_else(|| pick(&app.vars, engine, "port").and_then(|(_, v)| v.parse().ok()));
            let scheme = if engine == DatabaseEngine::Postgres {
                "postgres"
            } else {
                "mysql"
            };
            let _ = writeln!(
                t,
                "url = \"{scheme}://{}@{}:{}/{}\"  # from the container's environment, without the password",
                user.unwrap_or_else(|| "USER".into()),
                host.clone().unwrap_or_else(|| "HOST".into()),
                port.unwrap_or(if engine == DatabaseEngine::Postgres {
                    5432
                } else {
                    3306
                }),
                name.unwrap_or_else(|| "NAME".into()),
            );
            let _ = writeln!(
                t,
                "# The password is only in the container's environment: export it as\n\
                 # CUTOVER_DATABASE__PASSWORD, or name a variable with password_env or a file with password_file."
            );
        }
    }
    // The app's host may be a Compose service: this machine reaches it where it is published.
    if let Some(host) = &host
        && let Some(peer) = found.peers.iter().find(|p| p.service == *host)
    {
        reach(t, host, peer, engine);
    }
    t.push('\n');
}

/// How this machine reaches the database service `peer`, which the app calls `host`.
fn reach(t: &mut String, host: &str, peer: &Peer, engine: DatabaseEngine) {
    let port = if engine == DatabaseEngine::Postgres {
        "5432/tcp"
    } else {
        "3306/tcp"
    };
    match peer.published.iter().find(|(p, _, _)| p == port) {
        Some((_, ip, published)) => {
            let _ = writeln!(
                t,
                "host = {}  # the app's host {host:?} is the Compose service {}, published here\nport = {published}",
                quoted(ip),
                peer.name
            );
        }
        None => {
            let _ = writeln!(
                t,
                "# The app's host {host:?} is the Compose service {} ({}), whose port is not published:\n\
                 # publish it on 127.0.0.1 and set host/port, or set its address (it changes when the\n\
                 # container is recreated):\n\
                 # host = {}",
                peer.name,
                port,
                quoted(peer.addresses.first().map_or("ADDRESS", String::as_str))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use cutover_driver_docker::DockerConfig;
    use cutover_driver_docker::discover::ComposeFound;

    use super::*;
    use crate::config::Config;

    fn found(env: &[(&str, &str)], working_dir: Option<PathBuf>) -> Discovery {
        Discovery {
            host: "unix:///var/run/docker.sock".into(),
            target: DockerConfig::default(),
            compose: Some(ComposeFound {
                project: "vendor".into(),
                service: "server".into(),
                files: vec![PathBuf::from("/srv/vendor/docker-compose.yml")],
                working_dir,
            }),
            image: "registry.example.com/vendor/server:1.0.0".into(),
            replicas: 2,
            healthcheck: false,
            volumes: vec!["/data/storage".into()],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            peers: vec![Peer {
                service: "db".into(),
                name: "vendor-db-1".into(),
                published: vec![("3306/tcp".into(), "127.0.0.1".into(), 3307)],
                addresses: vec!["172.18.0.2".into()],
            }],
        }
    }

    #[test]
    fn a_compose_project_with_its_env_file_gives_a_loadable_config_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "MYSQL_HOST=db\nMYSQL_USER_NAME=vendor\nMYSQL_DATABASE=vendor\nMYSQL_PASSWORD=s3cret\n",
        )
        .unwrap();
        let f = found(
            &[("MYSQL_PASSWORD", "s3cret")],
            Some(dir.path().to_path_buf()),
        );
        let text = render(&f, "vendor-server-1", dir.path(), |t| t == "mariadb-dump").unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        for want in [
            "name = \"vendor-server\"",
            "image = \"registry.example.com/vendor/server\"",
            "replicas = 2",
            "project = \"vendor\", service = \"server\", file = \"/srv/vendor/docker-compose.yml\"",
            "engine = \"mariadb\"",
            "app_env = \".env\"",
            "host = \"127.0.0.1\"",
            "port = 3307",
            "paths = [\"/data/storage\"]",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        let path = dir.path().join("cutover.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(Some(&path)).unwrap();
        let db = config.database.clone().unwrap();
        let resolved = crate::database::resolve(&config, &db, |_| None).unwrap();
        assert_eq!(resolved.url, "mysql://vendor@127.0.0.1:3307/vendor");
        assert_eq!(resolved.password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn settings_only_in_the_container_give_a_url_without_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let f = found(
            &[("DATABASE_URL", "postgres://shop:pw@10.0.0.5:5433/shop")],
            None,
        );
        let text = render(&f, "x", dir.path(), |_| true).unwrap();
        assert!(text.contains("engine = \"postgres\""), "{text}");
        assert!(
            text.contains("url = \"postgres://shop@10.0.0.5:5433/shop\""),
            "{text}"
        );
        assert!(!text.contains("pw@"), "{text}");
        assert!(text.contains("CUTOVER_DATABASE__PASSWORD"), "{text}");
        let path = dir.path().join("cutover.toml");
        std::fs::write(&path, &text).unwrap();
        Config::load(Some(&path)).unwrap();
    }
}
