//! The anomaly detectors' state: baselines per user and server (`usage_baseline`), what each
//! principal has been seen with (`anomaly_seen`), and which anomalies have fired
//! (`anomaly_fired`).

use crate::{Pool, StoreError, with_pool};

pub use crate::usage::Scope;

/// A user's or server's normal usage over the anomaly window before `as_of_hour`.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// User or server.
    pub scope: Scope,
    /// The subject or server name.
    pub name: String,
    /// The hour (unix seconds) this baseline was computed for; it covers the window before it.
    pub as_of_hour: i64,
    /// The first hour with calls, ever (unix seconds).
    pub first_seen: i64,
    /// Hours with calls within the window.
    pub hours_observed: i64,
    /// Mean calls per hour with calls.
    pub mean_calls: f64,
    /// Standard deviation of calls per hour with calls.
    pub stddev_calls: f64,
    /// Mean distinct tools per hour with calls.
    pub mean_tools: f64,
    /// Failed calls and tool errors over calls.
    pub error_rate: f64,
    /// Share of the calls in each hour of the day (UTC); sums to 1 with any calls.
    pub profile: [f64; 24],
}

/// Repository of the detectors' state, from [`Store::anomalies`](crate::Store::anomalies).
#[derive(Debug, Clone)]
pub struct AnomalyState {
    pool: Pool,
}

const SELECT_BASELINE: &str = "SELECT as_of_hour, first_seen, hours_observed, mean_calls, \
    stddev_calls, mean_tools, error_rate, profile FROM usage_baseline \
    WHERE scope = $1 AND name = $2";

const PUT_BASELINE: &str = "INSERT INTO usage_baseline (scope, name, as_of_hour, first_seen, \
    hours_observed, mean_calls, stddev_calls, mean_tools, error_rate, profile) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (scope, name) DO UPDATE SET \
    as_of_hour = excluded.as_of_hour, first_seen = excluded.first_seen, \
    hours_observed = excluded.hours_observed, mean_calls = excluded.mean_calls, \
    stddev_calls = excluded.stddev_calls, mean_tools = excluded.mean_tools, \
    error_rate = excluded.error_rate, profile = excluded.profile";

type BaselineRow = (i64, i64, i64, f64, f64, f64, f64, String);

impl AnomalyState {
    pub(crate) fn new(pool: Pool) -> Self {
        AnomalyState { pool }
    }

    /// The stored baseline of a user or server, if any.
    pub async fn baseline(&self, scope: Scope, name: &str) -> Result<Option<Baseline>, StoreError> {
        let row: Option<BaselineRow> = with_pool!(&self.pool, |p| sqlx::query_as(SELECT_BASELINE)
            .bind(scope.as_str())
            .bind(name)
            .fetch_optional(p)
            .await?);
        Ok(row.map(|r| {
            let mut profile = [0.0; 24];
            for (slot, v) in profile.iter_mut().zip(r.7.split(',')) {
                *slot = v.parse().unwrap_or(0.0);
            }
            Baseline {
                scope,
                name: name.to_string(),
                as_of_hour: r.0,
                first_seen: r.1,
                hours_observed: r.2,
                mean_calls: r.3,
                stddev_calls: r.4,
                mean_tools: r.5,
                error_rate: r.6,
                profile,
            }
        }))
    }

    /// Stores (replaces) a baseline.
    pub async fn put_baseline(&self, b: &Baseline) -> Result<(), StoreError> {
        let profile: Vec<String> = b.profile.iter().map(|v| v.to_string()).collect();
        let profile = profile.join(",");
        with_pool!(&self.pool, |p| sqlx::query(PUT_BASELINE)
            .bind(b.scope.as_str())
            .bind(b.name.as_str())
            .bind(b.as_of_hour)
            .bind(b.first_seen)
            .bind(b.hours_observed)
            .bind(b.mean_calls)
            .bind(b.stddev_calls)
            .bind(b.mean_tools)
            .bind(b.error_rate)
            .bind(profile.as_str())
            .execute(p)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Records that `principal` was seen with `value` of `kind` at `time_us`; true when this
    /// is the first time.
    pub async fn remember(
        &self,
        principal: &str,
        kind: &str,
        value: &str,
        time_us: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO anomaly_seen (principal, kind, value, first_seen) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (principal, kind, value) DO NOTHING";
        let n = with_pool!(&self.pool, |p| sqlx::query(SQL)
            .bind(principal)
            .bind(kind)
            .bind(value)
            .bind(time_us)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// When `principal` was first seen with any value of `kind` other than `except`
    /// (unix microseconds), if ever.
    pub async fn first_seen_other(
        &self,
        principal: &str,
        kind: &str,
        except: &str,
    ) -> Result<Option<i64>, StoreError> {
        const SQL: &str = "SELECT MIN(first_seen) FROM anomaly_seen \
            WHERE principal = $1 AND kind = $2 AND value <> $3";
        Ok(with_pool!(&self.pool, |p| sqlx::query_scalar(SQL)
            .bind(principal)
            .bind(kind)
            .bind(except)
            .fetch_one(p)
            .await?))
    }

    /// Claims the right to fire `detector` for `name` in `hour`; true for the first claim
    /// only, so each anomaly is reported once per hour, also across restarts and replicas.
    pub async fn fire_once(
        &self,
        detector: &str,
        name: &str,
        hour: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO anomaly_fired (detector, name, hour) VALUES ($1, $2, $3) \
            ON CONFLICT (detector, name, hour) DO NOTHING";
        let n = with_pool!(&self.pool, |p| sqlx::query(SQL)
            .bind(detector)
            .bind(name)
            .bind(hour)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// Indexed requests (`mcp.request`) of `subject` with outcome `denied` or `forbidden` at
    /// or after `from_us` and at or before `to_us` (from the audit index).
    pub async fn authorization_failures(
        &self,
        subject: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM audit_events WHERE subject = $1 \
            AND type = 'mcp.request' AND time_us >= $2 AND time_us <= $3 \
            AND outcome IN ('denied', 'forbidden')";
        Ok(with_pool!(&self.pool, |p| sqlx::query_scalar(SQL)
            .bind(subject)
            .bind(from_us)
            .bind(to_us)
            .fetch_one(p)
            .await?))
    }
}
