//! The gateway's own metrics registry and its Prometheus exposition.

mod expo;
mod family;
mod limits;

use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use expo::{CONTENT_TYPE, escape_label_value};
pub use family::{
    Counter, DEFAULT_SERIES_LIMIT, DURATION_BUCKETS, Family, Gauge, Histogram, HistogramSnapshot,
    OVERFLOW_LABEL,
};
pub use limits::{
    BODY_REFUSAL_REASONS, CONNECTION_CLOSE_REASONS, CONNECTION_REFUSAL_REASONS, LimitMetrics,
};

/// Label value standing for any method that is not a known MCP method (as OpenTelemetry
/// does for HTTP methods), so arbitrary method names a client sends cannot create series.
pub const OTHER_METHOD: &str = "_OTHER";

/// The MCP methods (both protocol eras) that keep their name as a label value.
const KNOWN_METHODS: &[&str] = &[
    "completion/complete",
    "elicitation/create",
    "initialize",
    "logging/setLevel",
    "notifications/cancelled",
    "notifications/elicitation/complete",
    "notifications/initialized",
    "notifications/message",
    "notifications/progress",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
    "notifications/tools/list_changed",
    "ping",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/subscribe",
    "resources/templates/list",
    "resources/unsubscribe",
    "roots/list",
    "sampling/createMessage",
    "server/discover",
    "subscriptions/listen",
    "tasks/cancel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tools/call",
    "tools/list",
];

/// `method` if it is a known MCP method, else [`OTHER_METHOD`].
pub fn method_label(method: &str) -> &str {
    match KNOWN_METHODS.binary_search(&method) {
        Ok(i) => KNOWN_METHODS[i],
        Err(_) => OTHER_METHOD,
    }
}

/// Why a handshake-era session ended, as the `reason` label of
/// `gatehouse_sessions_ended_total` sees it: `idle` (no request for `idle_timeout`), `ttl`
/// (`session_ttl` after it opened), `cap_principal` and `cap_total` (ended to make room under
/// a cap), `deleted` (its client ended it).
pub const SESSION_END_REASONS: [&str; 5] = ["idle", "ttl", "cap_principal", "cap_total", "deleted"];

/// How a request ended, as the `outcome` label sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// Answered with a result (a tool result with `isError` counts as `Error`).
    Ok,
    /// Answered with a JSON-RPC error, a tool error, or failed in the gateway.
    Error,
    /// Refused by policy.
    Denied,
    /// Refused before dispatch: bad headers, Origin, body too large, unknown session.
    Rejected,
    /// Refused for lack of valid credentials (HTTP 401).
    Unauthenticated,
}

impl RequestOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Error => "error",
            RequestOutcome::Denied => "denied",
            RequestOutcome::Rejected => "rejected",
            RequestOutcome::Unauthenticated => "unauthenticated",
        }
    }
}

type GaugeFn = Box<dyn Fn() -> u64 + Send + Sync>;

/// Every metric the gateway exposes at `/metrics`. See the crate documentation for the
/// table of names and labels. Cheap to share: hold it in an `Arc`.
pub struct Metrics {
    version: String,
    requests: Family<Counter, 3>,
    tool_calls: Family<Counter, 4>,
    errors: Family<Counter, 3>,
    server_duration: Family<Histogram, 2>,
    client_duration: Family<Histogram, 2>,
    active_sessions: Family<Gauge, 1>,
    sessions_ended: Family<Counter, 1>,
    backend_up: Family<Gauge, 1>,
    policy_decisions: Family<Counter, 1>,
    audit_events: Family<Counter, 1>,
    audit_write_errors: Counter,
    anomalies: Family<Counter, 1>,
    sink_events: Family<Counter, 2>,
    sink_failures: Family<Counter, 1>,
    sink_last_delivery: Family<Gauge, 1>,
    streams_closed: Family<Counter, 2>,
    audit_queue_depth: RwLock<Option<GaugeFn>>,
    limits: LimitMetrics,
    audit_fields_truncated: Family<Counter, 1>,
    log_fields_truncated: RwLock<Option<GaugeFn>>,
    stderr_dropped_lines: Family<Counter, 2>,
    stderr_dropped_bytes: Family<Counter, 2>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with [`DEFAULT_SERIES_LIMIT`] series per metric.
    pub fn new() -> Arc<Metrics> {
        Metrics::with_series_limit(DEFAULT_SERIES_LIMIT)
    }

    /// A registry holding at most `limit` series per metric; past it new label sets
    /// share one `_overflow` series and `gatehouse_metric_series_overflow_total` counts
    /// them.
    pub fn with_series_limit(limit: usize) -> Arc<Metrics> {
        let metrics = Metrics {
            version: env!("CARGO_PKG_VERSION").to_string(),
            requests: Family::new(limit),
            tool_calls: Family::new(limit),
            errors: Family::new(limit),
            server_duration: Family::new(limit),
            client_duration: Family::new(limit),
            active_sessions: Family::new(limit),
            sessions_ended: Family::new(limit),
            backend_up: Family::new(limit),
            policy_decisions: Family::new(limit),
            audit_events: Family::new(limit),
            audit_write_errors: Counter::default(),
            anomalies: Family::new(limit),
            sink_events: Family::new(limit),
            sink_failures: Family::new(limit),
            sink_last_delivery: Family::new(limit),
            streams_closed: Family::new(limit),
            audit_queue_depth: RwLock::new(None),
            limits: LimitMetrics::new(limit),
            audit_fields_truncated: Family::new(limit),
            log_fields_truncated: RwLock::new(None),
            stderr_dropped_lines: Family::new(limit),
            stderr_dropped_bytes: Family::new(limit),
        };
        // Both decisions exist from the start, so a rate() over them has a zero baseline.
        metrics.policy_decisions.with(["allow"]);
        metrics.policy_decisions.with(["deny"]);
        for reason in SESSION_END_REASONS {
            metrics.sessions_ended.with([reason]);
        }
        Arc::new(metrics)
    }

    /// One request of a virtual server ended: counts it and records its duration.
    /// `method` is reduced with [`method_label`].
    pub fn request(&self, vs: &str, method: &str, outcome: RequestOutcome, duration: Duration) {
        let method = method_label(method);
        self.requests
            .apply([vs, method, outcome.as_str()], Counter::inc);
        self.server_duration
            .apply([vs, method], |h| h.observe(duration));
    }

    /// One request ended in an error of `error_type` (a JSON-RPC code such as `-32602`,
    /// `tool_error`, an HTTP status, or a gateway failure such as `timeout`).
    pub fn error(&self, vs: &str, method: &str, error_type: &str) {
        self.errors
            .apply([vs, method_label(method), error_type], Counter::inc);
    }

    /// One `tools/call` routed to `server`'s `tool` ended.
    pub fn tool_call(&self, vs: &str, server: &str, tool: &str, outcome: RequestOutcome) {
        self.tool_calls
            .apply([vs, server, tool, outcome.as_str()], Counter::inc);
    }

    /// One call of the gateway to a backend (`server`) took `duration`.
    pub fn backend_call(&self, server: &str, method: &str, duration: Duration) {
        self.client_duration
            .apply([server, method_label(method)], |h| h.observe(duration));
    }

    /// Whether `server` is reachable (a running process, a healthy remote).
    pub fn set_backend_up(&self, server: &str, up: bool) {
        self.backend_up.apply([server], |g| g.set(i64::from(up)));
    }

    /// A session of virtual server `vs` started.
    pub fn session_opened(&self, vs: &str) {
        self.active_sessions.apply([vs], Gauge::inc);
    }

    /// A session of virtual server `vs` ended (deleted or expired).
    pub fn session_closed(&self, vs: &str) {
        self.active_sessions.apply([vs], Gauge::dec);
    }

    /// Sets the number of live sessions of virtual server `vs` (counted by the session
    /// store, so sessions that expire are not counted forever).
    pub fn set_active_sessions(&self, vs: &str, n: usize) {
        self.active_sessions
            .apply([vs], |g| g.set(i64::try_from(n).unwrap_or(i64::MAX)));
    }

    /// A session ended for `reason`, one of [`SESSION_END_REASONS`].
    pub fn session_ended(&self, reason: &str) {
        self.sessions_ended.apply([reason], Counter::inc);
    }

    /// One policy decision.
    pub fn policy_decision(&self, allowed: bool) {
        let decision = if allowed { "allow" } else { "deny" };
        self.policy_decisions.apply([decision], Counter::inc);
    }

    /// One audit event handled; `outcome` is what the journal did with it (for example
    /// `written` or `dropped`).
    pub fn audit_event(&self, outcome: &str) {
        self.audit_events.apply([outcome], Counter::inc);
    }

    /// One failed write of the audit journal.
    pub fn audit_write_error(&self) {
        self.audit_write_errors.inc();
    }

    /// One anomaly event written by `detector` (`volume`, `first_delete`, …).
    pub fn anomaly(&self, detector: &str) {
        self.anomalies.apply([detector], Counter::inc);
    }

    /// `sink` delivered `delivered` events and dead-lettered `rejected` at unix time `now`.
    pub fn sink_delivered(&self, sink: &str, delivered: u64, rejected: u64, now: i64) {
        self.sink_events
            .apply([sink, "delivered"], |c| c.add(delivered));
        self.sink_events
            .apply([sink, "rejected"], |c| c.add(rejected));
        self.sink_last_delivery.apply([sink], |g| g.set(now));
    }

    /// One failed delivery attempt of `sink` (it will be retried).
    pub fn sink_failed(&self, sink: &str) {
        self.sink_failures.apply([sink], Counter::inc);
    }

    /// The gateway ended a client's stream on `transport` (`legacy_sse`, …) for `reason`
    /// (`slow_reader`: more was queued for it than the limit allows).
    pub fn stream_closed(&self, transport: &str, reason: &str) {
        self.streams_closed.apply([transport, reason], Counter::inc);
    }

    /// Reads the audit queue depth from `f` at every scrape (replacing an earlier one).
    pub fn set_audit_queue_depth(&self, f: impl Fn() -> u64 + Send + Sync + 'static) {
        *self
            .audit_queue_depth
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    /// Connection and request-body bounds.
    pub fn limits(&self) -> &LimitMetrics {
        &self.limits
    }

    /// One string of an audit event was cut to `audit.max_field_bytes`; `field` names it
    /// (`method`, `client.name`, … — a fixed set, never a value).
    pub fn audit_field_truncated(&self, field: &str) {
        self.audit_fields_truncated.apply([field], Counter::inc);
    }

    /// Reads how many log values were cut to `audit.max_field_bytes` from `f` at every scrape
    /// (replacing an earlier one).
    pub fn set_log_fields_truncated(&self, f: impl Fn() -> u64 + Send + Sync + 'static) {
        *self
            .log_fields_truncated
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    /// A stdio server's stderr lost `lines` lines and `bytes` bytes on the way to the log:
    /// `reason` is `line_too_long` (the rest of a line past `gateway.stderr.max_line_bytes`;
    /// `lines` counts the lines cut) or `rate` (whole lines past
    /// `gateway.stderr.max_lines_per_second`). `server` is a configured name.
    pub fn stderr_dropped(&self, server: &str, reason: &str, lines: u64, bytes: u64) {
        if lines > 0 {
            self.stderr_dropped_lines
                .apply([server, reason], |c| c.add(lines));
        }
        if bytes > 0 {
            self.stderr_dropped_bytes
                .apply([server, reason], |c| c.add(bytes));
        }
    }

    /// `gatehouse_requests_total` by `[virtual_server, method, outcome]`, for callers
    /// that keep a handle.
    pub fn requests_family(&self) -> &Family<Counter, 3> {
        &self.requests
    }

    /// `mcp_server_operation_duration_seconds` by `[virtual_server, mcp_method_name]`.
    pub fn server_duration_family(&self) -> &Family<Histogram, 2> {
        &self.server_duration
    }

    /// `mcp_client_operation_duration_seconds` by `[server, mcp_method_name]`.
    pub fn client_duration_family(&self) -> &Family<Histogram, 2> {
        &self.client_duration
    }

    /// `gatehouse_tool_calls_total` by `[virtual_server, server, tool, outcome]`.
    pub fn tool_calls_family(&self) -> &Family<Counter, 4> {
        &self.tool_calls
    }

    /// Every metric in the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        expo::counters(
            &mut out,
            "gatehouse_requests_total",
            "MCP requests handled, by virtual server, method and outcome.",
            ["virtual_server", "method", "outcome"],
            &self.requests,
        );
        expo::counters(
            &mut out,
            "gatehouse_tool_calls_total",
            "tools/call requests routed to a server, by virtual server, server, tool and outcome.",
            ["virtual_server", "server", "tool", "outcome"],
            &self.tool_calls,
        );
        expo::counters(
            &mut out,
            "gatehouse_errors_total",
            "MCP requests that ended in an error, by virtual server, method and error type.",
            ["virtual_server", "method", "error_type"],
            &self.errors,
        );
        expo::histograms(
            &mut out,
            "mcp_server_operation_duration_seconds",
            "Duration of MCP requests served by the gateway.",
            ["virtual_server", "mcp_method_name"],
            &self.server_duration,
        );
        expo::histograms(
            &mut out,
            "mcp_client_operation_duration_seconds",
            "Duration of MCP requests the gateway sent to backend servers.",
            ["server", "mcp_method_name"],
            &self.client_duration,
        );
        expo::gauges(
            &mut out,
            "gatehouse_active_sessions",
            "Open handshake-era sessions, by virtual server.",
            ["virtual_server"],
            &self.active_sessions,
        );
        expo::counters(
            &mut out,
            "gatehouse_streams_closed_total",
            "Client streams the gateway ended itself, by transport and reason (slow_reader: the client did not read what was queued for it).",
            ["transport", "reason"],
            &self.streams_closed,
        );
        expo::counters(
            &mut out,
            "gatehouse_sessions_ended_total",
            "Handshake-era sessions ended on this process, by reason (idle, ttl, cap_principal, cap_total, deleted).",
            ["reason"],
            &self.sessions_ended,
        );
        expo::gauges(
            &mut out,
            "gatehouse_backend_up",
            "Whether a backend server is reachable (1) or not (0).",
            ["server"],
            &self.backend_up,
        );
        expo::counters(
            &mut out,
            "gatehouse_policy_decisions_total",
            "Policy decisions, by decision.",
            ["decision"],
            &self.policy_decisions,
        );
        let depth = self
            .audit_queue_depth
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |f| f());
        expo::single(
            &mut out,
            "gatehouse_audit_queue_depth",
            "gauge",
            "Audit events waiting to be written.",
            depth,
        );
        expo::counters(
            &mut out,
            "gatehouse_audit_events_total",
            "Audit events, by what the journal did with them.",
            ["outcome"],
            &self.audit_events,
        );
        expo::single(
            &mut out,
            "gatehouse_audit_write_errors_total",
            "counter",
            "Failed writes of the audit journal.",
            self.audit_write_errors.get(),
        );
        expo::counters(
            &mut out,
            "gatehouse_audit_fields_truncated_total",
            "Strings of audit events cut to audit.max_field_bytes (the event records their length and SHA-256), by field.",
            ["field"],
            &self.audit_fields_truncated,
        );
        let cut = self
            .log_fields_truncated
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |f| f());
        expo::single(
            &mut out,
            "gatehouse_log_fields_truncated_total",
            "counter",
            "Client- or server-supplied values cut to audit.max_field_bytes in log lines.",
            cut,
        );
        expo::counters(
            &mut out,
            "gatehouse_stdio_stderr_dropped_total",
            "stderr lines of stdio servers not logged whole, by server and reason (line_too_long: cut at gateway.stderr.max_line_bytes; rate: dropped past gateway.stderr.max_lines_per_second).",
            ["server", "reason"],
            &self.stderr_dropped_lines,
        );
        expo::counters(
            &mut out,
            "gatehouse_stdio_stderr_dropped_bytes_total",
            "Bytes of stdio servers' stderr not logged, by server and reason.",
            ["server", "reason"],
            &self.stderr_dropped_bytes,
        );
        expo::counters(
            &mut out,
            "gatehouse_anomalies_total",
            "Anomaly events written to the audit journal, by detector.",
            ["detector"],
            &self.anomalies,
        );
        expo::counters(
            &mut out,
            "gatehouse_audit_sink_events_total",
            "Audit events a sink shipped (delivered) or its receiver refused for good (rejected, kept in the dead-letter file).",
            ["sink", "outcome"],
            &self.sink_events,
        );
        expo::counters(
            &mut out,
            "gatehouse_audit_sink_failures_total",
            "Failed delivery attempts of an audit sink (each is retried).",
            ["sink"],
            &self.sink_failures,
        );
        expo::gauges(
            &mut out,
            "gatehouse_audit_sink_last_delivery_timestamp_seconds",
            "Unix time of an audit sink's last successful delivery.",
            ["sink"],
            &self.sink_last_delivery,
        );
        self.limits.render(&mut out);
        self.render_overflow(&mut out);
        expo::header(
            &mut out,
            "gatehouse_build_info",
            "gauge",
            "Always 1; the labels describe the running build.",
        );
        out.push_str("gatehouse_build_info{version=\"");
        escape_label_value(&mut out, &self.version);
        out.push_str("\"} 1\n");
        out
    }

    fn render_overflow(&self, out: &mut String) {
        let name = "gatehouse_metric_series_overflow_total";
        expo::header(
            out,
            name,
            "counter",
            "Recordings folded into a metric's _overflow series because it reached its series limit.",
        );
        let families = [
            ("gatehouse_requests_total", self.requests.overflowed()),
            ("gatehouse_tool_calls_total", self.tool_calls.overflowed()),
            ("gatehouse_errors_total", self.errors.overflowed()),
            (
                "mcp_server_operation_duration_seconds",
                self.server_duration.overflowed(),
            ),
            (
                "mcp_client_operation_duration_seconds",
                self.client_duration.overflowed(),
            ),
            (
                "gatehouse_active_sessions",
                self.active_sessions.overflowed(),
            ),
            (
                "gatehouse_sessions_ended_total",
                self.sessions_ended.overflowed(),
            ),
            ("gatehouse_backend_up", self.backend_up.overflowed()),
            (
                "gatehouse_streams_closed_total",
                self.streams_closed.overflowed(),
            ),
            (
                "gatehouse_audit_events_total",
                self.audit_events.overflowed(),
            ),
            ("gatehouse_anomalies_total", self.anomalies.overflowed()),
            (
                "gatehouse_audit_fields_truncated_total",
                self.audit_fields_truncated.overflowed(),
            ),
            (
                "gatehouse_stdio_stderr_dropped_total",
                self.stderr_dropped_lines.overflowed(),
            ),
            (
                "gatehouse_stdio_stderr_dropped_bytes_total",
                self.stderr_dropped_bytes.overflowed(),
            ),
            (
                "gatehouse_audit_sink_events_total",
                self.sink_events.overflowed(),
            ),
            (
                "gatehouse_audit_sink_failures_total",
                self.sink_failures.overflowed(),
            ),
            (
                "gatehouse_audit_sink_last_delivery_timestamp_seconds",
                self.sink_last_delivery.overflowed(),
            ),
        ];
        for (metric, n) in families.into_iter().chain(self.limits.overflowed()) {
            if n > 0 {
                out.push_str(name);
                out.push_str("{metric=\"");
                out.push_str(metric);
                out.push_str("\"} ");
                out.push_str(&n.to_string());
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests;
