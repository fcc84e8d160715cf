//! Real databases for the store tests: a SQLite file in a temporary directory, or a fresh
//! PostgreSQL database created on the local server and dropped afterwards.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, SqlitePool};

/// Admin URL of the test PostgreSQL server (trust auth); `scripts/test` starts it.
pub fn postgres_admin_url() -> String {
    std::env::var("GATEHOUSE_TEST_POSTGRES_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Which dialect a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// One test's own database.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub kind: Kind,
    /// URL to pass to `Store::open`.
    pub url: String,
    /// PostgreSQL: the database name.
    pub name: String,
}

impl TestDb {
    /// Runs one statement outside the store, as an operator or another binary would.
    pub async fn exec(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => {
                let options = SqliteConnectOptions::from_str(&self.url).unwrap();
                let pool = SqlitePool::connect_with(options.create_if_missing(true))
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Kind::Postgres => {
                let pool = PgPool::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// Runs a query returning one integer, outside the store.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.kind {
            Kind::Sqlite => {
                let pool = SqlitePool::connect(&self.url).await.unwrap();
                let v = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                v
            }
            Kind::Postgres => {
                let pool = PgPool::connect(&self.url).await.unwrap();
                let v = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                v
            }
        }
    }

    /// Makes the database disappear under an open store: SQLite closes the store's pool (an
    /// open SQLite file survives deletion), PostgreSQL drops the database, killing connections.
    pub async fn vanish(&self, store: &gatehouse_store::Store) {
        match self.kind {
            Kind::Sqlite => store.close().await,
            Kind::Postgres => admin_exec(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap(),
        }
    }
}

async fn admin_exec(sql: &str) -> Result<(), sqlx::Error> {
    let url = postgres_admin_url();
    let mut conn = PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url}: {e}\n\
             The gatehouse-store tests need a real PostgreSQL server (trust auth for user \
             `postgres`). scripts/test starts one; or point GATEHOUSE_TEST_POSTGRES_ADMIN_URL \
             at a server where this user may CREATE DATABASE."
        )
    });
    sqlx::raw_sql(sql).execute(&mut conn).await?;
    conn.close().await
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}_{nanos}_{n}", std::process::id())
}

/// Creates a fresh database of `kind`, runs `body` against it, then removes the database,
/// also when `body` panics (the panic is re-raised afterwards).
pub async fn run<F, Fut>(kind: Kind, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    match kind {
        Kind::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("gatehouse.db");
            let db = TestDb {
                kind,
                url: format!("sqlite://{}", path.display()),
                name: String::new(),
            };
            let outcome = AssertUnwindSafe(body(db)).catch_unwind().await;
            drop(dir);
            if let Err(e) = outcome {
                std::panic::resume_unwind(e);
            }
        }
        Kind::Postgres => {
            let name = format!("gatehouse_store_{}", unique_suffix());
            admin_exec(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let mut url = url::Url::parse(&postgres_admin_url()).unwrap();
            url.set_path(&name);
            let db = TestDb {
                kind,
                url: url.to_string(),
                name: name.clone(),
            };
            let outcome = AssertUnwindSafe(body(db)).catch_unwind().await;
            admin_exec(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .unwrap();
            if let Err(e) = outcome {
                std::panic::resume_unwind(e);
            }
        }
    }
}

/// Generates, for each named `async fn(TestDb)`, one test per dialect:
/// `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! on_both_dialects {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::run($crate::common::Kind::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::run($crate::common::Kind::Postgres, super::$name).await;
                }
            )*
        }
    };
}
