//! The `audit_sink_cursor` and `audit_sink_status` tables: how far each audit sink has
//! delivered the journal, and how its deliveries are going.

use std::collections::HashMap;

use crate::{Pool, StoreError, unix_now, with_pool};

/// How a sink's deliveries are going (`gatehouse audit sinks`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SinkStatus {
    /// The sink's name.
    pub sink: String,
    /// Events delivered so far.
    pub delivered: i64,
    /// Events the receiver refused for good (kept in the sink's dead-letter file).
    pub rejected: i64,
    /// When the last delivery succeeded (unix seconds).
    pub last_delivery: Option<i64>,
    /// The last failure's message (never holds a credential).
    pub last_error: Option<String>,
    /// When it happened (unix seconds).
    pub last_error_at: Option<i64>,
    /// Since when deliveries have been failing without a success (unix seconds).
    pub failing_since: Option<i64>,
}

/// Repository of sink cursors, from [`Store::sink_cursors`](crate::Store::sink_cursors).
#[derive(Debug, Clone)]
pub struct SinkCursors {
    pool: Pool,
}

const ADVANCE: &str = "INSERT INTO audit_sink_cursor (sink, segment, byte_offset) \
    VALUES ($1, $2, $3) ON CONFLICT (sink, segment) DO UPDATE \
    SET byte_offset = excluded.byte_offset \
    WHERE excluded.byte_offset > audit_sink_cursor.byte_offset";

const DELIVERED: &str = "INSERT INTO audit_sink_status (sink, delivered, rejected, \
    last_delivery) VALUES ($1, $2, $3, $4) ON CONFLICT (sink) DO UPDATE \
    SET delivered = audit_sink_status.delivered + excluded.delivered, \
    rejected = audit_sink_status.rejected + excluded.rejected, \
    last_delivery = excluded.last_delivery, failing_since = NULL";

const FAILED: &str = "INSERT INTO audit_sink_status (sink, delivered, rejected, last_error, \
    last_error_at, failing_since) VALUES ($1, 0, 0, $2, $3, $3) ON CONFLICT (sink) DO UPDATE \
    SET last_error = excluded.last_error, last_error_at = excluded.last_error_at, \
    failing_since = COALESCE(audit_sink_status.failing_since, excluded.failing_since)";

const STATUS: &str = "SELECT sink, delivered, rejected, last_delivery, last_error, \
    last_error_at, failing_since FROM audit_sink_status";

type StatusRow = (
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

impl SinkCursors {
    pub(crate) fn new(pool: Pool) -> Self {
        SinkCursors { pool }
    }

    /// How far `sink` has delivered each segment file (bytes).
    pub async fn cursors(&self, sink: &str) -> Result<HashMap<String, i64>, StoreError> {
        const SQL: &str = "SELECT segment, byte_offset FROM audit_sink_cursor WHERE sink = $1";
        let rows: Vec<(String, i64)> = with_pool!(&self.pool, |p| sqlx::query_as(SQL)
            .bind(sink)
            .fetch_all(p)
            .await?);
        Ok(rows.into_iter().collect())
    }

    /// Records that `sink` delivered `segment` up to byte `offset` (`delivered` events, of
    /// which `rejected` were refused for good). A cursor never moves back.
    pub async fn advance(
        &self,
        sink: &str,
        segment: &str,
        offset: i64,
        delivered: i64,
        rejected: i64,
    ) -> Result<(), StoreError> {
        let now = unix_now();
        with_pool!(&self.pool, |p| {
            let mut tx = p.begin().await?;
            sqlx::query(ADVANCE)
                .bind(sink)
                .bind(segment)
                .bind(offset)
                .execute(&mut *tx)
                .await?;
            sqlx::query(DELIVERED)
                .bind(sink)
                .bind(delivered)
                .bind(rejected)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records a failed delivery of `sink`.
    pub async fn failed(&self, sink: &str, error: &str) -> Result<(), StoreError> {
        let now = unix_now();
        with_pool!(&self.pool, |p| {
            sqlx::query(FAILED)
                .bind(sink)
                .bind(error)
                .bind(now)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Records a problem of `sink` that did not stop its deliveries (events the receiver
    /// refused for good): shown as its last error, without marking it failing.
    pub async fn note(&self, sink: &str, message: &str) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO audit_sink_status (sink, delivered, rejected, \
            last_error, last_error_at) VALUES ($1, 0, 0, $2, $3) ON CONFLICT (sink) DO UPDATE \
            SET last_error = excluded.last_error, last_error_at = excluded.last_error_at";
        let now = unix_now();
        with_pool!(&self.pool, |p| {
            sqlx::query(SQL)
                .bind(sink)
                .bind(message)
                .bind(now)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The status of every sink that has delivered or failed at least once.
    pub async fn status(&self) -> Result<Vec<SinkStatus>, StoreError> {
        let rows: Vec<StatusRow> =
            with_pool!(&self.pool, |p| sqlx::query_as(STATUS).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|r| SinkStatus {
                sink: r.0,
                delivered: r.1,
                rejected: r.2,
                last_delivery: r.3,
                last_error: r.4,
                last_error_at: r.5,
                failing_since: r.6,
            })
            .collect())
    }

    /// Forgets the cursors of segment files that no longer exist (removed by retention).
    pub async fn forget_segments(&self, segments: &[String]) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM audit_sink_cursor WHERE segment = $1";
        with_pool!(&self.pool, |p| {
            for s in segments {
                sqlx::query(SQL).bind(s).execute(p).await?;
            }
        });
        Ok(())
    }
}
