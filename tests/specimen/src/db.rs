//! The application database, reached through sqlx's `Any` driver so that one code path
//! serves MariaDB and PostgreSQL; only the SQL text differs by dialect.

use std::time::{Duration, Instant};

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, AssertSqlSafe, Row};

use crate::config::{Database, Dialect};

/// A pool plus the dialect its SQL must be written in.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
}

/// One stored item as the API returns it.
#[derive(Debug, serde::Serialize)]
pub struct Item {
    /// Database-assigned id.
    pub id: i64,
    /// Short title.
    pub name: String,
    /// Free text.
    pub body: String,
}

impl Db {
    /// Connects, retrying until `wait` has passed: the database may still be starting when
    /// the container does, as with the vendor's application.
    pub async fn connect(database: &Database, wait: Duration) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let deadline = Instant::now() + wait;
        loop {
            let attempt = AnyPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect(&database.url)
                .await;
            match attempt {
                Ok(pool) => {
                    return Ok(Self {
                        pool,
                        dialect: database.dialect,
                    });
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// `?` placeholders rewritten for the dialect (PostgreSQL numbers them).
    fn sql(&self, text: &str) -> AssertSqlSafe<String> {
        match self.dialect {
            Dialect::MySql => AssertSqlSafe(text.to_owned()),
            Dialect::Postgres => {
                let mut out = String::with_capacity(text.len() + 8);
                let mut n = 0;
                for c in text.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                AssertSqlSafe(out)
            }
        }
    }

    fn query(&self, text: &str, params: &[Param<'_>]) -> Query<'static, Any, AnyArguments> {
        let mut query = sqlx::query(self.sql(text));
        for p in params {
            query = match *p {
                Param::Text(s) => query.bind(s.to_owned()),
                Param::Int(i) => query.bind(i),
            };
        }
        query
    }

    /// Runs a statement without parameters (DDL goes here: MySQL cannot prepare all of it).
    pub async fn execute(&self, text: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::raw_sql(AssertSqlSafe(text.to_owned()))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Runs a statement with string and integer parameters, in order.
    pub async fn execute_with(&self, text: &str, params: &[Param<'_>]) -> Result<u64, sqlx::Error> {
        let done = self.query(text, params).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    /// Runs a query with parameters and returns all rows.
    pub async fn fetch_all(
        &self,
        text: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        self.query(text, params).fetch_all(&self.pool).await
    }

    /// Inserts an item with the columns the running schema version has; returns its id.
    pub async fn insert_item(
        &self,
        columns: &[&str],
        values: &[Param<'_>],
    ) -> Result<i64, sqlx::Error> {
        let placeholders = vec!["?"; columns.len()].join(", ");
        let insert = format!(
            "INSERT INTO items ({}) VALUES ({placeholders})",
            columns.join(", ")
        );
        match self.dialect {
            Dialect::Postgres => {
                let rows = self
                    .fetch_all(&format!("{insert} RETURNING id"), values)
                    .await?;
                rows.first()
                    .map(|r| r.try_get::<i64, _>(0))
                    .unwrap_or(Err(sqlx::Error::RowNotFound))
            }
            Dialect::MySql => {
                let done = self.query(&insert, values).execute(&self.pool).await?;
                done.last_insert_id().ok_or(sqlx::Error::RowNotFound)
            }
        }
    }

    /// All items in id order.
    pub async fn items(&self) -> Result<Vec<Item>, sqlx::Error> {
        let rows = self
            .fetch_all("SELECT id, name, body FROM items ORDER BY id", &[])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Item {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    body: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Column type of an auto-increment primary key.
    pub fn serial_key(&self) -> &'static str {
        match self.dialect {
            Dialect::MySql => "BIGINT AUTO_INCREMENT PRIMARY KEY",
            Dialect::Postgres => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        }
    }

    /// Table options that make MySQL store full UTF-8.
    pub fn table_options(&self) -> &'static str {
        match self.dialect {
            Dialect::MySql => " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
            Dialect::Postgres => "",
        }
    }
}

/// A bound parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// A string.
    Text(&'a str),
    /// A 64-bit integer.
    Int(i64),
}
