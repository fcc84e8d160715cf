//! The `audit_events` and `audit_cursor` tables: a query index over the audit journal's
//! segment files. Rows hold who, what, where and when — never argument values, which stay in
//! the segment files the row points to.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use crate::usage::{UsageIncrement, upsert_usage};
use crate::{Pool, StoreError, with_pool};

/// One indexed journal line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexedEvent {
    /// The journal (gateway process) that wrote it.
    pub instance: String,
    /// Its position in that journal's chain.
    pub seq: i64,
    /// When it happened, unix microseconds.
    pub time_us: i64,
    /// Event type (`mcp.request`, `auth.failure`, …).
    pub kind: String,
    /// Outcome (`ok`, `denied`, …).
    pub outcome: String,
    /// The principal's subject.
    pub subject: Option<String>,
    /// The principal's e-mail.
    pub email: Option<String>,
    /// The principal's issuer.
    pub issuer: Option<String>,
    /// The virtual server.
    pub virtual_server: Option<String>,
    /// The backend server.
    pub server: Option<String>,
    /// The method.
    pub method: Option<String>,
    /// The tool, prompt or resource name.
    pub target: Option<String>,
    /// Latency in microseconds.
    pub latency_us: Option<i64>,
    /// The segment file holding the full event.
    pub segment: String,
    /// Byte offset of the line in that file.
    pub byte_offset: i64,
}

/// Which indexed events to return, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Subject or e-mail equals this.
    pub user: Option<String>,
    /// Tool, prompt or resource name equals this.
    pub target: Option<String>,
    /// Backend server equals this.
    pub server: Option<String>,
    /// Virtual server equals this.
    pub virtual_server: Option<String>,
    /// Outcome equals this.
    pub outcome: Option<String>,
    /// Event type equals this.
    pub kind: Option<String>,
    /// At or after (unix microseconds).
    pub since_us: Option<i64>,
    /// Before (unix microseconds).
    pub until_us: Option<i64>,
    /// At most this many rows.
    pub limit: i64,
}

/// Repository of the audit index, from [`Store::audit_index`](crate::Store::audit_index).
#[derive(Debug, Clone)]
pub struct AuditIndex {
    pool: Pool,
}

const INSERT_INTO: &str = "INSERT INTO audit_events (instance, seq, time_us, type, outcome, \
    subject, email, issuer, virtual_server, server, method, target, latency_us, segment, \
    byte_offset) ";

/// Rows per INSERT: 15 parameters each stays far below SQLite's and PostgreSQL's limits.
const ROWS_PER_STATEMENT: usize = 500;

const CURSOR: &str = "INSERT INTO audit_cursor (segment, byte_offset) VALUES ($1, $2) \
    ON CONFLICT (segment) DO UPDATE SET byte_offset = excluded.byte_offset \
    WHERE excluded.byte_offset > audit_cursor.byte_offset";

/// Inserts index rows inside the open transaction `$tx`, many per statement: one round trip
/// (and, for SQLite, one hand-off to its worker thread) per chunk instead of per row.
macro_rules! insert_rows {
    ($tx:ident, $rows:expr) => {
        for chunk in $rows.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new(INSERT_INTO);
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.instance.as_str())
                    .push_bind(r.seq)
                    .push_bind(r.time_us)
                    .push_bind(r.kind.as_str())
                    .push_bind(r.outcome.as_str())
                    .push_bind(r.subject.as_deref())
                    .push_bind(r.email.as_deref())
                    .push_bind(r.issuer.as_deref())
                    .push_bind(r.virtual_server.as_deref())
                    .push_bind(r.server.as_deref())
                    .push_bind(r.method.as_deref())
                    .push_bind(r.target.as_deref())
                    .push_bind(r.latency_us)
                    .push_bind(r.segment.as_str())
                    .push_bind(r.byte_offset);
            });
            q.push(" ON CONFLICT (instance, seq) DO NOTHING");
            // Not cached: each row count is a different statement, and caching them grew
            // the gateway's memory with every batch size seen.
            q.build().persistent(false).execute(&mut *$tx).await?;
        }
    };
}

const CURSOR_FROM: &str = "INSERT INTO audit_cursor (segment, byte_offset) VALUES ($1, $2) \
    ON CONFLICT (segment) DO UPDATE SET byte_offset = excluded.byte_offset \
    WHERE audit_cursor.byte_offset = $3";

const COLUMNS: &str = "SELECT instance, seq, time_us, type, outcome, subject, email, issuer, \
    virtual_server, server, method, target, latency_us, segment, byte_offset FROM audit_events";

type Row = (
    String,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    String,
    i64,
);

impl AuditIndex {
    pub(crate) fn new(pool: Pool) -> Self {
        AuditIndex { pool }
    }

    /// How far each segment file is indexed (bytes).
    pub async fn cursors(&self) -> Result<HashMap<String, i64>, StoreError> {
        const SQL: &str = "SELECT segment, byte_offset FROM audit_cursor";
        let rows: Vec<(String, i64)> =
            with_pool!(&self.pool, |p| sqlx::query_as(SQL).fetch_all(p).await?);
        Ok(rows.into_iter().collect())
    }

    /// Adds `rows` read from `segment` up to byte `offset`, in one transaction with the
    /// cursor, so a crash between the two cannot index a line twice or skip one.
    pub async fn add(
        &self,
        segment: &str,
        offset: i64,
        rows: &[IndexedEvent],
    ) -> Result<(), StoreError> {
        with_pool!(&self.pool, |p| {
            let mut tx = p.begin().await?;
            insert_rows!(tx, rows);
            sqlx::query(CURSOR)
                .bind(segment)
                .bind(offset)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Adds `rows` read from `segment` between byte `from` and byte `offset`, and adds `usage`
    /// (their hourly rollup increments, pre-aggregated: one per rollup row) in the same
    /// transaction, moving the cursor from `from` to `offset`.
    ///
    /// Counters, unlike index rows, are not idempotent, so the cursor moves (and `usage` is
    /// added) only if it still stands at `from`: when another indexer (a replica, or
    /// `gatehouse audit query` next to the gateway) got there first, possibly with a longer
    /// read of a growing segment, this call adds its (idempotent) rows but counts nothing, and
    /// the next catch-up reads on from wherever that indexer stopped. Returns whether the
    /// cursor moved.
    pub async fn add_with_usage(
        &self,
        segment: &str,
        from: i64,
        offset: i64,
        rows: &[IndexedEvent],
        usage: &[UsageIncrement],
    ) -> Result<bool, StoreError> {
        let moved = with_pool!(&self.pool, |p| {
            let mut tx = p.begin().await?;
            insert_rows!(tx, rows);
            let moved = sqlx::query(CURSOR_FROM)
                .bind(segment)
                .bind(offset)
                .bind(from)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if moved > 0 && !usage.is_empty() {
                upsert_usage!(&self.pool, tx, usage);
            }
            tx.commit().await?;
            moved
        });
        Ok(moved > 0)
    }

    /// The events matching `filter`, newest first.
    pub async fn query(&self, filter: &AuditFilter) -> Result<Vec<IndexedEvent>, StoreError> {
        let rows: Vec<Row> = with_pool!(&self.pool, |p| {
            let mut q = QueryBuilder::new(COLUMNS);
            q.push(" WHERE 1 = 1");
            if let Some(u) = &filter.user {
                q.push(" AND (subject = ")
                    .push_bind(u.clone())
                    .push(" OR email = ")
                    .push_bind(u.clone())
                    .push(")");
            }
            for (column, value) in [
                ("target", &filter.target),
                ("server", &filter.server),
                ("virtual_server", &filter.virtual_server),
                ("outcome", &filter.outcome),
                ("type", &filter.kind),
            ] {
                if let Some(v) = value {
                    q.push(format!(" AND {column} = ")).push_bind(v.clone());
                }
            }
            if let Some(t) = filter.since_us {
                q.push(" AND time_us >= ").push_bind(t);
            }
            if let Some(t) = filter.until_us {
                q.push(" AND time_us < ").push_bind(t);
            }
            q.push(" ORDER BY time_us DESC, instance DESC, seq DESC LIMIT ")
                .push_bind(filter.limit.max(1));
            q.build_query_as().fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|r| IndexedEvent {
                instance: r.0,
                seq: r.1,
                time_us: r.2,
                kind: r.3,
                outcome: r.4,
                subject: r.5,
                email: r.6,
                issuer: r.7,
                virtual_server: r.8,
                server: r.9,
                method: r.10,
                target: r.11,
                latency_us: r.12,
                segment: r.13,
                byte_offset: r.14,
            })
            .collect())
    }

    /// Drops the rows and cursors of segment files removed by retention.
    pub async fn forget_segments(&self, segments: &[String]) -> Result<u64, StoreError> {
        const ROWS: &str = "DELETE FROM audit_events WHERE segment = $1";
        const CURSOR: &str = "DELETE FROM audit_cursor WHERE segment = $1";
        let mut removed = 0;
        with_pool!(&self.pool, |p| {
            let mut tx = p.begin().await?;
            for s in segments {
                removed += sqlx::query(ROWS)
                    .bind(s)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(CURSOR).bind(s).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(removed)
    }
}
