//! Scratch databases on the test PostgreSQL and MariaDB servers, one per test.

use std::fmt;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::env::{TestEnv, UP_HINT};
use crate::names::unique_name;

/// A database server the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL 15.
    Postgres,
    /// MariaDB 10.11, reached through the MySQL protocol.
    MariaDb,
}

impl Engine {
    /// Both engines, for tests that must hold on each.
    pub const ALL: [Engine; 2] = [Engine::Postgres, Engine::MariaDb];

    /// Server URL with credentials and no database.
    pub fn server_url(self, env: &TestEnv) -> &str {
        match self {
            Engine::Postgres => env.postgres_url(),
            Engine::MariaDb => env.mysql_url(),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Postgres => "PostgreSQL",
            Engine::MariaDb => "MariaDB",
        })
    }
}

/// One row of the specimen's `specimen_migrations` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRun {
    /// Unique per run.
    pub run_id: String,
    /// The release whose migration ran.
    pub version: String,
    /// The instance that ran it.
    pub instance: String,
    /// Start, microseconds since the epoch.
    pub started_us: i64,
    /// End, if it ended.
    pub finished_us: Option<i64>,
    /// `running`, `ok` or `failed`.
    pub outcome: String,
}

impl MigrationRun {
    /// Whether two runs were in progress at the same time (an unfinished run lasts forever).
    pub fn overlaps(&self, other: &MigrationRun) -> bool {
        let end = |r: &MigrationRun| r.finished_us.unwrap_or(i64::MAX);
        self.started_us < end(other) && other.started_us < end(self)
    }
}

/// A uniquely named database, dropped (with `FORCE` on PostgreSQL) when this is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    engine: Engine,
    name: String,
    server_url: String,
    pool: AnyPool,
    /// Who drops it (and what restores left beside it): its creator, or the superuser once
    /// [`ScratchDatabase::give_to_dba`] gave it away.
    dropper_url: String,
    /// MariaDB accounts made by [`ScratchDatabase::restricted_user`], dropped with it.
    users: std::sync::Mutex<Vec<String>>,
}

fn admin_url(engine: Engine, server_url: &str) -> String {
    match engine {
        // The test role owns no database of its own; `postgres` admits every role.
        Engine::Postgres => format!("{server_url}/postgres"),
        Engine::MariaDb => format!("{server_url}/"),
    }
}

async fn connect(engine: Engine, url: &str) -> AnyPool {
    // A refused TCP connection fails at once here; the pool would retry it until its
    // acquire timeout before saying anything.
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let reachable = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(host_port),
    )
    .await;
    if !matches!(reachable, Ok(Ok(_))) {
        panic!("{engine} at {host_port} does not answer; {UP_HINT}");
    }
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{engine} at {} does not answer: {e}; {UP_HINT}",
                redact(url)
            )
        })
}

/// `url` with its password replaced, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_info = &url[scheme + 3..at];
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl ScratchDatabase {
    /// Creates an empty database on `engine`'s test server.
    ///
    /// # Panics
    /// If the server does not answer (the message names `scripts/testenv up`).
    pub async fn create(engine: Engine) -> Self {
        Self::create_on(engine, engine.server_url(TestEnv::get())).await
    }

    /// Creates an empty database on the server at `server_url` (credentials, no database).
    ///
    /// # Panics
    /// If the server does not answer (the message names `scripts/testenv up`).
    pub async fn create_on(engine: Engine, server_url: &str) -> Self {
        let server_url = server_url.to_owned();
        let name = unique_name("ct");
        let admin = connect(engine, &admin_url(engine, &server_url)).await;
        let create = match engine {
            Engine::Postgres => {
                format!("CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
            }
            Engine::MariaDb => {
                format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            }
        };
        sqlx::raw_sql(AssertSqlSafe(create))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("creating database {name} on {engine}: {e}"));
        admin.close().await;
        let pool = connect(engine, &format!("{server_url}/{name}")).await;
        let dropper_url = admin_url(engine, &server_url);
        Self {
            engine,
            name,
            server_url,
            pool,
            dropper_url,
            users: Default::default(),
        }
    }

    /// PostgreSQL 15's standard layout, made from a database the test's user created and
    /// filled: the database now belongs to a DBA (the server's bootstrap superuser,
    /// `CUTOVER_TEST_PG_SUPERUSER_URL`), and the user — which still owns its tables —
    /// keeps `CREATE` on schema `public` by the DBA's grant. The user may then neither
    /// rename nor replace the database.
    pub async fn give_to_dba(&mut self) {
        assert_eq!(self.engine, Engine::Postgres, "a PostgreSQL layout");
        let superuser = TestEnv::get().postgres_superuser_url();
        let user = self.credentials().0;
        let user = user
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .map(|(user, _)| user.to_owned())
            .expect("a user in the URL");
        let dba = connect(Engine::Postgres, &format!("{superuser}/{}", self.name)).await;
        for sql in [
            format!("ALTER DATABASE {} OWNER TO postgres", self.name),
            format!("GRANT CREATE ON SCHEMA public TO {user}"),
        ] {
            sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                .execute(&dba)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        dba.close().await;
        self.dropper_url = admin_url(Engine::Postgres, superuser);
    }

    /// MariaDB: a new account with every privilege on this database and none beyond it
    /// (no right to create another database), as a vendor's setup script grants; its URL
    /// without password (as a config names it) and its password. Dropped with the
    /// database.
    pub async fn restricted_user(&self) -> (String, String) {
        assert_eq!(self.engine, Engine::MariaDb, "a MariaDB account");
        let user = unique_name("cu");
        let password = format!("pw-{user}");
        let mut statements = Vec::new();
        for host in ["localhost", "127.0.0.1"] {
            statements.push(format!(
                "CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"
            ));
            statements.push(format!(
                "GRANT ALL ON `{}`.* TO '{user}'@'{host}'",
                self.name
            ));
        }
        for sql in statements {
            self.execute(&sql).await;
        }
        self.users.lock().expect("users").push(user.clone());
        let (url, _) = self.credentials();
        let (scheme, rest) = url.split_once("://").expect("a scheme");
        let (_, host_path) = rest.split_once('@').expect("a user");
        (format!("{scheme}://{user}@{host_path}"), password)
    }

    /// The engine it lives on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection URL including credentials and the database.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server_url, self.name)
    }

    /// The URL without its password, and the password: how an operator's configuration
    /// names a database (the password comes from the environment, never the URL).
    pub fn credentials(&self) -> (String, String) {
        let url = self.url();
        let (scheme, rest) = url.split_once("://").expect("a scheme");
        let (user_info, host_path) = rest.rsplit_once('@').expect("credentials in the URL");
        let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
        (
            format!("{scheme}://{user}@{host_path}"),
            password.to_owned(),
        )
    }

    /// Many tables, foreign keys, a view, a trigger, utf8mb4 text with emoji, binary blobs,
    /// NULLs and well over 100,000 rows.
    pub async fn seed_varied(&self) {
        let db = self;
        let statements: &[&str] = match db.engine() {
            Engine::Postgres => &[
                "CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE, note text, score double precision, created timestamptz DEFAULT now())",
                "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id), total numeric(12,2), payload bytea, memo text)",
                "CREATE TABLE audit (id bigserial PRIMARY KEY, order_id bigint, at timestamptz DEFAULT now())",
                "CREATE TABLE empty_table (id int PRIMARY KEY, doc jsonb)",
                // json and point have no hash function: the fingerprint's fallback path.
                "CREATE TABLE settings (id int PRIMARY KEY, raw json, spot point)",
                "INSERT INTO settings SELECT g, json_build_object('k', g, 'v', '😀'), point(g, -g) FROM generate_series(1, 50) g",
                "CREATE FUNCTION audit_order() RETURNS trigger AS $$ BEGIN INSERT INTO audit(order_id) VALUES (NEW.id); RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION audit_order()",
                "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 500",
                "INSERT INTO customers (name, email, note, score) SELECT 'Kunde ' || g || ' 😀 ñ 漢字', 'c' || g || '@example.com', CASE WHEN g % 7 = 0 THEN NULL ELSE repeat('x', g % 50) END, g / 3.0 FROM generate_series(1, 20000) g",
                "INSERT INTO orders (customer_id, total, payload, memo) SELECT 1 + (g % 20000), (g % 1000) + 0.99, decode(md5(g::text), 'hex'), CASE WHEN g % 5 = 0 THEN NULL ELSE '🚀 order ' || g END FROM generate_series(1, 100000) g",
            ],
            Engine::MariaDb => &[
                "CREATE TABLE customers (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(200) NOT NULL, email VARCHAR(200) UNIQUE, note TEXT, score DOUBLE, created DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
                "CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id BIGINT NOT NULL, total DECIMAL(12,2), payload VARBINARY(64), memo TEXT, FOREIGN KEY (customer_id) REFERENCES customers(id)) ENGINE=InnoDB",
                "CREATE TABLE audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
                "CREATE TABLE empty_table (id INT PRIMARY KEY, doc LONGTEXT) ENGINE=InnoDB",
                "CREATE TABLE settings (id INT PRIMARY KEY, raw JSON, spot POINT) ENGINE=InnoDB",
                "INSERT INTO settings SELECT seq, JSON_OBJECT('k', seq, 'v', '😀'), POINT(seq, -seq) FROM seq_1_to_50",
                "CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit(order_id) VALUES (NEW.id)",
                "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 500",
                "INSERT INTO customers (name, email, note, score) SELECT CONCAT('Kunde ', seq, ' 😀 ñ 漢字'), CONCAT('c', seq, '@example.com'), IF(seq % 7 = 0, NULL, REPEAT('x', seq % 50)), seq / 3.0 FROM seq_1_to_20000",
                "INSERT INTO orders (customer_id, total, payload, memo) SELECT 1 + (seq % 20000), (seq % 1000) + 0.99, UNHEX(MD5(seq)), IF(seq % 5 = 0, NULL, CONCAT('🚀 order ', seq)) FROM seq_1_to_100000",
            ],
        };
        for sql in statements {
            db.execute(sql).await;
        }
        assert_eq!(db.count("orders").await, 100_000);
        assert_eq!(db.count("audit").await, 100_000, "the trigger fired");
    }

    /// Adds `n` rows to the specimen's `items` table (`item 0`, `item 1`, …).
    pub async fn seed_items(&self, n: usize) {
        for i in 0..n {
            self.execute(&format!(
                "INSERT INTO items (name, body, created_us) VALUES ('item {i}', 'body {i}', {i})"
            ))
            .await;
        }
    }

    /// A pool connected to it, for assertions.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The environment that points the specimen (or the vendor application) at this
    /// database: the vendor's `MYSQL_*` variables on MariaDB, `DATABASE_URL` on PostgreSQL.
    /// Contains the password: pass it through the environment, never in argv.
    pub fn app_env(&self) -> Vec<(String, String)> {
        match self.engine {
            Engine::Postgres => vec![("DATABASE_URL".to_owned(), self.url())],
            Engine::MariaDb => {
                let rest = self.server_url.trim_start_matches("mysql://");
                let (user_info, host_port) = rest.rsplit_once('@').unwrap_or(("", rest));
                let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
                let (host, port) = host_port.split_once(':').unwrap_or((host_port, "3306"));
                [
                    ("MYSQL_HOST", host),
                    ("MYSQL_PORT", port),
                    ("MYSQL_DATABASE", self.name.as_str()),
                    ("MYSQL_USER_NAME", user),
                    ("MYSQL_PASSWORD", password),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
            }
        }
    }

    /// Runs a query and returns all rows.
    pub async fn rows(&self, sql: &str) -> Vec<AnyRow> {
        sqlx::query(AssertSqlSafe(sql.to_owned()))
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql} on {} ({}): {e}", self.name, self.engine))
    }

    /// Runs a statement.
    pub async fn execute(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql} on {} ({}): {e}", self.name, self.engine));
    }

    /// Number of rows in a table.
    pub async fn count(&self, table: &str) -> i64 {
        let rows = self.rows(&format!("SELECT COUNT(*) FROM {table}")).await;
        rows[0].try_get(0).expect("COUNT(*) is an integer")
    }

    /// Whether `table` has `column`.
    pub async fn has_column(&self, table: &str, column: &str) -> bool {
        let schema = match self.engine {
            Engine::Postgres => "current_schema()".to_owned(),
            Engine::MariaDb => "DATABASE()".to_owned(),
        };
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.columns
             WHERE table_schema = {schema} AND table_name = '{table}' AND column_name = '{column}'"
        );
        let rows = self.rows(&sql).await;
        rows[0]
            .try_get::<i64, _>(0)
            .expect("COUNT(*) is an integer")
            > 0
    }

    /// The specimen's migration record, oldest first.
    pub async fn migration_runs(&self) -> Vec<MigrationRun> {
        let rows = self
            .rows(
                "SELECT run_id, version, instance, started_us, finished_us, outcome
                 FROM specimen_migrations ORDER BY started_us, run_id",
            )
            .await;
        rows.iter()
            .map(|r| MigrationRun {
                run_id: r.get(0),
                version: r.get(1),
                instance: r.get(2),
                started_us: r.get(3),
                finished_us: r.get(4),
                outcome: r.get(5),
            })
            .collect()
    }

    /// Versions recorded as applied, one entry per application (duplicates are damage).
    pub async fn applied_versions(&self) -> Vec<String> {
        let rows = self
            .rows("SELECT version FROM specimen_schema ORDER BY applied_us, version")
            .await;
        rows.iter().map(|r| r.get(0)).collect()
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (engine, name, admin) = (self.engine, self.name.clone(), self.dropper_url.clone());
        let users = std::mem::take(&mut *self.users.lock().unwrap_or_else(|e| e.into_inner()));
        // Drop cannot await, and may run inside a runtime that must not be blocked on:
        // a thread of its own with its own runtime does the async work. The test's pool
        // is left to its own drop: `FORCE` (PostgreSQL) ends its sessions, and MariaDB
        // drops a database that idle sessions still use.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                sqlx::any::install_default_drivers();
                let Ok(admin) = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin)
                    .await
                else {
                    return;
                };
                // Restores keep the databases they replaced beside this one.
                let beside = match engine {
                    Engine::Postgres => format!(
                        "SELECT datname::text FROM pg_database WHERE datname LIKE '{}\\_cutover\\_%'",
                        name.replace('_', "\\_")
                    ),
                    Engine::MariaDb => format!(
                        "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{}\\_cutover\\_%'",
                        name.replace('_', "\\_")
                    ),
                };
                let mut names: Vec<String> = sqlx::query_scalar(AssertSqlSafe(beside))
                    .fetch_all(&admin)
                    .await
                    .unwrap_or_default();
                names.push(name);
                for name in names {
                    let drop = match engine {
                        Engine::Postgres => {
                            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
                        }
                        Engine::MariaDb => format!("DROP DATABASE IF EXISTS `{name}`"),
                    };
                    let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&admin).await;
                }
                for user in users {
                    for host in ["localhost", "127.0.0.1"] {
                        let drop = format!("DROP USER IF EXISTS '{user}'@'{host}'");
                        let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&admin).await;
                    }
                }
                admin.close().await;
            });
        });
        let _ = dropper.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_symmetric_and_strict() {
        let run = |started_us, finished_us| MigrationRun {
            run_id: String::new(),
            version: "1.1.0".into(),
            instance: String::new(),
            started_us,
            finished_us,
            outcome: "ok".into(),
        };
        assert!(run(0, Some(10)).overlaps(&run(5, Some(15))));
        assert!(run(5, Some(15)).overlaps(&run(0, Some(10))));
        assert!(!run(0, Some(10)).overlaps(&run(10, Some(20))));
        assert!(run(0, None).overlaps(&run(100, Some(200))));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("mysql://u:secret@127.0.0.1:3306/"),
            "mysql://u:***@127.0.0.1:3306/"
        );
    }
}
