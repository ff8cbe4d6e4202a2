//! `[database]` resolved into a connection: from `url`, or from the application's own
//! settings, so nothing the vendor's deployment already holds is typed twice.
//!
//! The application keeps its database settings in variables (`MYSQL_HOST`,
//! `MYSQL_PASSWORD`, … or `DATABASE_URL`), usually in the Compose project's `.env`.
//! `app_env` names that file; `[database.vars]` names the variables, defaulting to the
//! vendor's usual names ([`default_vars`]). `url`, when set, wins over the file's parts;
//! `host`, `port`, `user` and `name` override single parts (the app's host is often a
//! Compose service name this machine cannot resolve: set `host = "127.0.0.1"` where the
//! port is published).
//!
//! The password, first found wins: `CUTOVER_DATABASE__PASSWORD`, the variable that
//! `password_env` names, `password_file` (its first line; a file readable by group or
//! others is a warning naming its mode), the app's password variable, the password of the
//! app's `DATABASE_URL`. It is never put into a URL, an argument or a message.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cutover_backup::DatabaseEngine;
use cutover_core::Error;

use crate::config::{AppVars, Config, DatabaseConfig};

/// The resolved connection: a URL without password, the password, and warnings for the
/// operator.
pub struct Resolved {
    /// `scheme://user@host:port/name`.
    pub url: String,
    /// The password, if any source had one.
    pub password: Option<String>,
    /// `[database] admin_user` and its password, if configured.
    pub admin: Option<(String, Option<String>)>,
    /// What the operator should know (a password file others can read).
    pub warnings: Vec<String>,
}

/// The names tried for each setting when `[database.vars]` does not name one, in order.
pub fn default_vars(engine: DatabaseEngine) -> [(&'static str, &'static [&'static str]); 6] {
    match engine {
        DatabaseEngine::Postgres => [
            ("url", &["DATABASE_URL"]),
            ("host", &["POSTGRES_HOST", "PGHOST", "DB_HOST"]),
            ("port", &["POSTGRES_PORT", "PGPORT", "DB_PORT"]),
            ("user", &["POSTGRES_USER", "PGUSER", "DB_USER"]),
            (
                "password",
                &["POSTGRES_PASSWORD", "PGPASSWORD", "DB_PASSWORD"],
            ),
            ("database", &["POSTGRES_DB", "PGDATABASE", "DB_NAME"]),
        ],
        DatabaseEngine::Mysql | DatabaseEngine::Mariadb => [
            ("url", &["DATABASE_URL"]),
            ("host", &["MYSQL_HOST", "DB_HOST"]),
            ("port", &["MYSQL_PORT", "DB_PORT"]),
            ("user", &["MYSQL_USER_NAME", "MYSQL_USER", "DB_USER"]),
            ("password", &["MYSQL_PASSWORD", "DB_PASSWORD"]),
            ("database", &["MYSQL_DATABASE", "DB_NAME"]),
        ],
    }
}

/// The application's variables and where they came from.
struct AppEnv {
    vars: HashMap<String, String>,
    source: String,
}

impl AppEnv {
    fn read(path: &Path) -> cutover_core::Result<Self> {
        let iter = dotenvy::from_path_iter(path).map_err(|e| {
            Error::invalid(format!(
                "database.app_env {}: cannot read it ({e}); name the file of KEY=value lines the application reads (its Compose project's .env)",
                path.display()
            ))
        })?;
        let mut vars = HashMap::new();
        for item in iter {
            // The error names a line, never a value.
            let (k, v) = item.map_err(|e| {
                Error::invalid(format!(
                    "database.app_env {}: not a file of KEY=value lines: {e}",
                    path.display()
                ))
            })?;
            vars.insert(k, v);
        }
        Ok(Self {
            vars,
            source: path.display().to_string(),
        })
    }

    /// The value of setting `key`: the configured variable name, else the first default
    /// name that is set. Returns the variable's name with it.
    fn get(&self, engine: DatabaseEngine, names: &AppVars, key: &str) -> Option<(String, String)> {
        if let Some(name) = names.name_of(key) {
            return self.vars.get(name).map(|v| (name.clone(), v.clone()));
        }
        let defaults = default_vars(engine)
            .into_iter()
            .find(|(k, _)| *k == key)
            .map_or(&[][..], |(_, names)| names);
        defaults.iter().find_map(|name| {
            self.vars
                .get(*name)
                .filter(|v| !v.is_empty())
                .map(|v| (name.to_string(), v.clone()))
        })
    }
}

/// Connection parts read from one source.
struct Parts {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    name: Option<String>,
    password: Option<String>,
}

fn scheme(engine: DatabaseEngine) -> &'static str {
    match engine {
        DatabaseEngine::Postgres => "postgres",
        DatabaseEngine::Mysql | DatabaseEngine::Mariadb => "mysql",
    }
}

fn default_port(engine: DatabaseEngine) -> u16 {
    match engine {
        DatabaseEngine::Postgres => 5432,
        DatabaseEngine::Mysql | DatabaseEngine::Mariadb => 3306,
    }
}

/// Resolves `db` of `config`; `env` reads cutover's own environment (for `password_env`).
pub fn resolve(
    config: &Config,
    db: &DatabaseConfig,
    env: impl Fn(&str) -> Option<String>,
) -> cutover_core::Result<Resolved> {
    let engine = db.engine;
    let app = db
        .app_env
        .as_ref()
        .map(|p| AppEnv::read(&config.resolve(&p.to_string_lossy())))
        .transpose()?;
    let mut warnings = Vec::new();
    // The parts from the URL or the app's variables; then the single overrides.
    let base_url = match (&db.url, &app) {
        (Some(url), _) => Some((url.clone(), "database.url".to_string())),
        (None, Some(app)) => app
            .get(engine, &db.vars, "url")
            .map(|(var, v)| (v, format!("{var} in {}", app.source))),
        (None, None) => None,
    };
    let Parts {
        host,
        port,
        user,
        name,
        password: url_password,
    } = if let Some((text, from)) = &base_url {
        let mut parsed = url::Url::parse(text).map_err(|e| {
            // Only the parse error: the value may hold a password.
            Error::invalid(format!("{from} is not a URL ({e})"))
        })?;
        let mut password = None;
        if parsed.password().is_some() {
            if db.url.is_some() {
                return Err(Error::invalid(
                    "database.url must not contain a password; set CUTOVER_DATABASE__PASSWORD, password_env or password_file",
                ));
            }
            password = parsed.password().map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            });
            let _ = parsed.set_password(None);
        }
        Parts {
            host: parsed.host_str().map(str::to_string),
            port: parsed.port(),
            user: Some(parsed.username().to_string()).filter(|u| !u.is_empty()),
            name: Some(parsed.path().trim_start_matches('/').to_string()).filter(|n| !n.is_empty()),
            password,
        }
    } else if let Some(app) = &app {
        let port = match app.get(engine, &db.vars, "port") {
            Some((var, v)) => Some(v.parse::<u16>().map_err(|_| {
                Error::invalid(format!("{var} in {} is not a port number", app.source))
            })?),
            None => None,
        };
        Parts {
            host: app.get(engine, &db.vars, "host").map(|(_, v)| v),
            port,
            user: app.get(engine, &db.vars, "user").map(|(_, v)| v),
            name: app.get(engine, &db.vars, "database").map(|(_, v)| v),
            password: None,
        }
    } else {
        return Err(Error::invalid(
            "[database] needs url (postgres://user@host:port/name or mysql://…), or app_env naming the file the application reads its database settings from",
        ));
    };
    let host = db.host.clone().or(host);
    let port = db.port.or(port);
    let user = db.user.clone().or(user);
    let name = db.name.clone().or(name);

    let missing = |what: &str, key: &str| {
        let from = match &app {
            Some(app) => {
                let tried: Vec<String> = match db.vars.name_of(key) {
                    Some(n) => vec![n.clone()],
                    None => default_vars(engine)
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map_or(vec![], |(_, n)| n.iter().map(|s| s.to_string()).collect()),
                };
                format!("; {} does not set {}", app.source, tried.join(" or "))
            }
            None => String::new(),
        };
        Error::invalid(format!(
            "[database] has no {what}{from}: set database.{key}, or name the application's variable in [database.vars] {key}"
        ))
    };
    let host = host.ok_or_else(|| missing("host", "host"))?;
    let user = user.ok_or_else(|| missing("user", "user"))?;
    let name = name.ok_or_else(|| missing("database name", "database"))?;
    let port = port.unwrap_or(default_port(engine));
    let host_part = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!("{}://{user}@{host_part}:{port}/{name}", scheme(engine));

    let password = if let Some(p) = &db.password {
        Some(p.clone())
    } else if let Some(var) = &db.password_env {
        Some(env(var).ok_or_else(|| {
            Error::invalid(format!(
                "database.password_env names {var}, which is not set in cutover's environment"
            ))
        })?)
    } else if let Some(file) = &db.password_file {
        let (password, warning) = password_file(config, "database.password_file", file)?;
        warnings.extend(warning);
        Some(password)
    } else if let Some((_, p)) = app
        .as_ref()
        .and_then(|app| app.get(engine, &db.vars, "password"))
    {
        Some(p)
    } else {
        url_password
    };
    // The admin account's password: configured, from a file, else the root password the
    // vendor's MySQL/MariaDB container is given in the app's file.
    let admin = match &db.admin_user {
        None => None,
        Some(user) => {
            let password = if let Some(p) = &db.admin_password {
                Some(p.clone())
            } else if let Some(file) = &db.admin_password_file {
                let (password, warning) =
                    password_file(config, "database.admin_password_file", file)?;
                warnings.extend(warning);
                Some(password)
            } else if engine == DatabaseEngine::Postgres {
                None
            } else {
                app.as_ref().and_then(|app| {
                    ["MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"]
                        .iter()
                        .find_map(|name| app.vars.get(*name).filter(|v| !v.is_empty()).cloned())
                })
            };
            Some((user.clone(), password))
        }
    };
    Ok(Resolved {
        url,
        password,
        admin,
        warnings,
    })
}

/// The password in `file` (its first line; `key` names the setting), and a warning when
/// the file's mode lets its group or others read it.
pub(crate) fn password_file(
    config: &Config,
    key: &str,
    file: &Path,
) -> cutover_core::Result<(String, Option<String>)> {
    let path = config.resolve(&file.to_string_lossy());
    let unreadable = |e: std::io::Error| Error::invalid(format!("{key} {}: {e}", path.display()));
    let mode = std::fs::metadata(&path)
        .map_err(unreadable)?
        .permissions()
        .mode()
        & 0o777;
    let warning = (mode & 0o077 != 0).then(|| {
        format!(
            "{key} {} can be read by {} (mode {mode:04o}); make it readable by its owner only: chmod 600 {}",
            path.display(),
            match (mode & 0o070 != 0, mode & 0o007 != 0) {
                (true, true) => "its group and others",
                (true, false) => "its group",
                _ => "others",
            },
            path.display()
        )
    });
    let text = std::fs::read_to_string(&path).map_err(unreadable)?;
    Ok((text.lines().next().unwrap_or_default().to_string(), warning))
}

impl AppVars {
    /// The configured variable name of setting `key`, if `[database.vars]` names one.
    fn name_of(&self, key: &str) -> Option<&String> {
        match key {
            "url" => self.url.as_ref(),
            "host" => self.host.as_ref(),
            "port" => self.port.as_ref(),
            "user" => self.user.as_ref(),
            "password" => self.password.as_ref(),
            _ => self.database.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn config(dir: &Path) -> Config {
        let toml = dir.join("cutover.toml");
        std::fs::write(
            &toml,
            "[app]\nname = \"a\"\nimage = \"r/x\"\n[driver]\nkind = \"docker\"\n",
        )
        .unwrap();
        Config::load(Some(&toml)).unwrap()
    }

    fn db(engine: DatabaseEngine) -> DatabaseConfig {
        DatabaseConfig {
            engine,
            url: None,
            app_env: None,
            vars: AppVars::default(),
            host: None,
            port: None,
            user: None,
            name: None,
            password: None,
            password_env: None,
            password_file: None,
            exec_in: None,
            exec_on_host: None,
            admin_user: None,
            admin_password: None,
            admin_password_file: None,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const VENDOR_ENV: &str = "# the vendor's settings\nAPP_TAG=1.0.0\nMYSQL_HOST=db\nMYSQL_PORT=3306\nMYSQL_DATABASE=apidog\nMYSQL_USER_NAME=apidog\nMYSQL_PASSWORD='p@ss w0rd#1'\n";

    #[test]
    fn the_vendors_variables_give_the_connection_and_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        std::fs::write(dir.path().join(".env"), VENDOR_ENV).unwrap();
        let mut d = db(DatabaseEngine::Mariadb);
        d.app_env = Some(PathBuf::from(".env"));
        d.host = Some("127.0.0.1".into());
        let r = resolve(&c, &d, no_env).unwrap();
        assert_eq!(r.url, "mysql://apidog@127.0.0.1:3306/apidog");
        assert_eq!(r.password.as_deref(), Some("p@ss w0rd#1"));
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn an_admin_account_takes_its_password_from_the_environment_a_file_or_the_root_variable() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        std::fs::write(
            dir.path().join(".env"),
            format!("{VENDOR_ENV}MYSQL_ROOT_PASSWORD='r00t secret'\n"),
        )
        .unwrap();
        let mut d = db(DatabaseEngine::Mariadb);
        d.app_env = Some(PathBuf::from(".env"));
        d.host = Some("127.0.0.1".into());
        assert_eq!(
            resolve(&c, &d, no_env).unwrap().admin,
            None,
            "only when asked"
        );
        d.admin_user = Some("root".into());
        let r = resolve(&c, &d, no_env).unwrap();
        assert_eq!(r.admin, Some(("root".into(), Some("r00t secret".into()))));
        std::fs::write(dir.path().join("admin.pw"), "from the file\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("admin.pw"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        d.admin_password_file = Some(PathBuf::from("admin.pw"));
        let r = resolve(&c, &d, no_env).unwrap();
        assert_eq!(r.admin, Some(("root".into(), Some("from the file".into()))));
        d.admin_password = Some("from CUTOVER_DATABASE__ADMIN_PASSWORD".into());
        let r = resolve(&c, &d, no_env).unwrap();
        assert_eq!(
            r.admin.unwrap().1.as_deref(),
            Some("from CUTOVER_DATABASE__ADMIN_PASSWORD")
        );
        assert!(
            !format!("{d:?}").contains("from CUTOVER_DATABASE"),
            "the Debug form shows the password"
        );
    }

    #[test]
    fn configured_names_and_a_database_url_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        std::fs::write(
            dir.path().join("app.env"),
            "DATABASE_URL=postgres://svc:s%40cret@pg.internal:6543/shop\nOTHER_PW=x\n",
        )
        .unwrap();
        let mut d = db(DatabaseEngine::Postgres);
        d.app_env = Some(PathBuf::from("app.env"));
        let r = resolve(&c, &d, no_env).unwrap();
        assert_eq!(r.url, "postgres://svc@pg.internal:6543/shop");
        assert_eq!(r.password.as_deref(), Some("s@cret"));
        d.vars.password = Some("OTHER_PW".into());
        assert_eq!(
            resolve(&c, &d, no_env).unwrap().password.as_deref(),
            Some("x")
        );
    }

    #[test]
    fn the_password_sources_have_an_order() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        std::fs::write(dir.path().join(".env"), VENDOR_ENV).unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\nignored\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut d = db(DatabaseEngine::Mariadb);
        d.app_env = Some(PathBuf::from(".env"));
        d.password_file = Some(file.clone());
        let r = resolve(&c, &d, no_env).unwrap();
        assert_eq!(r.password.as_deref(), Some("from-file"));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        d.password_env = Some("APP_DB_PW".into());
        let r = resolve(&c, &d, |k| (k == "APP_DB_PW").then(|| "from-env".into())).unwrap();
        assert_eq!(r.password.as_deref(), Some("from-env"));
        let e = resolve(&c, &d, no_env).err().unwrap();
        assert!(e.message().contains("APP_DB_PW"), "{}", e.message());
        d.password = Some("typed".into());
        assert_eq!(
            resolve(&c, &d, no_env).unwrap().password.as_deref(),
            Some("typed")
        );
    }

    #[test]
    fn a_password_file_others_can_read_is_a_warning_naming_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let file = dir.path().join("pw");
        std::fs::write(&file, "secret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut d = db(DatabaseEngine::Postgres);
        d.url = Some("postgres://u@127.0.0.1/db".into());
        d.password_file = Some(file);
        let r = resolve(&c, &d, no_env).unwrap();
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].contains("0644"), "{}", r.warnings[0]);
        assert!(
            r.warnings[0].contains("group and others"),
            "{}",
            r.warnings[0]
        );
        assert!(!r.warnings[0].contains("secret"));
    }

    #[test]
    fn what_is_missing_is_named_with_where_it_was_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        std::fs::write(dir.path().join(".env"), "MYSQL_HOST=db\n").unwrap();
        let mut d = db(DatabaseEngine::Mysql);
        d.app_env = Some(PathBuf::from(".env"));
        let e = resolve(&c, &d, no_env).err().unwrap();
        assert!(
            e.message().contains("MYSQL_USER_NAME or MYSQL_USER"),
            "{}",
            e.message()
        );
        assert!(e.message().contains(".env"), "{}", e.message());
        let e = resolve(&c, &db(DatabaseEngine::Mysql), no_env)
            .err()
            .unwrap();
        assert!(e.message().contains("app_env"), "{}", e.message());
    }

    #[test]
    fn a_password_in_the_configured_url_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let mut d = db(DatabaseEngine::Postgres);
        d.url = Some("postgres://u:hunter2@h/db".into());
        let e = resolve(&c, &d, no_env).err().unwrap();
        assert!(!e.message().contains("hunter2"));
        assert!(e.message().contains("password_env"), "{}", e.message());
    }
}
