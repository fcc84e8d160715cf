//! Persistence for Gatehouse: one [`Store`] over SQLite (the embedded default, one file in the
//! data directory) or PostgreSQL (shared by replicas for high availability).
//!
//! Opening a store applies the embedded [migrations](migrate) of its dialect, under a lock so
//! that replicas starting together apply each one exactly once, and refuses a database migrated
//! by a newer Gatehouse ([`StoreError::SchemaTooNew`]). Queries are plain `sqlx::query` calls
//! with bound parameters: nothing is checked against a database at build time.
//!
//! The store never sees secrets in plaintext: [`credentials`](Store::credentials) holds
//! ciphertext sealed by the caller, with the id of the key that sealed it.
#![warn(missing_docs)]

mod audit_index;
mod baselines;
mod credentials;
mod error;
pub mod migrate;
mod session_revocations;
mod sink_cursors;
pub mod usage;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

pub use audit_index::{AuditFilter, AuditIndex, IndexedEvent};
pub use baselines::{AnomalyState, Baseline};
pub use credentials::{CredentialKey, CredentialRecord, Credentials, StoredCredential};
pub use error::{StoreError, redact_url};
pub use migrate::{MIGRATIONS, Migration, SCHEMA_VERSION};
pub use session_revocations::{DIGEST_LEN, Revocation, SessionRevocations};
pub use sink_cursors::{SinkCursors, SinkStatus};
pub use usage::{
    HourTotals, Scope, Usage, UsageBy, UsageCounts, UsageIncrement, UsageKey, UsageRow,
};

/// File name of the SQLite database inside the data directory.
pub const SQLITE_FILE_NAME: &str = "gatehouse.db";

/// How long an operation waits for a pooled connection (or SQLite's write lock) before failing.
const WAIT: Duration = Duration::from_secs(10);

/// The SQL dialect behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite, a single file; the embedded default.
    Sqlite,
    /// PostgreSQL, shared by gateway replicas.
    Postgres,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        })
    }
}

/// The connection pool of one dialect.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the dialect's pool; the body is compiled once per dialect.
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::Pool::Sqlite($p) => $body,
            $crate::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// An open, migrated database. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Opens the database at `url` and migrates it to [`SCHEMA_VERSION`].
    ///
    /// `sqlite://PATH` opens (creating if missing) a SQLite file in WAL mode with foreign keys
    /// enforced; `postgres://…` or `postgresql://…` connects to PostgreSQL. Fails with
    /// [`StoreError::SchemaTooNew`] if the database was migrated by a newer Gatehouse.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let connect_failed = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(connect_failed)?;
            Self::open_sqlite_with(options, url).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(connect_failed)?;
            let pool = PgPoolOptions::new()
                .acquire_timeout(WAIT)
                .connect_with(options)
                .await
                .map_err(connect_failed)?;
            migrate::migrate_postgres(&pool).await?;
            Ok(Store {
                pool: Pool::Postgres(pool),
            })
        } else {
            Err(StoreError::UnsupportedUrl {
                url: redact_url(url),
            })
        }
    }

    /// Opens `url` when one is configured, else the embedded default database in `data_dir`
    /// (what `--database-url` / `store.url` mean everywhere).
    pub async fn open_or_embedded(url: Option<&str>, data_dir: &Path) -> Result<Store, StoreError> {
        match url {
            Some(url) => Self::open(url).await,
            None => Self::open_sqlite_in(data_dir).await,
        }
    }

    /// Opens (creating if missing) `<data_dir>/gatehouse.db`, the embedded default database.
    /// Creates `data_dir` too if it does not exist.
    pub async fn open_sqlite_in(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(SQLITE_FILE_NAME);
        let shown = format!("sqlite://{}", path.display());
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Connect {
            url: shown.clone(),
            source: sqlx::Error::Io(e),
        })?;
        Self::open_sqlite_with(SqliteConnectOptions::new().filename(&path), &shown).await
    }

    async fn open_sqlite_with(
        options: SqliteConnectOptions,
        shown_url: &str,
    ) -> Result<Store, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(WAIT);
        // Switching a fresh file to WAL takes an exclusive lock that SQLite's busy handler does
        // not wait for: processes opening the same new database together see SQLITE_BUSY
        // once. Retry briefly rather than fail a start.
        let started = std::time::Instant::now();
        let pool = loop {
            match SqlitePoolOptions::new()
                .acquire_timeout(WAIT)
                .connect_with(options.clone())
                .await
            {
                Ok(pool) => break pool,
                Err(e) if is_busy(&e) && started.elapsed() < WAIT => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(source) => {
                    return Err(StoreError::Connect {
                        url: redact_url(shown_url),
                        source,
                    });
                }
            }
        };
        migrate::migrate_sqlite(&pool).await?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
        })
    }

    /// The SQL dialect of this store.
    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The schema version recorded in the database (equal to [`SCHEMA_VERSION`] after open,
    /// unless a newer binary has migrated the database since).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COALESCE(MAX(version), 0) FROM gatehouse_schema";
        Ok(with_pool!(&self.pool, |p| sqlx::query_scalar(SQL)
            .fetch_one(p)
            .await?))
    }

    /// The sealed credentials of principals for upstream servers.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(self.pool.clone())
    }

    /// The index of the audit journal.
    pub fn audit_index(&self) -> AuditIndex {
        AuditIndex::new(self.pool.clone())
    }

    /// The hourly usage rollups (`gatehouse usage report`, anomaly baselines).
    pub fn usage(&self) -> Usage {
        Usage::new(self.pool.clone())
    }

    /// The anomaly detectors' baselines and state.
    pub fn anomalies(&self) -> AnomalyState {
        AnomalyState::new(self.pool.clone())
    }

    /// Handshake-era sessions ended for good, shared by every process using this store.
    pub fn session_revocations(&self) -> SessionRevocations {
        SessionRevocations::new(self.pool.clone())
    }

    /// How far each audit sink has delivered the journal.
    pub fn sink_cursors(&self) -> SinkCursors {
        SinkCursors::new(self.pool.clone())
    }

    /// Closes every connection; later operations on this store (and its clones) fail with
    /// [`StoreError::Query`].
    pub async fn close(&self) {
        with_pool!(&self.pool, |p| p.close().await)
    }
}

/// The current time in unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether SQLite answered "database is locked" (SQLITE_BUSY, code 5).
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("5"))
}
