//! The span of one request (SERVER) and of each backend call it makes (CLIENT), named
//! and attributed after the MCP semantic conventions, and the metrics they record on end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use opentelemetry::trace::{Link, Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span as SdkSpan};
use serde_json::{Map, Value};

use crate::context::{self, TraceContext};
use crate::metrics::{Histogram, RequestOutcome, method_label};
use crate::otel::Inner;

/// What the front door knows when a request arrives.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo<'a> {
    /// The virtual server's name.
    pub virtual_server: &'a str,
    /// The JSON-RPC method (`tools/call`, …).
    pub method: &'a str,
    /// The JSON-RPC id as text (see [`request_id`]); `None` for notifications.
    pub request_id: Option<&'a str>,
    /// The session (`Mcp-Session-Id`), handshake era only.
    pub session_id: Option<&'a str>,
    /// The MCP protocol version the client speaks.
    pub protocol_version: Option<&'a str>,
    /// The client's address as the listener saw it.
    pub client_address: Option<SocketAddr>,
    /// The HTTP version, `1.1` or `2`.
    pub http_version: Option<&'a str>,
    /// The client's trace context ([`context::extract`]): the parent of the span.
    pub parent: Option<TraceContext>,
    /// The HTTP headers' trace context ([`context::from_headers`]): when it differs from
    /// `parent` (which came from `_meta`), the span links to it, as the conventions ask.
    pub transport_context: Option<TraceContext>,
}

/// What a request is about, once dispatch knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A tool, by the name the caller used.
    Tool(&'a str),
    /// A prompt.
    Prompt(&'a str),
    /// A resource URI (recorded only with `record_resource_uri`).
    Resource(&'a str),
}

/// How a request or backend call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// A result.
    Ok,
    /// A tool result with `isError: true` (`error.type=tool_error`).
    ToolError,
    /// A JSON-RPC error response.
    Error {
        /// The JSON-RPC error code.
        code: i64,
        /// Its message (the span status description).
        message: &'a str,
    },
    /// Refused by policy; `code` is the JSON-RPC error the client saw.
    Denied {
        /// The JSON-RPC error code.
        code: i64,
    },
    /// Refused before dispatch with this HTTP status (bad headers, Origin, body size).
    Rejected {
        /// The HTTP status code.
        status: u16,
    },
    /// Refused with 401: no valid credentials.
    Unauthenticated,
    /// Failed without a JSON-RPC code: `timeout`, `backend_unavailable`, `cancelled`, …
    Failed {
        /// A short, low-cardinality error class.
        error_type: &'a str,
    },
}

impl Outcome<'_> {
    /// The `outcome` label of `gatehouse_requests_total`.
    pub fn label(&self) -> RequestOutcome {
        match self {
            Outcome::Ok => RequestOutcome::Ok,
            Outcome::ToolError | Outcome::Error { .. } | Outcome::Failed { .. } => {
                RequestOutcome::Error
            }
            Outcome::Denied { .. } => RequestOutcome::Denied,
            Outcome::Rejected { .. } => RequestOutcome::Rejected,
            Outcome::Unauthenticated => RequestOutcome::Unauthenticated,
        }
    }

    /// The `error.type` attribute: the JSON-RPC code as text, `tool_error`, the HTTP status
    /// of a refusal, or the failure class. `None` for success.
    pub fn error_type(&self) -> Option<String> {
        match self {
            Outcome::Ok => None,
            Outcome::ToolError => Some("tool_error".into()),
            Outcome::Error { code, .. } | Outcome::Denied { code } => Some(code.to_string()),
            Outcome::Rejected { status } => Some(status.to_string()),
            Outcome::Unauthenticated => Some("401".into()),
            Outcome::Failed { error_type } => Some((*error_type).to_string()),
        }
    }

    fn rpc_code(&self) -> Option<i64> {
        match self {
            Outcome::Error { code, .. } | Outcome::Denied { code } => Some(*code),
            _ => None,
        }
    }

    fn http_status(&self) -> Option<u16> {
        match self {
            Outcome::Rejected { status } => Some(*status),
            Outcome::Unauthenticated => Some(401),
            _ => None,
        }
    }

    fn description(&self) -> String {
        match self {
            Outcome::Error { message, .. } => (*message).to_string(),
            Outcome::Denied { .. } => "denied by policy".into(),
            Outcome::ToolError => "the tool reported an error".into(),
            _ => String::new(),
        }
    }
}

/// The text of a JSON-RPC id for `jsonrpc.request.id`: strings as they are, numbers in
/// decimal; `None` for null or anything else (the conventions say not to record those).
pub fn request_id(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One request, from the front door to its response. End it with [`RequestSpan::end`];
/// dropped without that (the client went away), it ends as `Failed { "cancelled" }`.
#[derive(Debug)]
pub struct RequestSpan {
    inner: Arc<Inner>,
    start: Instant,
    virtual_server: String,
    method: String,
    tool: Option<String>,
    prompt: Option<String>,
    server: Option<String>,
    protocol_version: Option<String>,
    parent: Option<TraceContext>,
    span: Option<SdkSpan>,
    ended: bool,
}

impl RequestSpan {
    pub(crate) fn start(inner: Arc<Inner>, info: RequestInfo<'_>) -> RequestSpan {
        let span = inner
            .tracer
            .as_ref()
            .map(|tracer| server_span(tracer, &info));
        // Only the OpenTelemetry metrics need it after the start.
        let protocol_version = info
            .protocol_version
            .filter(|_| inner.instruments.is_some())
            .map(str::to_string);
        RequestSpan {
            inner,
            start: Instant::now(),
            virtual_server: info.virtual_server.to_string(),
            method: info.method.to_string(),
            tool: None,
            prompt: None,
            server: None,
            protocol_version,
            parent: info.parent,
            span,
            ended: false,
        }
    }

    /// Whether an OpenTelemetry span is being recorded for this request.
    pub fn is_recording(&self) -> bool {
        self.span.as_ref().is_some_and(|s| s.is_recording())
    }

    /// The trace id (32 hex digits) of this request: the recorded span's, or when tracing
    /// is off the one the client sent. `None` when there is neither.
    pub fn trace_id(&self) -> Option<String> {
        match &self.span {
            Some(s) => {
                let sc = s.span_context();
                sc.is_valid().then(|| sc.trace_id().to_string())
            }
            None => self.parent.as_ref().map(TraceContext::trace_id),
        }
    }

    /// This request's position in the trace: the span's context when tracing, else the
    /// client's context (passed through unchanged).
    pub fn context(&self) -> Option<TraceContext> {
        match &self.span {
            Some(s) => TraceContext::from_span_context(s.span_context()),
            None => self.parent.clone(),
        }
    }

    /// Names what the request is about: the span becomes `{method} {name}` and gets
    /// `gen_ai.tool.name` (with `gen_ai.operation.name=execute_tool`) or
    /// `gen_ai.prompt.name`, or `mcp.resource.uri` when that is opted in.
    pub fn set_target(&mut self, target: Target<'_>) {
        let record_uri = self.inner.record_resource_uri;
        match target {
            Target::Tool(name) => self.tool = Some(name.to_string()),
            Target::Prompt(name) => self.prompt = Some(name.to_string()),
            Target::Resource(_) => {}
        }
        if let Some(span) = &mut self.span {
            match target {
                Target::Tool(name) => {
                    span.update_name(format!("{} {name}", self.method));
                    span.set_attribute(KeyValue::new("gen_ai.tool.name", name.to_string()));
                    span.set_attribute(KeyValue::new("gen_ai.operation.name", "execute_tool"));
                }
                Target::Prompt(name) => {
                    span.update_name(format!("{} {name}", self.method));
                    span.set_attribute(KeyValue::new("gen_ai.prompt.name", name.to_string()));
                }
                Target::Resource(uri) if record_uri => {
                    span.set_attribute(KeyValue::new("mcp.resource.uri", uri.to_string()));
                }
                Target::Resource(_) => {}
            }
        }
    }

    /// The member server that serves the request (the `server` label of
    /// `gatehouse_tool_calls_total`). Call it once routing resolved the name, so names
    /// that match nothing never become label values.
    pub fn set_server(&mut self, server: &str) {
        self.server = Some(server.to_string());
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new("gatehouse.server", server.to_string()));
        }
    }

    /// The session id, when it is only known at the end (`initialize`).
    pub fn set_session_id(&mut self, id: &str) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new("mcp.session.id", id.to_string()));
        }
    }

    /// Starts the CLIENT span of a call to a backend, a child of this request's span.
    pub fn backend(&self, call: BackendCall<'_>) -> BackendSpan {
        BackendSpan::start(self, call)
    }

    /// Ends the request: records the span's outcome and the metrics.
    pub fn end(mut self, outcome: Outcome<'_>) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome<'_>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let elapsed = self.start.elapsed();
        let inner = &self.inner;
        let m = &inner.metrics;
        let vs = self.virtual_server.as_str();
        let label = outcome.label();
        m.request(vs, &self.method, label, elapsed);
        let error_type = outcome.error_type();
        if label == RequestOutcome::Error
            && let Some(t) = &error_type
        {
            m.error(vs, &self.method, t);
        }
        if self.method == "tools/call"
            && let (Some(server), Some(tool)) = (&self.server, &self.tool)
        {
            m.tool_call(vs, server, tool, label);
        }
        if let Some(i) = &inner.instruments {
            let mut attrs = vec![
                KeyValue::new("mcp.method.name", method_label(&self.method).to_string()),
                KeyValue::new("network.transport", "tcp"),
                KeyValue::new("network.protocol.name", "http"),
                KeyValue::new("gatehouse.virtual_server", vs.to_string()),
            ];
            self.target_attrs(&mut attrs);
            outcome_attrs(&outcome, error_type.as_deref(), &mut attrs);
            if let Some(v) = &self.protocol_version {
                attrs.push(KeyValue::new("mcp.protocol.version", v.clone()));
            }
            i.server_duration.record(elapsed.as_secs_f64(), &attrs);
        }
        if let Some(span) = &mut self.span {
            let mut attrs = Vec::with_capacity(4);
            outcome_attrs(&outcome, error_type.as_deref(), &mut attrs);
            attrs.push(KeyValue::new("gatehouse.outcome", label.as_str()));
            span.set_attributes(attrs);
            if error_type.is_some() {
                span.set_status(Status::error(outcome.description()));
            }
            span.end();
        }
    }

    fn target_attrs(&self, attrs: &mut Vec<KeyValue>) {
        if let Some(t) = &self.tool {
            attrs.push(KeyValue::new("gen_ai.tool.name", t.clone()));
            attrs.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        if let Some(p) = &self.prompt {
            attrs.push(KeyValue::new("gen_ai.prompt.name", p.clone()));
        }
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        self.finish(Outcome::Failed {
            error_type: "cancelled",
        });
    }
}

fn outcome_attrs(outcome: &Outcome<'_>, error_type: Option<&str>, attrs: &mut Vec<KeyValue>) {
    if let Some(t) = error_type {
        attrs.push(KeyValue::new("error.type", t.to_string()));
    }
    if let Some(code) = outcome.rpc_code() {
        attrs.push(KeyValue::new("rpc.response.status_code", code.to_string()));
    }
    if let Some(status) = outcome.http_status() {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
}

fn span_name(method: &str, target: Option<&str>) -> String {
    match target {
        Some(t) => format!("{method} {t}"),
        None => method.to_string(),
    }
}

fn server_span(tracer: &SdkTracer, info: &RequestInfo<'_>) -> SdkSpan {
    let parent = match &info.parent {
        Some(p) => Context::new().with_remote_span_context(p.to_span_context(true)),
        // An explicit empty context: never pick up an ambient span as the parent.
        None => Context::new(),
    };
    let mut attrs = vec![
        KeyValue::new("mcp.method.name", info.method.to_string()),
        KeyValue::new("network.transport", "tcp"),
        KeyValue::new("network.protocol.name", "http"),
        KeyValue::new("gatehouse.virtual_server", info.virtual_server.to_string()),
    ];
    let optional = [
        ("jsonrpc.request.id", info.request_id),
        ("mcp.session.id", info.session_id),
        ("mcp.protocol.version", info.protocol_version),
        ("network.protocol.version", info.http_version),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            attrs.push(KeyValue::new(key, v.to_string()));
        }
    }
    if let Some(addr) = info.client_address {
        attrs.push(KeyValue::new("client.address", addr.ip().to_string()));
        attrs.push(KeyValue::new("client.port", i64::from(addr.port())));
    }
    let mut builder = tracer
        .span_builder(span_name(info.method, None))
        .with_kind(SpanKind::Server)
        .with_attributes(attrs);
    if let Some(link) = &info.transport_context
        && Some(link) != info.parent.as_ref()
    {
        builder = builder.with_links(vec![Link::with_context(link.to_span_context(true))]);
    }
    builder.start_with_context(tracer, &parent)
}

/// How the gateway reaches a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendTransport<'a> {
    /// Streamable HTTP (or HTTP+SSE) at this host and port.
    Http {
        /// Host name or IP address from the server's URL.
        address: &'a str,
        /// Port (the scheme's default when the URL has none).
        port: u16,
    },
    /// A local process over stdio (`network.transport=pipe`).
    Stdio,
}

/// One call of the gateway to a backend.
#[derive(Debug, Clone, Copy)]
pub struct BackendCall<'a> {
    /// The server's name in the config.
    pub server: &'a str,
    /// The JSON-RPC method sent.
    pub method: &'a str,
    /// The tool or prompt by the backend's own name, if any.
    pub target: Option<Target<'a>>,
    /// How the backend is reached.
    pub transport: BackendTransport<'a>,
    /// The JSON-RPC id sent upstream, as text.
    pub request_id: Option<&'a str>,
    /// The protocol version spoken with the backend.
    pub protocol_version: Option<&'a str>,
}

/// A call to a backend (CLIENT span, `mcp.client.operation.duration`). Inject its
/// context into the upstream request; end it when the response arrives. Dropped without
/// [`BackendSpan::end`], it ends as `Failed { "cancelled" }`.
#[derive(Debug)]
pub struct BackendSpan {
    inner: Arc<Inner>,
    start: Instant,
    histogram: Histogram,
    /// OpenTelemetry metric attributes known at the start, only when OTel metrics are on.
    attrs: Option<Vec<KeyValue>>,
    span: Option<SdkSpan>,
    /// What the backend sees as its parent when no span is recorded: the client's context.
    passthrough: Option<TraceContext>,
    ended: bool,
}

impl BackendSpan {
    fn start(request: &RequestSpan, call: BackendCall<'_>) -> BackendSpan {
        let inner = request.inner.clone();
        let histogram = inner
            .metrics
            .client_duration_family()
            .with([call.server, method_label(call.method)]);
        // Built only for OpenTelemetry: with OTLP off a backend call allocates nothing here.
        let otel = inner.instruments.is_some() || inner.tracer.is_some();
        let attrs = if otel {
            client_attrs(&call)
        } else {
            Vec::new()
        };
        let span = match (&inner.tracer, &request.span) {
            (Some(tracer), Some(parent)) => {
                let parent_cx =
                    Context::new().with_remote_span_context(parent.span_context().clone());
                let mut span_attrs = attrs.clone();
                if let Some(id) = call.request_id {
                    span_attrs.push(KeyValue::new("jsonrpc.request.id", id.to_string()));
                }
                if let (Some(Target::Resource(uri)), true) =
                    (call.target, inner.record_resource_uri)
                {
                    span_attrs.push(KeyValue::new("mcp.resource.uri", uri.to_string()));
                }
                let target = match call.target {
                    Some(Target::Tool(t) | Target::Prompt(t)) => Some(t),
                    _ => None,
                };
                Some(
                    tracer
                        .span_builder(span_name(call.method, target))
                        .with_kind(SpanKind::Client)
                        .with_attributes(span_attrs)
                        .start_with_context(tracer, &parent_cx),
                )
            }
            _ => None,
        };
        let passthrough = if span.is_none() {
            request.parent.clone()
        } else {
            None
        };
        BackendSpan {
            attrs: inner.instruments.is_some().then_some(attrs),
            inner,
            start: Instant::now(),
            histogram,
            span,
            passthrough,
            ended: false,
        }
    }

    /// The trace context the backend should see as its parent: this span's, or the
    /// client's when tracing is off. `None` when there is no trace.
    pub fn context(&self) -> Option<TraceContext> {
        match &self.span {
            Some(s) => TraceContext::from_span_context(s.span_context()),
            None => self.passthrough.clone(),
        }
    }

    /// Writes the context into the upstream request's `params._meta`.
    pub fn inject_meta(&self, meta: &mut Map<String, Value>) {
        if let Some(ctx) = self.context() {
            context::inject_meta(meta, &ctx);
        }
    }

    /// Writes the context as `traceparent`/`tracestate` headers of the upstream request.
    pub fn inject_headers(&self, headers: &mut HeaderMap) {
        if let Some(ctx) = self.context() {
            context::inject_headers(headers, &ctx);
        }
    }

    /// Ends the call: records its duration and outcome.
    pub fn end(mut self, outcome: Outcome<'_>) {
        self.finish(outcome);
    }

    /// How long the call has been running.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn finish(&mut self, outcome: Outcome<'_>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let elapsed = self.start.elapsed();
        self.histogram.observe(elapsed);
        let error_type = outcome.error_type();
        if let (Some(i), Some(attrs)) = (&self.inner.instruments, &mut self.attrs) {
            outcome_attrs(&outcome, error_type.as_deref(), attrs);
            i.client_duration.record(elapsed.as_secs_f64(), attrs);
        }
        if let Some(span) = &mut self.span {
            let mut attrs = Vec::with_capacity(3);
            outcome_attrs(&outcome, error_type.as_deref(), &mut attrs);
            span.set_attributes(attrs);
            if error_type.is_some() {
                span.set_status(Status::error(outcome.description()));
            }
            span.end();
        }
    }
}

impl Drop for BackendSpan {
    fn drop(&mut self) {
        self.finish(Outcome::Failed {
            error_type: "cancelled",
        });
    }
}

/// The attributes a backend call's span and duration metric share.
fn client_attrs(call: &BackendCall<'_>) -> Vec<KeyValue> {
    let mut attrs = vec![KeyValue::new("mcp.method.name", call.method.to_string())];
    match call.target {
        Some(Target::Tool(t)) => {
            attrs.push(KeyValue::new("gen_ai.tool.name", t.to_string()));
            attrs.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        Some(Target::Prompt(p)) => {
            attrs.push(KeyValue::new("gen_ai.prompt.name", p.to_string()));
        }
        Some(Target::Resource(_)) | None => {}
    }
    match call.transport {
        BackendTransport::Http { address, port } => {
            attrs.push(KeyValue::new("network.transport", "tcp"));
            attrs.push(KeyValue::new("network.protocol.name", "http"));
            attrs.push(KeyValue::new("server.address", address.to_string()));
            attrs.push(KeyValue::new("server.port", i64::from(port)));
        }
        BackendTransport::Stdio => attrs.push(KeyValue::new("network.transport", "pipe")),
    }
    if let Some(v) = call.protocol_version {
        attrs.push(KeyValue::new("mcp.protocol.version", v.to_string()));
    }
    attrs.push(KeyValue::new("gatehouse.server", call.server.to_string()));
    attrs
}
