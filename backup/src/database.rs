//! The application's database: its engines' own dump and restore tools, run on this
//! machine or through [`Driver::exec`], and a fingerprint computed inside the database.
//!
//! Passwords reach the tools through their environment (`PGPASSWORD`, `MYSQL_PWD`) and
//! sqlx through its connect options: never argv, logs or errors.

use std::fmt;
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use tokio::io::AsyncReadExt;

use crate::manifest::{DatabaseEngine, Fingerprint};
use crate::pg_list::{Kept, Name};
use cutover_core::driver::{ByteSink, ByteStream, Driver, ExecIo, ExecTarget, ExitStatus};
use cutover_core::{Error, ErrorKind, Result};

/// Where the dump and restore tools run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolSite {
    /// On this machine (the tools must be installed here).
    #[default]
    Local,
    /// Through the driver's exec, e.g. in the database's container.
    Exec(ExecTarget),
}

/// How to reach the database.
#[derive(Clone)]
pub struct Database {
    engine: DatabaseEngine,
    host: String,
    port: u16,
    user: String,
    name: String,
    password: Option<String>,
    site: ToolSite,
    /// An account that may create, rename and drop databases (`[database] admin_user`),
    /// with its password: restores work beside the live database as it.
    admin: Option<(String, Option<String>)>,
    /// Whether a load keeps the dump's owners (a superuser's admin connection) instead of
    /// making the loading user own everything (`--no-owner`).
    keeps_owners: bool,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("engine", &self.engine)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("site", &self.site)
            .field("admin", &self.admin.as_ref().map(|(user, _)| user))
            .finish()
    }
}

fn invalid_url(url: &str, why: &str) -> Error {
    // The URL is shown without any password it might carry.
    let shown = match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(unparsable)".to_string(),
    };
    Error::invalid(format!("[database] url {shown}: {why}"))
}

impl Database {
    /// A database from `[database]`: `postgres://user@host:port/name` or
    /// `mysql://user@host:port/name`. A password in the URL is refused: it belongs in
    /// the environment or a file.
    pub fn new(
        engine: DatabaseEngine,
        url: &str,
        password: Option<String>,
        site: ToolSite,
    ) -> Result<Self> {
        let parsed = url::Url::parse(url).map_err(|e| invalid_url(url, &e.to_string()))?;
        let (scheme_ok, default_port) = match engine {
            DatabaseEngine::Postgres => {
                (matches!(parsed.scheme(), "postgres" | "postgresql"), 5432)
            }
            DatabaseEngine::Mysql | DatabaseEngine::Mariadb => {
                (matches!(parsed.scheme(), "mysql" | "mariadb"), 3306)
            }
        };
        if !scheme_ok {
            return Err(invalid_url(
                url,
                &format!("the scheme does not fit engine {}", engine.as_str()),
            ));
        }
        if parsed.password().is_some() {
            return Err(invalid_url(
                url,
                "must not contain a password; set CUTOVER_DATABASE__PASSWORD or password_file",
            ));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid_url(url, "no host"))?;
        let name = parsed.path().trim_start_matches('/');
        if name.is_empty() || name.contains('/') {
            return Err(invalid_url(url, "the path must be the database name"));
        }
        if parsed.username().is_empty() {
            return Err(invalid_url(url, "no user"));
        }
        let safe = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if !safe(name) || !safe(parsed.username()) {
            return Err(invalid_url(
                url,
                "user and database names may use letters, digits, '_', '-', '.'",
            ));
        }
        Ok(Self {
            engine,
            host: host.trim_matches(['[', ']']).to_string(),
            port: parsed.port().unwrap_or(default_port),
            user: parsed.username().to_string(),
            name: name.to_string(),
            password,
            site,
            admin: None,
            keeps_owners: false,
        })
    }

    /// The same database with an admin account (`[database] admin_user`): one that may
    /// create, rename and drop databases where the application's user may not (the
    /// PostgreSQL superuser, MariaDB's root). Restores then load the backup beside the
    /// live database and swap it in as that account; everything else still runs as the
    /// application's user.
    pub fn with_admin(mut self, user: &str, password: Option<String>) -> Result<Self> {
        if user.is_empty()
            || !user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(Error::invalid(format!(
                "[database] admin_user {user:?}: a user name is letters, digits, '_', '-', '.'"
            )));
        }
        self.admin = Some((user.to_string(), password));
        Ok(self)
    }

    /// The admin account's connection to this database, when one is configured: it keeps
    /// the dump's owners when it loads one.
    pub(crate) fn admin(&self) -> Option<Database> {
        let (user, password) = self.admin.clone()?;
        Some(Database {
            user,
            password,
            admin: None,
            keeps_owners: true,
            ..self.clone()
        })
    }

    /// The account that works beside the live database: the admin one, else this.
    pub(crate) fn beside_as(&self) -> Database {
        self.admin().unwrap_or_else(|| self.clone())
    }

    /// The engine.
    pub fn engine(&self) -> DatabaseEngine {
        self.engine
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same server, another database (for restore tests).
    pub fn with_name(&self, name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..self.clone()
        }
    }

    /// The user it connects as.
    pub fn user(&self) -> &str {
        &self.user
    }

    fn pg_options(&self) -> PgConnectOptions {
        let o = PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .database(&self.name)
            .disable_statement_logging();
        match &self.password {
            Some(p) => o.password(p),
            None => o,
        }
    }

    fn mysql_options(&self) -> MySqlConnectOptions {
        self.mysql_server_options().database(&self.name)
    }

    /// MySQL/MariaDB: the server, no database selected.
    fn mysql_server_options(&self) -> MySqlConnectOptions {
        let o = MySqlConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .charset("utf8mb4")
            .disable_statement_logging();
        match &self.password {
            Some(p) => o.password(p),
            None => o,
        }
    }

    /// A connection to the server rather than to this database, for what a database
    /// cannot do to itself — create, rename and drop databases: on PostgreSQL to the
    /// `postgres` maintenance database (else `template1`), on MySQL/MariaDB with no
    /// database selected. It works while this database is missing.
    pub async fn connect_server(&self) -> Result<Conn> {
        if let Some(admin) = self.admin() {
            return Box::pin(admin.connect_server()).await;
        }
        match self.engine {
            DatabaseEngine::Postgres => {
                let first =
                    PgConnection::connect_with(&self.pg_options().database("postgres")).await;
                let conn = match first {
                    Ok(c) => Ok(c),
                    Err(_) => {
                        PgConnection::connect_with(&self.pg_options().database("template1")).await
                    }
                };
                conn.map(|c| Conn::new(Link::Pg(c))).map_err(|e| {
                    self.db_error(
                        "cannot connect to the server's postgres or template1 database",
                        e,
                    )
                })
            }
            _ => MySqlConnection::connect_with(&self.mysql_server_options())
                .await
                .map(|c| Conn::new(Link::My(c)))
                .map_err(|e| self.db_error("cannot connect to the server", e)),
        }
    }

    fn db_error(&self, what: &str, e: sqlx::Error) -> Error {
        let kind = match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Other,
        };
        // A refused login without a password is most often a password nobody passed on.
        let hint = if self.password.is_none() && matches!(e, sqlx::Error::Database(_)) {
            "; no password was given: set CUTOVER_DATABASE__PASSWORD, or [database] password_env, password_file or app_env"
        } else {
            ""
        };
        Error::new(
            kind,
            format!(
                "{what} ({} database {} on {}:{}){hint}",
                self.engine.as_str(),
                self.name,
                self.host,
                self.port
            ),
        )
        .with_operation("database")
        .with_source(e)
    }

    /// An open connection.
    pub async fn connect(&self) -> Result<Conn> {
        match self.engine {
            DatabaseEngine::Postgres => PgConnection::connect_with(&self.pg_options())
                .await
                .map(|c| Conn::new(Link::Pg(c)))
                .map_err(|e| self.db_error("cannot connect", e)),
            _ => MySqlConnection::connect_with(&self.mysql_options())
                .await
                .map(|c| Conn::new(Link::My(c)))
                .map_err(|e| self.db_error("cannot connect", e)),
        }
    }

    /// The tool names: the dump tool first, then the restore tools.
    fn tools(&self) -> &'static [&'static str] {
        match self.engine {
            // pg_restore turns the archive into SQL, psql runs it in one transaction.
            DatabaseEngine::Postgres => &["pg_dump", "pg_restore", "psql"],
            DatabaseEngine::Mysql => &["mysqldump", "mysql"],
            DatabaseEngine::Mariadb => &["mariadb-dump", "mariadb"],
        }
    }

    fn connection_args(&self) -> Vec<String> {
        let (host, port, user) = match self.engine {
            DatabaseEngine::Postgres => ("--host", "--port", "--username"),
            _ => ("--host", "--port", "--user"),
        };
        vec![
            host.into(),
            self.host.clone(),
            port.into(),
            self.port.to_string(),
            user.into(),
            self.user.clone(),
        ]
    }

    fn password_env(&self) -> Vec<(String, String)> {
        let var = match self.engine {
            DatabaseEngine::Postgres => "PGPASSWORD",
            _ => "MYSQL_PWD",
        };
        self.password
            .iter()
            .map(|p| (var.to_string(), p.clone()))
            .collect()
    }

    /// The dump command; `snapshot` pins PostgreSQL's dump to an exported snapshot;
    /// `history` dumps MariaDB's system-versioned tables with their history rows
    /// (`--dump-history`).
    pub fn dump_argv(&self, snapshot: Option<&str>, history: bool) -> Vec<String> {
        let mut argv = vec![self.tools()[0].to_string()];
        argv.extend(self.connection_args());
        match self.engine {
            DatabaseEngine::Postgres => {
                argv.extend(["--format=custom", "--compress=0", "--no-password"].map(String::from));
                if let Some(s) = snapshot {
                    argv.push(format!("--snapshot={s}"));
                }
                argv.push(format!("--dbname={}", self.name));
            }
            _ => {
                argv.extend(
                    [
                        "--single-transaction",
                        "--routines",
                        // Triggers come last, after the FLOAT fix-ups (`floats`).
                        "--skip-triggers",
                        "--events",
                        "--hex-blob",
                        "--no-tablespaces",
                        "--default-character-set=utf8mb4",
                        // The client's own limit: reading a large row must not fail
                        // here; what the server accepts is checked separately.
                        "--max-allowed-packet=1G",
                    ]
                    .map(String::from),
                );
                if history {
                    argv.push("--dump-history".into());
                }
                argv.push(self.name.clone());
            }
        }
        argv
    }

    /// PostgreSQL: the command that turns the archive on its stdin into the SQL script
    /// that [`Database::restore_argv`] runs, with the entries of the list file `list`
    /// (`--use-list`) or all. The script is one transaction whose `COMMIT` comes last,
    /// written only once the whole archive was read: a script cut short by a failure ends
    /// inside the transaction, which the server then rolls back. Objects come owned by the
    /// restoring user (`--no-owner`) with the privileges they had.
    pub fn script_argv(&self, list: Option<&str>) -> Vec<String> {
        let mut argv: Vec<String> = ["pg_restore", "--no-owner", "--single-transaction"]
            .map(String::from)
            .to_vec();
        argv.extend(list.map(|l| format!("--use-list={l}")));
        argv.push("--file=-".into());
        argv
    }

    /// PostgreSQL: the command that prints the table of contents of the archive on its
    /// stdin (`pg_restore --list`), which an in-place restore edits (`pg_list`).
    pub fn list_argv(&self) -> Vec<String> {
        ["pg_restore", "--list"].map(String::from).to_vec()
    }

    /// PostgreSQL: the command that loads the archive on its stdin into this database,
    /// which is new and empty (a restore beside the live one): entry by entry, not in one
    /// transaction, so that the number of tables is bounded by nothing but the server's
    /// disk; it stops at the first error. Objects come owned by the restoring user
    /// (`--no-owner`) with the privileges they had — or, loaded as a superuser admin
    /// account ([`Database::with_admin`]), by the owners the dump records. With `list`,
    /// only the entries of that list file (`--use-list`).
    pub fn load_argv(&self, list: Option<&str>) -> Vec<String> {
        let mut argv = vec!["pg_restore".to_string()];
        argv.extend(self.connection_args());
        if !self.keeps_owners {
            argv.push("--no-owner".into());
        }
        argv.extend(["--exit-on-error", "--no-password"].map(String::from));
        argv.extend(list.map(|l| format!("--use-list={l}")));
        argv.push(format!("--dbname={}", self.name));
        argv
    }

    /// The restore command, reading from stdin: on PostgreSQL `psql` running the script
    /// of [`Database::script_argv`], stopping at the first error; on MySQL/MariaDB the
    /// client running the dump.
    pub fn restore_argv(&self) -> Vec<String> {
        let mut argv = vec![self.tools()[1].to_string()];
        match self.engine {
            DatabaseEngine::Postgres => {
                argv = vec!["psql".to_string()];
                argv.extend(self.connection_args());
                argv.extend(
                    [
                        "--no-psqlrc",
                        "--quiet",
                        "--set=ON_ERROR_STOP=1",
                        "--no-password",
                    ]
                    .map(String::from),
                );
                argv.push(format!("--dbname={}", self.name));
            }
            _ => {
                argv.extend(self.connection_args());
                argv.push("--default-character-set=utf8mb4".into());
                argv.push("--max-allowed-packet=1G".into());
                argv.push(self.name.clone());
            }
        }
        argv
    }

    /// Runs a tool where configured, with the password in its environment.
    pub async fn run_tool(
        &self,
        driver: &dyn Driver,
        argv: &[String],
        stdin: Option<ByteStream>,
        stdout: Option<ByteSink>,
    ) -> Result<ExitStatus> {
        let env = self.password_env();
        match &self.site {
            ToolSite::Exec(at) => driver.exec(at, argv, ExecIo { env, stdin, stdout }).await,
            ToolSite::Local => run_local(argv, env, stdin, stdout).await,
        }
    }

    /// An error naming the tool, where it ran and how it ended, unless it succeeded.
    pub fn check_exit(&self, argv: &[String], status: &ExitStatus, operation: &str) -> Result<()> {
        if status.success() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Other,
            format!(
                "{} failed {} ({})",
                argv[0],
                self.site_name(),
                status.describe()
            ),
        )
        .with_operation(operation.to_string()))
    }

    /// Writes `contents` to a new file where the tools run (mode 0600), for a tool that
    /// reads a file (`pg_restore --use-list`); returns its path. On this machine in the
    /// temporary directory; through the driver's exec in `/tmp`, written by `sh` and `cat`.
    pub async fn put_file(&self, driver: &dyn Driver, contents: Vec<u8>) -> Result<String> {
        let nonce = cutover_core::journal::new_run_id();
        let name = format!("cutover-{nonce}.list");
        match &self.site {
            ToolSite::Local => {
                let path = std::env::temp_dir().join(name);
                let written = async {
                    use tokio::io::AsyncWriteExt;
                    let mut file = tokio::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .await?;
                    file.write_all(&contents).await?;
                    file.flush().await
                };
                written.await.map_err(|e| {
                    Error::new(ErrorKind::Other, format!("cannot write {}", path.display()))
                        .with_source(e)
                })?;
                Ok(path.display().to_string())
            }
            ToolSite::Exec(_) => {
                let path = format!("/tmp/{name}");
                let script = "umask 077 && mkdir -p \"${0%/*}\" && cat > \"$0\"";
                let argv: Vec<String> = ["sh", "-c", script, &path].map(String::from).to_vec();
                let input: ByteStream = Box::pin(std::io::Cursor::new(contents));
                let status = self.run_tool(driver, &argv, Some(input), None).await?;
                self.check_exit(&argv, &status, "write a file for the restore tools")?;
                Ok(path)
            }
        }
    }

    /// Removes a file [`Database::put_file`] wrote; a failure only leaves it behind.
    pub async fn remove_file(&self, driver: &dyn Driver, path: &str) {
        let argv: Vec<String> = ["rm", "-f", path].map(String::from).to_vec();
        match &self.site {
            ToolSite::Local => {
                let _ = tokio::fs::remove_file(path).await;
            }
            ToolSite::Exec(_) => {
                let _ = self.run_tool(driver, &argv, None, None).await;
            }
        }
    }

    /// Checks that the tools run (`--version`).
    pub async fn check_tools(&self, driver: &dyn Driver) -> Result<()> {
        for &tool in self.tools() {
            let status = self
                .run_tool(
                    driver,
                    &[tool.to_string(), "--version".to_string()],
                    None,
                    None,
                )
                .await
                .map_err(|e| {
                    let kind = match e.kind() {
                        ErrorKind::Unsupported => ErrorKind::Unsupported,
                        _ => ErrorKind::NotFound,
                    };
                    Error::new(
                        kind,
                        format!("cannot run {tool} {}: {}", self.site_name(), e.message()),
                    )
                })?;
            if !status.success() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{tool} --version failed {}: {}",
                        self.site_name(),
                        status.stderr_tail.trim()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Where the tools run, for messages.
    pub fn site_name(&self) -> String {
        match &self.site {
            ToolSite::Local => "on this machine".into(),
            ToolSite::Exec(at) => format!("in {at}"),
        }
    }

    /// The statement that empties a PostgreSQL database before a restore: what the user
    /// owns, or everything when it is a superuser (see `pg_empty.sql`).
    pub const PG_EMPTY: &'static str = include_str!("pg_empty.sql");

    /// Drops every object of the database so that a restore leaves nothing of the data it
    /// replaces (tables a failed migration added included).
    pub async fn empty(&self) -> Result<()> {
        match self.connect().await?.link {
            Link::Pg(mut c) => {
                sqlx::raw_sql(AssertSqlSafe(Self::PG_EMPTY))
                    .execute(&mut c)
                    .await
                    .map_err(|e| self.db_error("cannot empty the database", e))?;
            }
            Link::My(mut c) => {
                let row = sqlx::query(
                    "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                )
                .bind(&self.name)
                .fetch_one(&mut c)
                .await
                .map_err(|e| self.db_error("cannot read the database's character set", e))?;
                let charset: String = row.try_get(0).map_err(|e| self.db_error("charset", e))?;
                let collation: String =
                    row.try_get(1).map_err(|e| self.db_error("collation", e))?;
                let name = quote_my(&self.name);
                for sql in [
                    format!("DROP DATABASE {name}"),
                    format!(
                        "CREATE DATABASE {name} CHARACTER SET {} COLLATE {}",
                        quote_my(&charset),
                        quote_my(&collation)
                    ),
                ] {
                    sqlx::query(AssertSqlSafe(sql))
                        .execute(&mut c)
                        .await
                        .map_err(|e| self.db_error("cannot recreate the database", e))?;
                }
            }
        }
        Ok(())
    }

    /// Creates a scratch database beside this one; returns it.
    pub async fn create_scratch(&self, name: &str) -> Result<Database> {
        let sql = match self.engine {
            DatabaseEngine::Postgres => format!("CREATE DATABASE {}", quote_pg(name)),
            _ => format!("CREATE DATABASE {} CHARACTER SET utf8mb4", quote_my(name)),
        };
        self.connect()
            .await?
            .execute(&sql)
            .await
            .map_err(|e| self.db_error("cannot create a scratch database (the user needs CREATE DATABASE rights for --restore-test)", e))?;
        Ok(self.with_name(name))
    }

    /// Drops a scratch database made by [`Database::create_scratch`].
    pub async fn drop_scratch(&self, name: &str) -> Result<()> {
        let sql = match self.engine {
            DatabaseEngine::Postgres => format!("DROP DATABASE IF EXISTS {}", quote_pg(name)),
            _ => format!("DROP DATABASE IF EXISTS {}", quote_my(name)),
        };
        self.connect()
            .await?
            .execute(&sql)
            .await
            .map_err(|e| self.db_error("cannot drop the scratch database", e))
    }

    /// MySQL/MariaDB: the command of [`Database::dump_argv`] dumping the triggers alone,
    /// which a backup appends after the data and its FLOAT fix-ups so that no trigger
    /// fires on them (`floats`).
    pub(crate) fn triggers_argv(&self) -> Vec<String> {
        let mut argv = self.dump_argv(None, false);
        let name = argv.pop().expect("the database name comes last");
        argv.retain(|a| !matches!(a.as_str(), "--routines" | "--events" | "--skip-triggers"));
        argv.extend(
            [
                "--no-data",
                "--no-create-info",
                "--no-create-db",
                "--skip-routines",
                "--skip-events",
                "--triggers",
            ]
            .map(String::from),
        );
        argv.push(name);
        argv
    }
}

/// A connection to the application's database.
#[derive(Debug)]
pub struct Conn {
    link: Link,
    /// Inside a snapshot transaction (the fingerprint then runs in it).
    in_snapshot: bool,
}

#[derive(Debug)]
enum Link {
    Pg(PgConnection),
    My(MySqlConnection),
}

/// How a dump and a connection's fingerprint are made to read the same data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consistency {
    /// PostgreSQL: the connection exported its snapshot; the dump is pinned to it
    /// (`pg_dump --snapshot`).
    Exported(String),
    /// MySQL/MariaDB: the connection holds a global read lock and has started a consistent
    /// snapshot; once the dump has started its own ([`DUMP_STARTED_MARKER`] went by),
    /// [`Conn::release_writes`] lets writes continue and both read the same data.
    ReadLocked,
    /// Neither was possible, for the reason given: the fingerprint is taken before and
    /// after the dump and is exact only if they agree.
    Unpinned(String),
}

/// What `mysqldump`/`mariadb-dump` writes before a table's definition; it comes after the
/// dump's `START TRANSACTION WITH CONSISTENT SNAPSHOT`, so once it went by the dump reads
/// its own snapshot.
pub const DUMP_STARTED_MARKER: &[u8] = b"-- Table structure for table";

/// How long the global read lock may wait for running statements (seconds).
const READ_LOCK_WAIT: u32 = 5;

impl Conn {
    fn new(link: Link) -> Self {
        Self {
            link,
            in_snapshot: false,
        }
    }

    /// Runs a statement with the text protocol (session and transaction control is not
    /// allowed in MySQL's prepared statements).
    pub(crate) async fn execute(&mut self, sql: &str) -> std::result::Result<(), sqlx::Error> {
        match &mut self.link {
            Link::Pg(c) => raw_pg(c, sql).await,
            Link::My(c) => raw(c, sql).await,
        }
    }

    /// Ends the session; once this returns the server has been told (a database with a
    /// session cannot be renamed or dropped).
    pub async fn close(self) {
        match self.link {
            Link::Pg(c) => {
                let _ = c.close().await;
            }
            Link::My(c) => {
                let _ = c.close().await;
            }
        }
    }

    /// PostgreSQL: whether the user is a superuser; `false` on MySQL/MariaDB.
    pub async fn is_superuser(&mut self) -> Result<bool> {
        let Link::Pg(c) = &mut self.link else {
            return Ok(false);
        };
        sqlx::query_scalar("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")
            .fetch_one(c)
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, "cannot read the user's attributes")
                    .with_source(e)
            })
    }

    /// The server's version string.
    pub async fn server_version(&mut self) -> Result<String> {
        let v: std::result::Result<String, sqlx::Error> = match &mut self.link {
            Link::Pg(c) => sqlx::query_scalar("SHOW server_version").fetch_one(c).await,
            Link::My(c) => sqlx::query_scalar("SELECT VERSION()").fetch_one(c).await,
        };
        v.map_err(|e| {
            Error::new(ErrorKind::Unavailable, "cannot read the server version").with_source(e)
        })
    }

    /// PostgreSQL: what other roles own that the emptying keeps and the restore script
    /// must not create again (see `pg_list.rs`), for a user that is not a superuser; nothing
    /// on MySQL/MariaDB.
    pub async fn kept_by_emptying(&mut self) -> Result<Kept> {
        let Link::Pg(c) = &mut self.link else {
            return Ok(Kept::default());
        };
        let rows: Vec<(String, String, String)> = sqlx::query_as(Kept::QUERY)
            .fetch_all(c)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    "cannot list the schemas and extensions other roles own",
                )
                .with_source(e)
            })?;
        let mut kept = Kept::default();
        for (kind, raw, sql) in rows {
            match kind.as_str() {
                "user" => kept.user = raw,
                "schema" => kept.schemas.push(Name { raw, sql }),
                _ => kept.extensions.push(sql),
            }
        }
        Ok(kept)
    }

    /// The database's character set and default collation (PostgreSQL: its encoding and
    /// `LC_COLLATE`).
    pub async fn character_set(&mut self) -> Result<(String, String)> {
        let v: std::result::Result<(String, String), sqlx::Error> = match &mut self.link {
            Link::Pg(c) => sqlx::query_as(
                "SELECT pg_encoding_to_char(encoding)::text, datcollate::text FROM pg_catalog.pg_database WHERE datname = current_database()",
            )
            .fetch_one(c)
            .await,
            Link::My(c) => sqlx::query_as(
                "SELECT CAST(DEFAULT_CHARACTER_SET_NAME AS CHAR), CAST(DEFAULT_COLLATION_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()",
            )
            .fetch_one(c)
            .await,
        };
        v.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                "cannot read the database's character set",
            )
            .with_source(e)
        })
    }

    /// MariaDB: the system-versioned tables, each with whether its versioning is
    /// transaction-precise (its history cannot be dumped: `mariadb-dump --dump-history`
    /// takes only timestamp-based history). Nothing on PostgreSQL and MySQL.
    pub async fn versioned_tables(&mut self) -> Result<Vec<(String, bool)>> {
        let Link::My(c) = &mut self.link else {
            return Ok(Vec::new());
        };
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT CAST(t.TABLE_NAME AS CHAR),
                    CAST(COALESCE(MAX(c.DATA_TYPE = 'bigint'), 0) AS SIGNED)
             FROM information_schema.TABLES t
             LEFT JOIN information_schema.COLUMNS c
               ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME
              AND c.EXTRA LIKE '%ROW START%'
             WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'SYSTEM VERSIONED'
             GROUP BY t.TABLE_NAME ORDER BY 1",
        )
        .fetch_all(c)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                "cannot list the system-versioned tables",
            )
            .with_source(e)
        })?;
        Ok(rows.into_iter().map(|(t, trx)| (t, trx != 0)).collect())
    }

    /// The database's size in bytes (for the free-space check).
    pub async fn size(&mut self) -> Result<u64> {
        let v: std::result::Result<i64, sqlx::Error> = match &mut self.link {
            Link::Pg(c) => sqlx::query_scalar("SELECT pg_database_size(current_database())::int8").fetch_one(c).await,
            Link::My(c) => sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) AS SIGNED) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
            )
            .fetch_one(c)
            .await,
        };
        v.map(|n| n.max(0) as u64).map_err(|e| {
            Error::new(ErrorKind::Unavailable, "cannot read the database size").with_source(e)
        })
    }

    /// The values of the sequences and AUTO_INCREMENT counters, outside any snapshot.
    pub async fn counters(&mut self) -> Result<std::collections::BTreeMap<String, String>> {
        let read = match &mut self.link {
            Link::Pg(c) => crate::fingerprint::postgres_counters(c).await,
            Link::My(c) => crate::fingerprint::mysql_counters(c).await,
        };
        read.map_err(|e| {
            Error::new(ErrorKind::Unavailable, "cannot read the counters").with_source(e)
        })
    }

    /// The longest statement the server accepts (`max_allowed_packet`; a new connection,
    /// such as a restore tool's, gets the global value). `None` on PostgreSQL, which has
    /// no such limit below its 1 GB field size.
    pub async fn max_statement(&mut self) -> Result<Option<u64>> {
        let Link::My(c) = &mut self.link else {
            return Ok(None);
        };
        let v: u64 = sqlx::query_scalar("SELECT CAST(@@GLOBAL.max_allowed_packet AS UNSIGNED)")
            .fetch_one(c)
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, "cannot read max_allowed_packet").with_source(e)
            })?;
        Ok(Some(v))
    }

    /// MySQL/MariaDB: the table whose largest row would make the longest statement of a
    /// dump, and an estimate of that statement's size (binary values as hex, as the dump
    /// writes them), among the tables whose column types allow a row of half `limit` or
    /// more. Only those tables are read, so it costs nothing where no row can be large.
    pub async fn largest_row(&mut self, limit: u64) -> Result<Option<(String, u64)>> {
        let Link::My(c) = &mut self.link else {
            return Ok(None);
        };
        let fail = |e| {
            Error::new(ErrorKind::Unavailable, "cannot estimate the largest row").with_source(e)
        };
        let columns = sqlx::query(
            "SELECT CAST(c.TABLE_NAME AS CHAR), CAST(c.COLUMN_NAME AS CHAR), CAST(c.DATA_TYPE AS CHAR),
                    CAST(COALESCE(c.CHARACTER_OCTET_LENGTH, 64) AS UNSIGNED)
             FROM information_schema.COLUMNS c JOIN information_schema.TABLES t USING (TABLE_SCHEMA, TABLE_NAME)
             WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE'
               AND COALESCE(c.GENERATION_EXPRESSION, '') = ''
             ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
        )
        .fetch_all(&mut *c)
        .await
        .map_err(fail)?;
        // Per table: the most a row's dump text can take, and how to measure one row.
        let mut tables: std::collections::BTreeMap<String, (u64, Vec<String>)> = Default::default();
        for row in &columns {
            let table: String = row.try_get(0).map_err(fail)?;
            let column: String = row.try_get(1).map_err(fail)?;
            let kind: String = row.try_get(2).map_err(fail)?;
            let octets: u64 = row.try_get(3).map_err(fail)?;
            let binary = matches!(
                kind.as_str(),
                "binary"
                    | "varbinary"
                    | "tinyblob"
                    | "blob"
                    | "mediumblob"
                    | "longblob"
                    | "geometry"
                    | "point"
                    | "linestring"
                    | "polygon"
                    | "multipoint"
                    | "multilinestring"
                    | "multipolygon"
                    | "geometrycollection"
            );
            let column = quote_my(&column);
            let (most, measure) = if binary {
                (
                    octets.saturating_mul(2) + 3,
                    format!("2 * COALESCE(OCTET_LENGTH({column}), 0) + 3"),
                )
            } else {
                (
                    octets + 3,
                    format!("COALESCE(OCTET_LENGTH({column}), 4) + 3"),
                )
            };
            let entry = tables.entry(table).or_default();
            entry.0 = entry.0.saturating_add(most);
            entry.1.push(measure);
        }
        let mut largest: Option<(String, u64)> = None;
        for (table, (most, measures)) in tables {
            if most < limit / 2 {
                continue;
            }
            let sql = format!(
                "SELECT CAST(COALESCE(MAX({}), 0) AS UNSIGNED) FROM {}",
                measures.join(" + "),
                quote_my(&table)
            );
            let size: u64 = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut *c)
                .await
                .map_err(fail)?;
            // INSERT INTO `t` VALUES (…);
            let size = size + table.len() as u64 + 32;
            if largest.as_ref().is_none_or(|(_, s)| size > *s) {
                largest = Some((table, size));
            }
        }
        Ok(largest)
    }

    /// PostgreSQL, an ordinary user: the objects of the database that another role owns
    /// and a dump would create again (tables, views, sequences, types, routines; not
    /// those of an extension or made with another object), described with their owner,
    /// and how many there are in all (at most 5 are named). A restore could not replace
    /// them: the emptying keeps what others own (see `pg_empty.sql`). Nothing for a
    /// superuser, or on MySQL/MariaDB.
    pub async fn foreign_owned(&mut self) -> Result<(Vec<String>, i64)> {
        let Link::Pg(c) = &mut self.link else {
            return Ok((Vec::new(), 0));
        };
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "WITH me AS (SELECT oid, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
             objects AS (
                 SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                            WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'table' END
                        || ' ' || c.oid::regclass::text AS what,
                        c.relowner AS owner, c.relnamespace AS ns,
                        'pg_catalog.pg_class'::regclass AS class, c.oid
                 FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                 UNION ALL
                 SELECT 'type ' || t.oid::regtype::text, t.typowner, t.typnamespace,
                        'pg_catalog.pg_type'::regclass, t.oid
                 FROM pg_catalog.pg_type t
                 WHERE t.typtype IN ('e', 'd', 'r')
                    OR (t.typtype = 'c' AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')
                 UNION ALL
                 SELECT 'routine ' || p.oid::regprocedure::text, p.proowner, p.pronamespace,
                        'pg_catalog.pg_proc'::regclass, p.oid
                 FROM pg_catalog.pg_proc p)
             SELECT o.what || ' (owner ' || o.owner::regrole::text || ')', count(*) OVER ()
             FROM objects o, me, pg_catalog.pg_namespace n
             WHERE n.oid = o.ns AND o.owner <> me.oid AND NOT me.rolsuper
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
               -- An extension's members, and what PostgreSQL makes with an object and
               -- drops with it (a range type's constructors, owned by the bootstrap
               -- superuser), are not in a dump of their own.
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                               WHERE d.classid = o.class AND d.objid = o.oid
                                 AND d.deptype IN ('e', 'i'))
             ORDER BY 1 LIMIT 5",
        )
        .fetch_all(c)
        .await
        .map_err(|e| {
            Error::new(ErrorKind::Unavailable, "cannot read who owns the database's objects")
                .with_source(e)
        })?;
        let total = rows.first().map_or(0, |(_, n)| *n);
        Ok((rows.into_iter().map(|(what, _)| what).collect(), total))
    }

    /// MySQL/MariaDB: the accounts named as `DEFINER` by the database's views, routines,
    /// triggers and events.
    pub async fn definers(&mut self) -> Result<Vec<String>> {
        let Link::My(c) = &mut self.link else {
            return Ok(Vec::new());
        };
        sqlx::query_scalar(
            "SELECT DISTINCT CAST(d AS CHAR) FROM (
                 SELECT DEFINER AS d FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()
                 UNION SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()
                 UNION SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()
                 UNION SELECT DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()) AS all_definers
             ORDER BY 1",
        )
        .fetch_all(c)
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, "cannot read the definers").with_source(e))
    }

    /// MySQL/MariaDB: those of `definers` this connection's user may not create objects
    /// for: every one but itself, unless it holds `SUPER` or `SET USER`.
    pub async fn foreign_definers(&mut self, definers: &[String]) -> Result<Vec<String>> {
        let Link::My(c) = &mut self.link else {
            return Ok(Vec::new());
        };
        let fail = |e| {
            Error::new(ErrorKind::Unavailable, "cannot read the user's privileges").with_source(e)
        };
        let me: String = sqlx::query_scalar("SELECT CAST(CURRENT_USER() AS CHAR)")
            .fetch_one(&mut *c)
            .await
            .map_err(fail)?;
        let others: Vec<String> = definers.iter().filter(|d| **d != me).cloned().collect();
        if others.is_empty() {
            return Ok(others);
        }
        let (user, host) = me.rsplit_once('@').unwrap_or((me.as_str(), ""));
        let grantee = format!("'{user}'@'{host}'");
        let privileged: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES
             WHERE PRIVILEGE_TYPE IN ('SUPER', 'SET USER') AND GRANTEE = ?",
        )
        .bind(grantee)
        .fetch_one(&mut *c)
        .await
        .map_err(fail)?;
        Ok(if privileged > 0 { Vec::new() } else { others })
    }

    /// Starts a read-only snapshot transaction that a dump can share: exported on
    /// PostgreSQL; on MySQL/MariaDB taken under a brief global read lock (which needs the
    /// `RELOAD` privilege and waits at most a few seconds for running statements), falling
    /// back to [`Consistency::Unpinned`] when the lock cannot be had.
    pub async fn pin(&mut self) -> Result<Consistency> {
        let unavailable =
            |what: &str, e: sqlx::Error| Error::new(ErrorKind::Unavailable, what).with_source(e);
        match &mut self.link {
            Link::Pg(c) => {
                sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *c)
                    .await
                    .map_err(|e| unavailable("cannot start a snapshot", e))?;
                self.in_snapshot = true;
                let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
                    .fetch_one(c)
                    .await
                    .map_err(|e| unavailable("cannot export a snapshot", e))?;
                Ok(Consistency::Exported(id))
            }
            Link::My(c) => {
                let wait = format!("SET SESSION lock_wait_timeout = {READ_LOCK_WAIT}");
                let locked = async {
                    raw(&mut *c, &wait).await?;
                    raw(&mut *c, "FLUSH TABLES WITH READ LOCK").await
                };
                if let Err(e) = locked.await {
                    return Ok(Consistency::Unpinned(format!(
                        "no global read lock ({}); it needs the RELOAD privilege and no statement running for more than {READ_LOCK_WAIT} s",
                        first_line(&e.to_string())
                    )));
                }
                let started = async {
                    raw(
                        &mut *c,
                        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                    )
                    .await?;
                    raw(&mut *c, "START TRANSACTION WITH CONSISTENT SNAPSHOT").await
                };
                if let Err(e) = started.await {
                    let _ = raw(&mut *c, "UNLOCK TABLES").await;
                    return Err(unavailable("cannot start a snapshot", e));
                }
                self.in_snapshot = true;
                Ok(Consistency::ReadLocked)
            }
        }
    }

    /// Releases the global read lock of [`Consistency::ReadLocked`]; the snapshot stays.
    pub async fn release_writes(&mut self) -> Result<()> {
        self.execute("UNLOCK TABLES").await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                "cannot release the global read lock",
            )
            .with_source(e)
        })
    }

    /// Ends the snapshot of [`Conn::pin`] (and any lock it still holds).
    pub async fn end_snapshot(&mut self) {
        if self.in_snapshot {
            let _ = self.execute("COMMIT").await;
            if let Link::My(_) = self.link {
                let _ = self.execute("UNLOCK TABLES").await;
            }
            self.in_snapshot = false;
        }
    }

    /// The PostgreSQL connection; `None` on MySQL/MariaDB.
    pub(crate) fn postgres(&mut self) -> Option<&mut PgConnection> {
        match &mut self.link {
            Link::Pg(c) => Some(c),
            Link::My(_) => None,
        }
    }

    /// The MySQL/MariaDB connection and whether it is inside [`Conn::pin`]'s snapshot
    /// (for the FLOAT fix-ups of `floats`); `None` on PostgreSQL.
    pub(crate) fn mysql(&mut self) -> Option<(&mut MySqlConnection, bool)> {
        let pinned = self.in_snapshot;
        match &mut self.link {
            Link::My(c) => Some((c, pinned)),
            Link::Pg(_) => None,
        }
    }

    /// Per table a row count and an order-independent checksum, a digest of every column
    /// definition, and the schema objects and counters, all computed by the server on one
    /// consistent snapshot (the pinned one inside [`Conn::pin`], else its own). See the
    /// `fingerprint` module for what makes it survive a dump and restore.
    pub async fn fingerprint(&mut self) -> Result<Fingerprint> {
        self.fingerprint_of(true).await
    }

    /// MySQL/MariaDB: [`Conn::fingerprint`] without the tables' content (their column
    /// definitions, the objects and the counters); on PostgreSQL the whole fingerprint.
    pub async fn definitions(&mut self) -> Result<Fingerprint> {
        self.fingerprint_of(false).await
    }

    async fn fingerprint_of(&mut self, rows: bool) -> Result<Fingerprint> {
        let own = !self.in_snapshot;
        if own {
            let begin: &[&str] = match self.link {
                Link::Pg(_) => &["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"],
                Link::My(_) => &[
                    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                    "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
                ],
            };
            for sql in begin {
                self.execute(sql).await.map_err(|e| {
                    Error::new(ErrorKind::Unavailable, "cannot start a snapshot").with_source(e)
                })?;
            }
        }
        let fp = match &mut self.link {
            Link::Pg(c) => crate::fingerprint::postgres(c).await,
            Link::My(c) => crate::fingerprint::mysql(c, rows).await,
        };
        if own {
            let _ = self.execute("COMMIT").await;
        }
        fp.map_err(|e| {
            Error::new(ErrorKind::Other, "cannot compute the fingerprint").with_source(e)
        })
    }
}

async fn raw_pg(c: &mut PgConnection, sql: &str) -> std::result::Result<(), sqlx::Error> {
    let sql = AssertSqlSafe(sql.to_string());
    sqlx::raw_sql(sql).execute(c).await.map(|_| ())
}

async fn raw(c: &mut MySqlConnection, sql: &str) -> std::result::Result<(), sqlx::Error> {
    let sql = AssertSqlSafe(sql.to_string());
    sqlx::raw_sql(sql).execute(c).await.map(|_| ())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A PostgreSQL identifier, quoted.
pub(crate) fn quote_pg(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A MySQL identifier, quoted.
pub(crate) fn quote_my(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Read size from a tool's stdout (a dump streams gigabytes), and how much is taken at
/// once from what feeds its stdin (a restore streams as much): `tokio::io::copy`'s own
/// 8 KiB meant a wake-up and a pipe write per 8 KiB.
const PIPE_BUFFER: usize = 256 * 1024;

/// How much of a tool's stderr to keep for error messages.
const STDERR_TAIL: usize = 4096;

/// Runs `argv` on this machine (no shell), piping stdin/stdout, keeping stderr's tail.
pub async fn run_local(
    argv: &[String],
    env: Vec<(String, String)>,
    stdin: Option<ByteStream>,
    stdout: Option<ByteSink>,
) -> Result<ExitStatus> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::invalid("empty command"));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if stdout.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        Error::new(ErrorKind::NotFound, format!("cannot run {program}")).with_source(e)
    })?;
    let feed = async {
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let mut input = tokio::io::BufReader::with_capacity(PIPE_BUFFER, input);
            let copied = tokio::io::copy_buf(&mut input, &mut pipe).await;
            drop(pipe);
            copied.map(|_| ())
        } else {
            Ok(())
        }
    };
    let drain = async {
        if let (Some(mut sink), Some(pipe)) = (stdout, child.stdout.take()) {
            let mut pipe = tokio::io::BufReader::with_capacity(PIPE_BUFFER, pipe);
            tokio::io::copy_buf(&mut pipe, &mut sink).await?;
            tokio::io::AsyncWriteExt::shutdown(&mut sink).await
        } else {
            Ok(())
        }
    };
    let errors = async {
        let mut tail = Vec::new();
        if let Some(mut pipe) = child.stderr.take() {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
        String::from_utf8_lossy(&tail).to_string()
    };
    let (fed, drained, stderr_tail) = tokio::join!(feed, drain, errors);
    let status = child.wait().await.map_err(|e| {
        Error::new(ErrorKind::Other, format!("waiting for {program}")).with_source(e)
    })?;
    // A broken pipe on stdin means the tool exited early: when it failed, its status
    // says why; when it succeeded, it had read all it needed (`pg_restore --list` reads an
    // archive's table of contents and stops).
    match fed {
        Err(e) if status.success() && e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(Error::new(ErrorKind::Other, format!("feeding {program}")).with_source(e));
        }
        _ => {}
    }
    drained.map_err(|e| {
        Error::new(ErrorKind::Other, format!("reading {program}'s output")).with_source(e)
    })?;
    Ok(ExitStatus {
        code: status.code(),
        stderr_tail,
    })
}
