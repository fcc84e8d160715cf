//! Versioned schema migrations, embedded in the binary, one SQL script per dialect.
//!
//! On open, every migration newer than the database's recorded version runs in one transaction
//! that first takes a lock (`BEGIN IMMEDIATE` on SQLite, `pg_advisory_xact_lock` on PostgreSQL),
//! so replicas starting together apply each migration exactly once. Each applied migration is
//! recorded in `gatehouse_schema (version, name, applied_at)`.

use sqlx::{Executor, PgPool, SqlitePool};

use crate::{StoreError, unix_now};

/// One schema migration: the same change written for each dialect.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version this migration brings the schema to; versions start at 1 and have no gaps.
    pub version: i64,
    /// Short name recorded next to the version.
    pub name: &'static str,
    /// The script for SQLite.
    pub sqlite: &'static str,
    /// The script for PostgreSQL.
    pub postgres: &'static str,
}

/// Every migration this binary knows, in version order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "audit_index",
        sqlite: include_str!("../migrations/sqlite/0002_audit_index.sql"),
        postgres: include_str!("../migrations/postgres/0002_audit_index.sql"),
    },
    Migration {
        version: 3,
        name: "audit_sinks",
        sqlite: include_str!("../migrations/sqlite/0003_audit_sinks.sql"),
        postgres: include_str!("../migrations/postgres/0003_audit_sinks.sql"),
    },
    Migration {
        version: 4,
        name: "usage",
        sqlite: include_str!("../migrations/sqlite/0004_usage.sql"),
        postgres: include_str!("../migrations/postgres/0004_usage.sql"),
    },
    Migration {
        version: 5,
        name: "session_revocations",
        sqlite: include_str!("../migrations/sqlite/0005_session_revocations.sql"),
        postgres: include_str!("../migrations/postgres/0005_session_revocations.sql"),
    },
];

/// The newest schema version this binary knows; a database recording a newer one is refused.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Key of the PostgreSQL advisory lock that serialises migrations ("gatehous" in ASCII).
const PG_MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573;

const SQLITE_SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS gatehouse_schema (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
)";

const PG_SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS gatehouse_schema (
    version    BIGINT PRIMARY KEY,
    name       TEXT   NOT NULL,
    applied_at BIGINT NOT NULL
)";

const CURRENT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM gatehouse_schema";
const RECORD: &str = "INSERT INTO gatehouse_schema (version, name, applied_at) VALUES ($1, $2, $3)";

/// Applies the pending migrations inside an open, locked transaction `$tx`, using the script
/// field `$script` of each [`Migration`]; returns the version the database was at.
macro_rules! apply_pending {
    ($tx:ident, $schema_table:expr, $script:ident) => {{
        $tx.execute($schema_table).await?;
        let found: i64 = sqlx::query_scalar(CURRENT_VERSION)
            .fetch_one(&mut *$tx)
            .await?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for m in MIGRATIONS {
            if m.version <= found {
                continue;
            }
            let applied = $tx.execute(m.$script).await;
            let recorded = match applied {
                Ok(_) => {
                    sqlx::query(RECORD)
                        .bind(m.version)
                        .bind(m.name)
                        .bind(unix_now())
                        .execute(&mut *$tx)
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(source) = recorded {
                return Err(StoreError::Migration {
                    version: m.version,
                    name: m.name,
                    source,
                });
            }
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied database migration"
            );
        }
        $tx.commit().await?;
        Ok(found)
    }};
}

/// Brings a SQLite database up to [`SCHEMA_VERSION`].
pub(crate) async fn migrate_sqlite(pool: &SqlitePool) -> Result<i64, StoreError> {
    // IMMEDIATE takes the write lock up front: a second opener waits (busy timeout), then sees
    // the migrations recorded by the first.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    apply_pending!(tx, SQLITE_SCHEMA_TABLE, sqlite)
}

/// Brings a PostgreSQL database up to [`SCHEMA_VERSION`].
pub(crate) async fn migrate_postgres(pool: &PgPool) -> Result<i64, StoreError> {
    let mut tx = pool.begin().await?;
    // Held until commit or rollback; a concurrent opener blocks here, then sees our records.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PG_MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    apply_pending!(tx, PG_SCHEMA_TABLE, postgres)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_have_no_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {}", m.name);
            assert!(!m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty());
        }
        assert_eq!(SCHEMA_VERSION, MIGRATIONS.len() as i64);
    }
}
