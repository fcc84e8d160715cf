//! Observability of Gatehouse: Prometheus metrics on an admin listener, and OpenTelemetry
//! traces and metrics over OTLP following the MCP semantic conventions.
//!
//! - [`Metrics`] is the gateway's own registry: counters, gauges and histograms on
//!   atomics, keyed by interned label sets, rendered in the Prometheus text format 0.0.4
//!   by [`Metrics::render`] and served by [`admin_router`] at `GET /metrics`.
//! - [`Telemetry`] adds OpenTelemetry when `telemetry.otlp` is configured. The front door
//!   starts a [`RequestSpan`] per request ([`Telemetry::request`]), dispatch names its
//!   target and member, each backend call gets a [`BackendSpan`] whose context is injected
//!   into the upstream `_meta` (or headers), and [`RequestSpan::end`] records the outcome in
//!   both Prometheus and OpenTelemetry. Without OTLP no OpenTelemetry span exists at all;
//!   the Prometheus metrics are still recorded.
//! - [`context`] reads and writes W3C `traceparent`/`tracestate`: `params._meta` first
//!   (SEP-414), then the HTTP headers. [`RequestSpan::trace_id`] gives the trace id the
//!   audit journal records, even with OTLP off when the client sent one.
//!
//! # Prometheus metrics
//!
//! | name | type | labels |
//! |---|---|---|
//! | `gatehouse_requests_total` | counter | `virtual_server`, `method`, `outcome` (`ok`, `error`, `denied`, `rejected`, `unauthenticated`) |
//! | `gatehouse_tool_calls_total` | counter | `virtual_server`, `server`, `tool`, `outcome` |
//! | `gatehouse_errors_total` | counter | `virtual_server`, `method`, `error_type` (JSON-RPC code, `tool_error`, `timeout`, `cancelled`, …) of requests whose outcome is `error` |
//! | `mcp_server_operation_duration_seconds` | histogram | `virtual_server`, `mcp_method_name` |
//! | `mcp_client_operation_duration_seconds` | histogram | `server`, `mcp_method_name` |
//! | `gatehouse_active_sessions` | gauge | `virtual_server` |
//! | `gatehouse_sessions_ended_total` | counter | `reason` (`idle`, `ttl`, `cap_principal`, `cap_total`, `deleted`) |
//! | `gatehouse_backend_up` | gauge | `server` (1 up, 0 down) |
//! | `gatehouse_streams_closed_total` | counter | `transport`, `reason` |
//! | `gatehouse_policy_decisions_total` | counter | `decision` (`allow`, `deny`) |
//! | `gatehouse_audit_queue_depth` | gauge | |
//! | `gatehouse_audit_events_total` | counter | `outcome` |
//! | `gatehouse_audit_write_errors_total` | counter | |
//! | `gatehouse_audit_fields_truncated_total` | counter | `field` (`method`, `client.name`, `target.name`, …) |
//! | `gatehouse_log_fields_truncated_total` | counter | |
//! | `gatehouse_stdio_stderr_dropped_total` | counter | `server`, `reason` (`line_too_long`, `rate`): lines |
//! | `gatehouse_stdio_stderr_dropped_bytes_total` | counter | `server`, `reason`: bytes |
//! | `gatehouse_anomalies_total` | counter | `detector` (`volume`, `distinct_tools`, `error_rate`, `off_hours`, `first_delete`, `new_network`, `authz_failures`) |
//! | `gatehouse_connections_open` | gauge | `listener` (`gateway`, `admin`) |
//! | `gatehouse_connections_refused_total` | counter | `listener`, `reason` (`max`, `per_ip`, `fd_reserve`) |
//! | `gatehouse_connections_closed_total` | counter | `listener`, `reason` (`header_timeout`, `idle_timeout`) |
//! | `gatehouse_accept_errors_total` | counter | `listener`, `kind` (`fd_exhausted`, `other`) |
//! | `gatehouse_request_bodies_refused_total` | counter | `reason` (`too_large`, `timeout`, `budget`) |
//! | `gatehouse_request_body_bytes_in_flight` | gauge | |
//! | `gatehouse_metric_series_overflow_total` | counter | `metric` |
//! | `gatehouse_build_info` | gauge (always 1) | `version` |
//!
//! No label carries a user: per-user numbers belong in the audit journal. Methods that are
//! not MCP methods are reported as `_OTHER`. Each metric holds at most 10,000 series
//! ([`DEFAULT_SERIES_LIMIT`]); further label sets share one series whose labels are all
//! `_overflow`, counted by `gatehouse_metric_series_overflow_total`, so tool names a
//! client makes up cannot grow memory.
//!
//! The histograms' buckets ([`DURATION_BUCKETS`]) are the MCP conventions' 10 ms … 300 s
//! plus 0.5, 1, 2.5 and 5 ms: a gateway's own overhead and fast local tools live below
//! 10 ms. The OpenTelemetry histograms use exactly the conventions' buckets
//! ([`SEMCONV_DURATION_BUCKETS`]).
//!
//! # Spans
//!
//! One SERVER span per request named `{mcp.method.name} {target}` (target: the tool or
//! prompt name; just the method otherwise), with `mcp.method.name`, `gen_ai.tool.name` and
//! `gen_ai.operation.name=execute_tool` or `gen_ai.prompt.name`, `mcp.session.id`,
//! `mcp.protocol.version`, `jsonrpc.request.id`, `network.transport=tcp`,
//! `network.protocol.name=http`, `client.address`/`client.port`, `mcp.resource.uri` only
//! when opted in, and on end `error.type`, `rpc.response.status_code` (JSON-RPC errors),
//! `http.response.status_code` (refusals before dispatch) and status ERROR whenever
//! `error.type` is set. One CLIENT child span per backend call, with
//! `server.address`/`server.port` for HTTP backends or `network.transport=pipe` for
//! stdio ones. Gatehouse-specific attributes are prefixed `gatehouse.`.
#![warn(missing_docs)]

mod admin;
pub mod context;
mod error;
mod metrics;
mod otel;
mod span;

pub use admin::admin_router;
pub use context::{TraceContext, extract, inject_headers, inject_meta};
pub use error::TelemetryError;
pub use metrics::{
    BODY_REFUSAL_REASONS, CONNECTION_CLOSE_REASONS, CONNECTION_REFUSAL_REASONS, CONTENT_TYPE,
    Counter, DEFAULT_SERIES_LIMIT, DURATION_BUCKETS, Family, Gauge, Histogram, HistogramSnapshot,
    LimitMetrics, Metrics, OTHER_METHOD, OVERFLOW_LABEL, RequestOutcome, SESSION_END_REASONS,
    escape_label_value, method_label,
};
pub use otel::{SEMCONV_DURATION_BUCKETS, Telemetry};
pub use span::{
    BackendCall, BackendSpan, BackendTransport, Outcome, RequestInfo, RequestSpan, Target,
    request_id,
};
