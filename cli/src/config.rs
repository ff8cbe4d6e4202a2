//! The configuration: built-in defaults < `cutover.toml` < `CUTOVER_*` environment.
//!
//! Flags override individual settings in the commands. Secrets come from the environment
//! (`CUTOVER_DATABASE__PASSWORD`) or files (`password_file`), never from flags.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use cutover_core::{HealthCheck, HookCommand, Hooks, ImageRef};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The application.
    pub app: AppConfig,
    /// Health checking on top of the backend's readiness.
    #[serde(default)]
    pub health: HealthCheck,
    /// The backend.
    pub driver: DriverSection,
    /// The application's database.
    #[serde(default)]
    pub database: Option<DatabaseConfig>,
    /// Where backups go and how many stay.
    #[serde(default)]
    pub backup: BackupConfig,
    /// Where runs are recorded.
    #[serde(default)]
    pub journal: JournalConfig,
    /// Webhooks told how runs end.
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// Commands run around an upgrade's downtime.
    #[serde(default)]
    pub hooks: HooksConfig,
    /// The directory relative paths are resolved against (the config file's), set on load.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[app]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The application's name: the lock key and the identity of its backups.
    pub name: String,
    /// The image repository (no tag): upgrades change the tag.
    pub image: String,
    /// Replicas after an upgrade; default: as observed.
    #[serde(default)]
    pub replicas: Option<u32>,
}

/// `[driver]`: `kind` and one table per backend, e.g. `[driver.docker]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriverSection {
    /// The registered driver name.
    pub kind: String,
    /// How long one driver call (observe, lock, snapshot, set_image, scale, restore,
    /// release) may take, e.g. `"5m"` (the default): a hung backend then fails the step
    /// instead of holding the lock forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_timeout: Option<String>,
    /// Backend tables by name; only the one named by `kind` is read.
    #[serde(flatten)]
    pub tables: BTreeMap<String, figment::value::Value>,
}

/// `[database]`.
///
/// Where the connection comes from: `url`, or the application's own settings (`app_env`,
/// read through `vars`), with `host`, `port`, `user` and `name` overriding single parts
/// (see `crate::database`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `mysql`, `mariadb` or `postgres`.
    pub engine: DatabaseEngine,
    /// The connection URL without password, as reachable from this machine.
    #[serde(default)]
    pub url: Option<String>,
    /// A file of `KEY=value` lines the application reads its settings from (a Compose
    /// project's `.env`): host, port, user, database and password are taken from it
    /// through `vars`.
    #[serde(default)]
    pub app_env: Option<PathBuf>,
    /// The names of the application's variables; the vendor's usual names by default.
    #[serde(default)]
    pub vars: AppVars,
    /// The host as this machine reaches it (the app's may be a Compose service name).
    #[serde(default)]
    pub host: Option<String>,
    /// The port.
    #[serde(default)]
    pub port: Option<u16>,
    /// The user.
    #[serde(default)]
    pub user: Option<String>,
    /// The database name.
    #[serde(default)]
    pub name: Option<String>,
    /// The password; from `CUTOVER_DATABASE__PASSWORD`, never from the file or a flag.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// The name of an environment variable of cutover's process that holds the password
    /// (one the operator's shell or service manager already sets).
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password (its first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Run the dump and restore tools in this container or pod (through the driver)
    /// instead of on this machine.
    #[serde(default)]
    pub exec_in: Option<String>,
    /// Run the tools on this host of the driver (SSH driver).
    #[serde(default)]
    pub exec_on_host: Option<String>,
    /// An account that may create, rename and drop databases (the PostgreSQL superuser,
    /// MariaDB's root), with which restores load the backup beside the live database and
    /// swap it in where the application's user has no such right. Optional.
    #[serde(default)]
    pub admin_user: Option<String>,
    /// Its password; from `CUTOVER_DATABASE__ADMIN_PASSWORD`, never from the file or a
    /// flag.
    #[serde(default, skip_serializing)]
    pub admin_password: Option<String>,
    /// A file holding its password (its first line).
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("engine", &self.engine)
            .field("url", &self.url)
            .field("app_env", &self.app_env)
            .field("vars", &self.vars)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("exec_in", &self.exec_in)
            .field("admin_user", &self.admin_user)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_password_file", &self.admin_password_file)
            .field("exec_on_host", &self.exec_on_host)
            .finish()
    }
}

/// `[database.vars]`: which of the application's variables hold each setting. Unset
/// names take the vendor's usual ones (`MYSQL_HOST`, `MYSQL_USER_NAME` or `MYSQL_USER`,
/// …, `DATABASE_URL`; for PostgreSQL `POSTGRES_*`/`PG*`), listed by
/// `crate::database::default_vars`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppVars {
    /// A whole connection URL (it wins over the parts).
    #[serde(default)]
    pub url: Option<String>,
    /// The host.
    #[serde(default)]
    pub host: Option<String>,
    /// The port.
    #[serde(default)]
    pub port: Option<String>,
    /// The user.
    #[serde(default)]
    pub user: Option<String>,
    /// The password.
    #[serde(default)]
    pub password: Option<String>,
    /// The database name.
    #[serde(default)]
    pub database: Option<String>,
}

/// `[hooks]`: one table per hook point, e.g. `[hooks.before_stop]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Right before the upgrade's stop; a failure aborts the upgrade with nothing changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_stop: Option<HookConfig>,
    /// Once the new leader is healthy, before the other instances start; best effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_leader: Option<HookConfig>,
    /// When the upgrade ends rolled back; best effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_rollback: Option<HookConfig>,
    /// At the end of the upgrade, whatever the outcome; best effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_run: Option<HookConfig>,
}

/// One hook: `command` is the program and its arguments, run without a shell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The program and its arguments, e.g. `["/usr/local/bin/maintenance", "on"]`.
    pub command: Vec<String>,
    /// The working directory (relative to the config file's); default: cutover's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// How long it may run before it is killed, e.g. `"30s"`; default 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

pub use cutover_backup::DatabaseEngine;
use cutover_backup::S3Settings;

/// `[backup]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// A directory, or `s3://bucket/prefix`.
    #[serde(default = "default_store")]
    pub store: String,
    /// How many backups to keep.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Storage paths to archive through the driver.
    #[serde(default)]
    pub paths: Vec<String>,
    /// `[backup.s3]`: endpoint and region of an `s3://` store (credentials come from the
    /// environment, as the AWS tools read them).
    #[serde(default)]
    pub s3: S3Settings,
}

fn default_store() -> String {
    ".cutover/backups".into()
}
fn default_keep() -> usize {
    10
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            store: default_store(),
            keep: default_keep(),
            paths: Vec::new(),
            s3: S3Settings::default(),
        }
    }
}

/// `[journal]`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// `sqlite://PATH` (relative to the config file's directory), or
    /// `postgres://user@host:port/database` for a journal shared by several machines.
    #[serde(default = "default_journal")]
    pub url: String,
    /// A PostgreSQL journal's password: from `CUTOVER_JOURNAL__PASSWORD`, never the file.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// A file holding a PostgreSQL journal's password (its first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl fmt::Debug for JournalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalConfig")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// Where the journal is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalAt {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database (the URL holds no password).
    Postgres(String),
}

fn default_journal() -> String {
    "sqlite://.cutover/journal.db".into()
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            url: default_journal(),
            password: None,
            password_file: None,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file does not exist.
    Missing(PathBuf),
    /// figment's error, which names the key and where its value came from.
    Invalid(Box<figment::Error>),
    /// A value is well-typed but unusable.
    Value(String),
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(p) => write!(
                f,
                "no configuration at {}: create it (see examples/) or pass --config PATH",
                p.display()
            ),
            Self::Invalid(e) => {
                // figment reports every error; each names the key and its source.
                let all: Vec<String> = e.clone().into_iter().map(|e| e.to_string()).collect();
                write!(f, "invalid configuration: {}", all.join("; "))
            }
            Self::Value(m) => write!(f, "invalid configuration: {m}"),
        }
    }
}

/// Environment variables under `CUTOVER_` that are not configuration.
fn is_config_env(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    !key.starts_with("test") && !key.starts_with("log")
}

impl Config {
    /// Loads `path` (default `cutover.toml` in the working directory) and the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = path.map_or_else(|| PathBuf::from("cutover.toml"), Path::to_path_buf);
        if !path.is_file() {
            return Err(ConfigError::Missing(path));
        }
        let figment = Figment::from(Serialized::defaults(Defaults::default()))
            .merge(Toml::file_exact(&path))
            .merge(
                Env::prefixed("CUTOVER_")
                    .split("__")
                    .filter(|k| is_config_env(k.as_str())),
            );
        Self::from_figment(figment, &path)
    }

    fn from_figment(figment: Figment, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))?;
        config.base_dir = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let at = |key: &str, msg: String| {
            ConfigError::Value(format!("{key} in {}: {msg}", path.display()))
        };
        if self.app.name.is_empty()
            || !self
                .app
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(at(
                "app.name",
                format!(
                    "{:?} must be non-empty letters, digits, '-', '_' or '.'",
                    self.app.name
                ),
            ));
        }
        let image = ImageRef::parse(&self.app.image).map_err(|e| at("app.image", e.to_string()))?;
        if image.tag().is_some() || image.digest().is_some() {
            return Err(at(
                "app.image",
                format!(
                    "{:?} must be the repository without tag (upgrades choose the tag with --to)",
                    self.app.image
                ),
            ));
        }
        self.health
            .validate()
            .map_err(|e| at("health", e.message().to_string()))?;
        self.call_timeout()
            .map_err(|msg| at("driver.call_timeout", msg))?;
        self.try_hooks().map_err(|(key, msg)| at(&key, msg))?;
        if let Some(extra) = self.driver.tables.keys().find(|k| **k != self.driver.kind) {
            return Err(at(
                &format!("driver.{extra}"),
                format!(
                    "a table for driver {extra:?} while driver.kind = {:?}; remove it or fix kind",
                    self.driver.kind
                ),
            ));
        }
        Ok(())
    }

    /// `[driver] call_timeout`, or the core's default.
    pub fn call_timeout(&self) -> Result<std::time::Duration, String> {
        let Some(text) = &self.driver.call_timeout else {
            return Ok(cutover_core::DEFAULT_CALL_TIMEOUT);
        };
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err("must be above zero".into()),
            Err(e) => Err(format!(
                "{text:?} is not a duration like \"90s\" or \"5m\": {e}"
            )),
        }
    }

    /// The engine's settings for this configuration.
    pub fn settings(&self) -> cutover_core::Settings {
        cutover_core::Settings {
            // A failed release's instance logs, beside the journal that names the run.
            evidence_dir: Some(self.evidence_dir()),
            health: self.health.clone(),
            keep_backups: self.backup.keep,
            call_timeout: self
                .call_timeout()
                .expect("validated when the configuration was loaded"),
            hooks: self.hook_commands(),
            ..cutover_core::Settings::new(self.app.name.clone())
        }
    }

    /// The `[hooks]` commands, validated when the configuration was loaded.
    pub fn hook_commands(&self) -> Hooks {
        self.try_hooks()
            .expect("validated when the configuration was loaded")
    }

    fn try_hooks(&self) -> Result<Hooks, (String, String)> {
        let h = &self.hooks;
        let one = |name: &str,
                   hook: &Option<HookConfig>|
         -> Result<Option<HookCommand>, (String, String)> {
            let Some(hook) = hook else {
                return Ok(None);
            };
            let key = |k: &str| format!("hooks.{name}.{k}");
            if hook.command.first().is_none_or(|p| p.is_empty()) {
                return Err((
                    key("command"),
                    "must name a program: [\"program\", \"arg\", …]".into(),
                ));
            }
            let timeout = match &hook.timeout {
                None => cutover_core::DEFAULT_HOOK_TIMEOUT,
                Some(text) => match humantime::parse_duration(text) {
                    Ok(d) if !d.is_zero() => d,
                    Ok(_) => return Err((key("timeout"), "must be above zero".into())),
                    Err(e) => {
                        return Err((
                            key("timeout"),
                            format!("{text:?} is not a duration like \"30s\": {e}"),
                        ));
                    }
                },
            };
            Ok(Some(HookCommand {
                argv: hook.command.clone(),
                dir: hook.dir.as_deref().map(|d| self.resolve(d)),
                timeout,
            }))
        };
        Ok(Hooks {
            before_stop: one("before_stop", &h.before_stop)?,
            after_leader: one("after_leader", &h.after_leader)?,
            on_rollback: one("on_rollback", &h.on_rollback)?,
            after_run: one("after_run", &h.after_run)?,
        })
    }

    /// The image repository.
    pub fn repository(&self) -> ImageRef {
        ImageRef::parse(&self.app.image).expect("validated on load")
    }

    /// The image `repository:tag`.
    pub fn image_with_tag(&self, tag: &str) -> cutover_core::Result<ImageRef> {
        self.repository().with_tag(tag)
    }

    /// A path from the config, resolved against the config file's directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Where the journal is.
    pub fn journal_at(&self) -> Result<JournalAt, ConfigError> {
        let url = &self.journal.url;
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(JournalAt::File(self.resolve(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(JournalAt::Postgres(url.clone()));
        }
        Err(ConfigError::Value(format!(
            "journal.url: {:?} is neither sqlite://PATH nor postgres://user@host/database",
            url.split('@').next_back().unwrap_or_default()
        )))
    }

    /// Where failed instances' logs are kept: `runs/` beside a SQLite journal, else
    /// `.cutover/runs` beside the config.
    pub fn evidence_dir(&self) -> PathBuf {
        match self.journal_at() {
            Ok(JournalAt::File(path)) => path
                .parent()
                .map_or_else(|| self.resolve(".cutover/runs"), |dir| dir.join("runs")),
            _ => self.resolve(".cutover/runs"),
        }
    }

    /// The driver's own table (`[driver.<kind>]`), empty if absent.
    pub fn driver_table(&self) -> figment::value::Value {
        self.driver
            .tables
            .get(&self.driver.kind)
            .cloned()
            .unwrap_or_else(|| figment::value::Value::from(figment::value::Dict::new()))
    }
}

/// Built-in defaults of the optional sections.
#[derive(Serialize, Default)]
struct Defaults {
    backup: BackupConfig,
    journal: JournalConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    // figment's Jail closures return figment's (large) error type; not ours to shrink.
    #[allow(clippy::result_large_err)]
    fn load_in_jail(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let mut out = Err(String::new());
        figment::Jail::expect_with(|jail| {
            jail.create_file("cutover.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            out = Config::load(Some(Path::new("cutover.toml"))).map_err(|e| e.to_string());
            Ok(())
        });
        out
    }

    const GOOD: &str = r#"
[app]
name = "apidog"
image = "127.0.0.1:5000/apidog/server"
[driver]
kind = "docker"
"#;

    #[test]
    fn a_minimal_config_loads_with_defaults() {
        let c = load_in_jail(GOOD, &[]).unwrap();
        assert_eq!(c.app.name, "apidog");
        assert_eq!(c.backup.keep, 10);
        assert_eq!(c.journal.url, "sqlite://.cutover/journal.db");
        assert!(
            matches!(c.journal_at().unwrap(), JournalAt::File(p) if p.ends_with(".cutover/journal.db"))
        );
    }

    #[test]
    fn environment_overrides_the_file_with_double_underscore_nesting() {
        let c = load_in_jail(
            GOOD,
            &[
                ("CUTOVER_APP__REPLICAS", "4"),
                ("CUTOVER_TEST_REGISTRY", "x"),
                ("CUTOVER_TESTENV_DIR", "/var/tmp/x"),
            ],
        )
        .unwrap();
        assert_eq!(c.app.replicas, Some(4));
    }

    #[test]
    fn a_typo_names_the_key_and_the_file() {
        let e = load_in_jail(&GOOD.replace("image =", "imag ="), &[]).unwrap_err();
        assert!(e.contains("imag"), "{e}");
        assert!(e.contains("cutover.toml"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_the_key_and_the_file() {
        let e = load_in_jail(&format!("{GOOD}\n[backup]\nkeep = \"ten\"\n"), &[]).unwrap_err();
        assert!(e.contains("backup.keep"), "{e}");
        assert!(e.contains("cutover.toml"), "{e}");
    }

    #[test]
    fn an_env_value_of_the_wrong_type_names_the_variable() {
        let e = load_in_jail(GOOD, &[("CUTOVER_APP__REPLICAS", "three")]).unwrap_err();
        assert!(e.to_lowercase().contains("app.replicas"), "{e}");
        assert!(e.to_lowercase().contains("environment"), "{e}");
    }

    #[test]
    fn a_tagged_image_or_bad_name_is_refused() {
        let e = load_in_jail(&GOOD.replace("server\"", "server:1.0\""), &[]).unwrap_err();
        assert!(e.contains("app.image"), "{e}");
        let e = load_in_jail(&GOOD.replace("\"apidog\"", "\"a b\""), &[]).unwrap_err();
        assert!(e.contains("app.name"), "{e}");
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let c = load_in_jail(
            &format!(
                "{GOOD}\n[database]\nengine = \"mariadb\"\nurl = \"mysql://u@127.0.0.1/db\"\n"
            ),
            &[("CUTOVER_DATABASE__PASSWORD", "hunter2")],
        )
        .unwrap();
        assert_eq!(
            c.database.as_ref().unwrap().password.as_deref(),
            Some("hunter2")
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
