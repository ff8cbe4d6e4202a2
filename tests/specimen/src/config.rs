//! Configuration from the environment, named as the reference application names it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// How a release behaves besides its migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Migrates and serves.
    Normal,
    /// Applies part of its own migration, then exits non-zero.
    Broken,
    /// Migrates, serves, and reports unhealthy forever.
    Unhealthy,
}

/// The application version baked into the image, e.g. `1.1.0` or `1.1.0-broken`.
#[derive(Debug, Clone)]
pub struct Version {
    /// As given, suffix included.
    pub full: String,
    /// The release whose schema this build expects.
    pub base: (u32, u32, u32),
    /// Behaviour selected by the suffix.
    pub variant: Variant,
}

impl Version {
    /// Parses `MAJOR.MINOR.PATCH[-broken|-unhealthy]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (base_text, variant) = match text.split_once('-') {
            None => (text, Variant::Normal),
            Some((base, "broken")) => (base, Variant::Broken),
            Some((base, "unhealthy")) => (base, Variant::Unhealthy),
            Some((_, other)) => return Err(format!("unknown version suffix `-{other}`")),
        };
        Ok(Self {
            full: text.to_owned(),
            base: parse_triple(base_text)
                .ok_or_else(|| format!("`{text}` is not MAJOR.MINOR.PATCH"))?,
            variant,
        })
    }
}

/// Parses `1.2.3` into a comparable tuple.
pub fn parse_triple(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
    let triple = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(triple)
}

/// Which SQL dialect the database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MySQL or MariaDB.
    MySql,
    /// PostgreSQL.
    Postgres,
}

/// Where the database is; `url` carries the password and must never be printed.
#[derive(Clone)]
pub struct Database {
    /// Connection URL including credentials.
    pub url: String,
    /// The same URL without the password, for logs.
    pub display: String,
    /// Dialect chosen from the URL scheme.
    pub dialect: Dialect,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &self.display)
            .field("dialect", &self.dialect)
            .finish()
    }
}

/// Everything the server needs, read once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The version this build behaves as.
    pub version: Version,
    /// Identifies this process in logs and in the migration record.
    pub instance: String,
    /// The application database.
    pub database: Database,
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Directory for uploaded files.
    pub storage_dir: PathBuf,
    /// Extra time spent inside every migration, so tests can observe one in progress.
    pub migration_stretch: Duration,
    /// How long to keep retrying the first database connection.
    pub database_wait: Duration,
}

impl Config {
    /// Reads the configuration through `get` (the process environment in production).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let version_text = get("SPECIMEN_VERSION")
            .ok_or("SPECIMEN_VERSION is not set (the image sets it at build time)")?;
        let version = Version::parse(&version_text)?;
        let instance = get("SPECIMEN_INSTANCE").unwrap_or_else(|| {
            let host = get("HOSTNAME").unwrap_or_else(|| "local".to_owned());
            // The micro-second suffix separates two processes that share a hostname and
            // pid, as two containers started from one image both run as pid 1.
            format!(
                "{host}-{}-{:x}",
                std::process::id(),
                crate::log::now_micros() & 0xff_ffff
            )
        });
        Ok(Self {
            version,
            instance,
            database: database(&get)?,
            listen: listen_address(&get)?,
            storage_dir: get("STORAGE_DIR")
                .unwrap_or_else(|| "/data/storage".to_owned())
                .into(),
            migration_stretch: seconds(&get, "SPECIMEN_MIGRATION_SECONDS", 0.0)?,
            database_wait: seconds(&get, "SPECIMEN_DATABASE_WAIT_SECONDS", 30.0)?,
        })
    }
}

/// `BIND_ADDRESS` (default all interfaces) and `PORT` (default 8080).
pub fn listen_address(get: &impl Fn(&str) -> Option<String>) -> Result<SocketAddr, String> {
    let port: u16 = match get("PORT") {
        Some(p) => p.parse().map_err(|_| format!("PORT `{p}` is not a port"))?,
        None => 8080,
    };
    let address: IpAddr = match get("BIND_ADDRESS") {
        Some(a) => a
            .parse()
            .map_err(|_| format!("BIND_ADDRESS `{a}` is not an IP address"))?,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Ok(SocketAddr::new(address, port))
}

fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: f64,
) -> Result<Duration, String> {
    match get(key) {
        None => Ok(Duration::from_secs_f64(default)),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| format!("{key} `{text}` is not a number of seconds")),
    }
}

/// `DATABASE_URL` wins; otherwise the vendor's `MYSQL_*` variables.
fn database(get: &impl Fn(&str) -> Option<String>) -> Result<Database, String> {
    let url = match get("DATABASE_URL") {
        Some(url) => url,
        None => {
            let host = get("MYSQL_HOST").ok_or("set DATABASE_URL or MYSQL_HOST")?;
            let port = get("MYSQL_PORT").unwrap_or_else(|| "3306".to_owned());
            let name = get("MYSQL_DATABASE").ok_or("MYSQL_DATABASE is not set")?;
            let user = get("MYSQL_USER_NAME").ok_or("MYSQL_USER_NAME is not set")?;
            let password = get("MYSQL_PASSWORD").unwrap_or_default();
            format!(
                "mysql://{}:{}@{host}:{port}/{}",
                encode(&user),
                encode(&password),
                encode(&name)
            )
        }
    };
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    let dialect = match scheme {
        "mysql" | "mariadb" => Dialect::MySql,
        "postgres" | "postgresql" => Dialect::Postgres,
        _ => {
            return Err(format!(
                "database URL scheme `{scheme}` is not mysql or postgres"
            ));
        }
    };
    // sqlx only knows the `mysql` scheme for MariaDB.
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url,
    };
    Ok(Database {
        display: redact(&url),
        url,
        dialect,
    })
}

/// Percent-encodes everything but unreserved characters, for the user-info and path of a URL.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_env(|key| env.get(key).cloned())
    }

    #[test]
    fn vendor_variables_build_an_encoded_mysql_url() {
        let c = config(&[
            ("SPECIMEN_VERSION", "1.1.0-broken"),
            ("MYSQL_HOST", "127.0.0.1"),
            ("MYSQL_PORT", "3307"),
            ("MYSQL_DATABASE", "app"),
            ("MYSQL_USER_NAME", "apidog"),
            ("MYSQL_PASSWORD", "p@ss:w/rd"),
        ])
        .unwrap();
        assert_eq!(
            c.database.url,
            "mysql://apidog:p%40ss%3Aw%2Frd@127.0.0.1:3307/app"
        );
        assert_eq!(c.database.display, "mysql://apidog:***@127.0.0.1:3307/app");
        assert!(!format!("{c:?}").contains("p%40ss"));
        assert_eq!(c.version.base, (1, 1, 0));
        assert_eq!(c.version.variant, Variant::Broken);
        assert_eq!(c.listen.port(), 8080);
    }

    #[test]
    fn database_url_selects_the_dialect() {
        let c = config(&[
            ("SPECIMEN_VERSION", "1.0.0"),
            ("DATABASE_URL", "postgres://u:secret@127.0.0.1:5432/db"),
            ("PORT", "9000"),
        ])
        .unwrap();
        assert_eq!(c.database.dialect, Dialect::Postgres);
        assert_eq!(c.database.display, "postgres://u:***@127.0.0.1:5432/db");
        assert_eq!(c.listen.port(), 9000);
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        assert!(config(&[("DATABASE_URL", "mysql://a@b/c")]).is_err());
        assert!(
            config(&[
                ("SPECIMEN_VERSION", "1.0"),
                ("DATABASE_URL", "mysql://a@b/c")
            ])
            .is_err()
        );
        assert!(
            config(&[
                ("SPECIMEN_VERSION", "1.0.0-odd"),
                ("DATABASE_URL", "mysql://a@b/c")
            ])
            .is_err()
        );
        assert!(
            config(&[
                ("SPECIMEN_VERSION", "1.0.0"),
                ("DATABASE_URL", "sqlite://x")
            ])
            .is_err()
        );
    }
}
