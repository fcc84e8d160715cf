//! The `usage_rollup` table: hourly usage per principal, group, tenant, virtual server, server,
//! method and target, for `gatehouse usage report` and the anomaly baselines.
//!
//! Rows are only ever incremented, by
//! [`AuditIndex::add_with_usage`](crate::AuditIndex::add_with_usage) in the transaction that indexes the journal lines they count, so a line is counted exactly
//! once however often the index catches up.

use sqlx::Row;

use crate::{Pool, StoreError, with_pool};

/// Upper bounds (milliseconds) of the latency histogram's buckets; one more bucket holds
/// everything slower.
pub const LATENCY_BOUNDS_MS: [i64; 10] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

/// Buckets of the latency histogram (the bounds plus one for everything slower).
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// What one rollup row is about. Missing values are empty strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct UsageKey {
    /// Start of the hour, unix seconds.
    pub hour: i64,
    /// `""` for the row that counts each call once; a group name for the extra row a call adds
    /// for each of its caller's groups (whose other key columns are empty).
    pub group: String,
    /// The principal's subject.
    pub principal: String,
    /// The principal's issuer.
    pub issuer: String,
    /// The tenant.
    pub tenant: String,
    /// The virtual server.
    pub virtual_server: String,
    /// The backend server.
    pub server: String,
    /// The MCP method.
    pub method: String,
    /// The tool, prompt or resource.
    pub target: String,
}

/// Additive usage counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageCounts {
    /// Requests.
    pub calls: i64,
    /// Requests that failed (outcome `error`).
    pub errors: i64,
    /// Results that reported a tool error (`isError`).
    pub tool_errors: i64,
    /// Requests refused by policy or scopes (outcome `denied` or `forbidden`).
    pub denied: i64,
    /// Requests with a latency.
    pub timed: i64,
    /// Sum of their latencies, microseconds.
    pub latency_sum_us: i64,
    /// The largest latency, microseconds.
    pub latency_max_us: i64,
    /// Bytes of the requests.
    pub request_bytes: i64,
    /// Bytes of the responses.
    pub response_bytes: i64,
    /// Estimated tokens the results add to a model's context.
    pub tokens: i64,
    /// Latency histogram over [`LATENCY_BOUNDS_MS`].
    pub latency: [i64; LATENCY_BUCKETS],
}

/// The columns summed on upsert and in reports, in the order of [`UsageCounts::sums`].
const SUM_COLUMNS: [&str; 20] = [
    "calls",
    "errors",
    "tool_errors",
    "denied",
    "timed",
    "latency_sum_us",
    "request_bytes",
    "response_bytes",
    "tokens",
    "lat_0",
    "lat_1",
    "lat_2",
    "lat_3",
    "lat_4",
    "lat_5",
    "lat_6",
    "lat_7",
    "lat_8",
    "lat_9",
    "lat_10",
];

impl UsageCounts {
    /// Counts one latency.
    pub fn record_latency(&mut self, us: i64) {
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|ms| us <= ms * 1000)
            .unwrap_or(LATENCY_BUCKETS - 1);
        self.latency[bucket] += 1;
        self.timed += 1;
        self.latency_sum_us += us;
        self.latency_max_us = self.latency_max_us.max(us);
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &UsageCounts) {
        let mut sums = self.sums();
        for (a, b) in sums.iter_mut().zip(other.sums()) {
            *a += b;
        }
        *self = UsageCounts::from_sums(sums, self.latency_max_us.max(other.latency_max_us));
    }

    /// Mean latency in microseconds, when any call was timed.
    pub fn mean_latency_us(&self) -> Option<i64> {
        (self.timed > 0).then(|| self.latency_sum_us / self.timed)
    }

    /// The 95th percentile latency, microseconds, as the upper bound of the histogram bucket
    /// that holds it (capped by the maximum): an over-estimate by at most one bucket width.
    pub fn p95_us(&self) -> Option<i64> {
        if self.timed == 0 {
            return None;
        }
        let rank = (self.timed * 95 + 99) / 100;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let bound = LATENCY_BOUNDS_MS
                    .get(i)
                    .map_or(self.latency_max_us, |ms| ms * 1000);
                return Some(bound.min(self.latency_max_us));
            }
        }
        Some(self.latency_max_us)
    }

    /// Failed calls and tool errors over calls (0 without calls).
    pub fn error_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            (self.errors + self.tool_errors) as f64 / self.calls as f64
        }
    }

    /// The additive counters in the order of `SUM_COLUMNS`.
    pub(crate) fn sums(&self) -> [i64; 20] {
        let mut out = [0; 20];
        out[..9].copy_from_slice(&[
            self.calls,
            self.errors,
            self.tool_errors,
            self.denied,
            self.timed,
            self.latency_sum_us,
            self.request_bytes,
            self.response_bytes,
            self.tokens,
        ]);
        out[9..].copy_from_slice(&self.latency);
        out
    }

    fn from_sums(s: [i64; 20], latency_max_us: i64) -> UsageCounts {
        let mut latency = [0; LATENCY_BUCKETS];
        latency.copy_from_slice(&s[9..]);
        UsageCounts {
            calls: s[0],
            errors: s[1],
            tool_errors: s[2],
            denied: s[3],
            timed: s[4],
            latency_sum_us: s[5],
            latency_max_us,
            request_bytes: s[6],
            response_bytes: s[7],
            tokens: s[8],
            latency,
        }
    }
}

/// Counters to add to one rollup row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageIncrement {
    /// The row.
    pub key: UsageKey,
    /// The principal's e-mail (shown in reports; the latest one wins).
    pub email: String,
    /// What to add.
    pub counts: UsageCounts,
}

/// Rows per upsert: 31 parameters each stays below SQLite's 32,766.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// Upserts `increments` inside an open transaction `$tx` of pool `$pool`'s dialect.
macro_rules! upsert_usage {
    ($pool:expr, $tx:expr, $increments:expr) => {{
        let greatest = match $pool {
            $crate::Pool::Sqlite(_) => "MAX",
            $crate::Pool::Postgres(_) => "GREATEST",
        };
        for chunk in $increments.chunks($crate::usage::ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::new($crate::usage::insert_head());
            q.push_values(chunk, |mut b, i: &$crate::usage::UsageIncrement| {
                let k = &i.key;
                b.push_bind(k.hour)
                    .push_bind(k.group.as_str())
                    .push_bind(k.principal.as_str())
                    .push_bind(k.issuer.as_str())
                    .push_bind(k.tenant.as_str())
                    .push_bind(k.virtual_server.as_str())
                    .push_bind(k.server.as_str())
                    .push_bind(k.method.as_str())
                    .push_bind(k.target.as_str())
                    .push_bind(i.email.as_str())
                    .push_bind(i.counts.latency_max_us);
                for v in i.counts.sums() {
                    b.push_bind(v);
                }
            });
            q.push($crate::usage::conflict_tail(greatest));
            q.build().persistent(false).execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use upsert_usage;

pub(crate) fn insert_head() -> String {
    format!(
        "INSERT INTO usage_rollup (hour, grp, principal, issuer, tenant, virtual_server, server, \
         method, target, email, latency_max_us, {}) ",
        SUM_COLUMNS.join(", ")
    )
}

pub(crate) fn conflict_tail(greatest: &str) -> String {
    let sums: Vec<String> = SUM_COLUMNS
        .iter()
        .map(|c| format!("{c} = usage_rollup.{c} + excluded.{c}"))
        .collect();
    format!(
        " ON CONFLICT (hour, grp, principal, issuer, tenant, virtual_server, server, method, \
         target) DO UPDATE SET email = CASE WHEN excluded.email = '' THEN usage_rollup.email \
         ELSE excluded.email END, latency_max_us = {greatest}(usage_rollup.latency_max_us, \
         excluded.latency_max_us), {}",
        sums.join(", ")
    )
}

/// What a usage report adds up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageBy {
    /// The principal's subject (shown with its e-mail).
    User,
    /// Each of the principal's groups (a call counts once under each).
    Group,
    /// The tenant.
    Tenant,
    /// The virtual server.
    VirtualServer,
    /// The backend server.
    Server,
    /// The tool, prompt or resource (requests without one, such as `tools/list`, are left
    /// out).
    Tool,
}

impl UsageBy {
    fn column(self) -> &'static str {
        match self {
            UsageBy::User => "principal",
            UsageBy::Group => "grp",
            UsageBy::Tenant => "tenant",
            UsageBy::VirtualServer => "virtual_server",
            UsageBy::Server => "server",
            UsageBy::Tool => "target",
        }
    }
}

/// One line of a usage report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The value reported by (`""` when the calls had none, e.g. anonymous callers).
    pub key: String,
    /// For users: the latest e-mail seen, if any.
    pub email: Option<String>,
    /// The summed counters.
    pub counts: UsageCounts,
}

/// One hour of one user's or server's usage, for baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HourTotals {
    /// Start of the hour, unix seconds.
    pub hour: i64,
    /// Requests.
    pub calls: i64,
    /// Distinct tools, prompts and resources used.
    pub tools: i64,
    /// Failed calls and tool errors.
    pub errors: i64,
}

/// Whose usage a baseline describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A principal, by subject.
    User,
    /// A backend server.
    Server,
}

impl Scope {
    /// `user` or `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Server => "server",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Scope::User => "principal",
            Scope::Server => "server",
        }
    }
}

/// Repository of the usage rollups, from [`Store::usage`](crate::Store::usage).
#[derive(Debug, Clone)]
pub struct Usage {
    pool: Pool,
}

impl Usage {
    pub(crate) fn new(pool: Pool) -> Self {
        Usage { pool }
    }

    /// Removes the rollups of hours before `before_hour` (unix seconds), and the record of
    /// anomalies fired then; returns how many rollup rows went.
    pub async fn prune(&self, before_hour: i64) -> Result<u64, StoreError> {
        const ROLLUPS: &str = "DELETE FROM usage_rollup WHERE hour < $1";
        const FIRED: &str = "DELETE FROM anomaly_fired WHERE hour < $1";
        let removed = with_pool!(&self.pool, |p| {
            let mut tx = p.begin().await?;
            let n = sqlx::query(ROLLUPS)
                .bind(before_hour)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(FIRED)
                .bind(before_hour)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            n
        });
        Ok(removed)
    }

    /// Usage between `since_hour` (inclusive) and `until_hour` (exclusive), both unix seconds
    /// at the start of an hour, added up by `by`, most calls first, at most `limit` lines.
    pub async fn report(
        &self,
        by: UsageBy,
        since_hour: i64,
        until_hour: i64,
        limit: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let column = by.column();
        let sums: Vec<String> = SUM_COLUMNS
            .iter()
            .map(|c| format!("CAST(SUM({c}) AS BIGINT)"))
            .collect();
        let rows_of = if by == UsageBy::Group {
            "grp <> ''"
        } else {
            "grp = ''"
        };
        let with_target = if by == UsageBy::Tool {
            " AND target <> ''"
        } else {
            ""
        };
        // Only a user has an e-mail.
        let email = if by == UsageBy::User {
            "MAX(email)"
        } else {
            "''"
        };
        // Column 4 is SUM(calls).
        let sql = format!(
            "SELECT {column}, {email}, MAX(latency_max_us), {} FROM usage_rollup \
             WHERE hour >= $1 AND hour < $2 AND {rows_of}{with_target} \
             GROUP BY {column} ORDER BY 4 DESC, {column} LIMIT $3",
            sums.join(", ")
        );
        let rows: Vec<UsageRow> = with_pool!(&self.pool, |p| {
            let found = sqlx::query(&sql)
                .bind(since_hour)
                .bind(until_hour)
                .bind(limit.max(1))
                .fetch_all(p)
                .await?;
            let mut out = Vec::with_capacity(found.len());
            for r in &found {
                let mut s = [0i64; 20];
                for (i, v) in s.iter_mut().enumerate() {
                    *v = r.try_get(3 + i)?;
                }
                let email: Option<String> = r.try_get(1)?;
                out.push(UsageRow {
                    key: r.try_get(0)?,
                    email: email.filter(|e| !e.is_empty()),
                    counts: UsageCounts::from_sums(s, r.try_get(2)?),
                });
            }
            out
        });
        Ok(rows)
    }

    /// Hour by hour totals of one user or server between `from_hour` (inclusive) and
    /// `to_hour` (exclusive), oldest first; hours without calls are absent.
    pub async fn hours(
        &self,
        scope: Scope,
        name: &str,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<HourTotals>, StoreError> {
        let sql = format!(
            "SELECT hour, CAST(SUM(calls) AS BIGINT), COUNT(DISTINCT NULLIF(target, '')), \
             CAST(SUM(errors + tool_errors) AS BIGINT) FROM usage_rollup WHERE grp = '' AND \
             {} = $1 AND hour >= $2 AND hour < $3 GROUP BY hour ORDER BY hour",
            scope.column()
        );
        let rows: Vec<(i64, i64, i64, i64)> = with_pool!(&self.pool, |p| sqlx::query_as(&sql)
            .bind(name)
            .bind(from_hour)
            .bind(to_hour)
            .fetch_all(p)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(hour, calls, tools, errors)| HourTotals {
                hour,
                calls,
                tools,
                errors,
            })
            .collect())
    }

    /// The first hour a user or server was seen in the rollups (unix seconds).
    pub async fn first_seen(&self, scope: Scope, name: &str) -> Result<Option<i64>, StoreError> {
        let sql = format!(
            "SELECT MIN(hour) FROM usage_rollup WHERE grp = '' AND {} = $1",
            scope.column()
        );
        Ok(with_pool!(&self.pool, |p| sqlx::query_scalar(&sql)
            .bind(name)
            .fetch_one(p)
            .await?))
    }
}
