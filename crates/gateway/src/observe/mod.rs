//! Audit and telemetry around the request path. Every request collects what it learns on the
//! way (caller, method, server, tool, arguments, policy decision) in a [`RequestNote`], and
//! ends exactly once: one audit event, one span (when tracing), one set of metrics. The call's
//! task ends it when the call ran; the front door ends it when it answered the request itself
//! (refusals, `initialize`, session ends). The response is released only after its audit
//! event is written.
//!
//! The note travels in a task-local, so the layers in between (dispatch, authz) add to it
//! without it being threaded through every signature; `call::start` carries it into the
//! call's own task.

mod finish;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_audit::{
    AuditEvent, ClientRecord, Coalescer, EventKind, Journal, Outcome, PolicyRecord,
    PrincipalRecord, RecordedArguments, TargetRecord,
};
use gatehouse_telemetry::{
    BackendCall, BackendSpan, BackendTransport, RequestInfo, RequestSpan, Target, Telemetry,
    TraceContext,
};
use gatehouse_wire::{Id, Message, MessageKind, meta};
use serde_json::Value;

pub use finish::CallGuard;
/// Bounds a client- or server-supplied value in a log line (see [`gatehouse_audit::bound`]).
pub use gatehouse_audit::bound::shown;

/// The journal and what the gateway adds around it.
#[derive(Debug)]
pub struct Auditor {
    journal: Journal,
    coalescer: Coalescer,
}

impl Auditor {
    /// Audits into `journal`, coalescing identical pre-authentication failures per `coalesce`.
    pub fn new(journal: Journal, coalesce: Duration) -> Arc<Auditor> {
        Arc::new(Auditor {
            journal,
            coalescer: Coalescer::new(coalesce),
        })
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Records a change of the configuration or the policy set (or a rejected one).
    pub fn change(&self, kind: EventKind, outcome: Outcome, reason: Option<String>, detail: Value) {
        let mut e = AuditEvent::new(kind, outcome);
        e.reason = reason;
        e.detail = Some(detail);
        self.journal.append_detached(&e);
    }

    /// Writes the counts of coalescing intervals that ended (called every second).
    pub fn flush_coalesced(&self) {
        for e in self.coalescer.due(Instant::now()) {
            self.journal.append_detached(&e);
        }
    }

    /// Writes every open coalescing count and closes the journal (fsync, final checkpoint).
    pub async fn shutdown(&self) {
        for e in self.coalescer.drain() {
            self.journal.append_detached(&e);
        }
        if let Err(e) = self.journal.close().await {
            tracing::error!(error = %e, "audit journal did not close cleanly");
        }
    }
}

tokio::task_local! {
    static NOTE: Arc<RequestNote>;
}

/// What one request has revealed so far.
#[derive(Debug, Default)]
pub struct Facts {
    /// The gateway's request id.
    pub request_id: String,
    /// The endpoint path.
    pub endpoint: String,
    /// The virtual server, once routed.
    pub virtual_server: Option<String>,
    /// `POST`, `GET`, `DELETE`.
    pub http_method: String,
    /// The caller, once authenticated.
    pub principal: Option<PrincipalRecord>,
    /// Client program and connection.
    pub client: ClientRecord,
    /// The JSON-RPC method.
    pub method: Option<String>,
    /// A notification or response from the client: not a request, no event.
    pub not_a_request: bool,
    /// The backend server.
    pub server: Option<String>,
    /// The tool, prompt or resource.
    pub target: Option<TargetRecord>,
    /// Bytes of the request body.
    pub request_bytes: Option<u64>,
    /// Recorded arguments.
    pub arguments: RecordedArguments,
    /// The policy decision.
    pub policy: Option<PolicyRecord>,
    /// Digest of the session id.
    pub session: Option<String>,
    /// Why the request was refused (a stable reason code).
    pub reason: Option<String>,
    /// The JSON-RPC error the front door answered with.
    pub error: Option<(i64, String)>,
}

/// What the front door knows of the connection when a request arrives.
#[derive(Debug, Default)]
pub struct Arrival {
    /// The facts known so far.
    pub facts: Facts,
    /// The client's socket address.
    pub peer: Option<SocketAddr>,
    /// The trace context of the HTTP headers.
    pub header_trace: Option<TraceContext>,
    /// `MCP-Protocol-Version`, when sent.
    pub protocol_version: Option<String>,
}

/// One request's audit record and telemetry in the making.
#[derive(Debug)]
pub struct RequestNote {
    auditor: Option<Arc<Auditor>>,
    telemetry: Telemetry,
    started: Instant,
    facts: Mutex<Facts>,
    span: Mutex<Option<RequestSpan>>,
    peer: Option<SocketAddr>,
    header_trace: Option<TraceContext>,
    protocol_version: Option<String>,
    claimed: AtomicBool,
    finished: AtomicBool,
}

/// A short digest of a session id (the id itself lets its holder use the session).
pub fn session_digest(id: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(id.as_bytes())[..8])
}

/// Adds to the current request's facts (nothing outside a request).
pub fn note(f: impl FnOnce(&mut Facts)) {
    let _ = NOTE.try_with(|n| f(&mut n.facts.lock().expect("request note lock")));
}

/// The current request's id (for error messages and log lines), outside a request `None`.
pub fn request_id() -> Option<String> {
    NOTE.try_with(|n| {
        n.facts
            .lock()
            .expect("request note lock")
            .request_id
            .clone()
    })
    .ok()
}

/// The current request's note.
pub fn current() -> Option<Arc<RequestNote>> {
    NOTE.try_with(Arc::clone).ok()
}

/// Runs `fut` with `note` as the current request's note.
///
/// A plain function returning either future, not an `async fn`: an `async fn` wrapper keeps
/// both its `fut` argument and the scoped future in its state, doubling the size of every
/// request's future (and the bytes moved each time it is moved or spawned).
pub fn scope<F: std::future::Future>(
    note: Option<Arc<RequestNote>>,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    match note {
        Some(n) => futures::future::Either::Left(NOTE.scope(n, fut)),
        None => futures::future::Either::Right(fut),
    }
}

/// Records what a client message of `bytes` bytes says about the request (method, whether it is a request at
/// all) and, for a request, starts its span with the trace context of its `_meta` (or of the
/// HTTP headers).
pub fn message(msg: &Message, bytes: usize) {
    let _ = NOTE.try_with(|n| {
        let is_request = msg.kind() == MessageKind::Request;
        let (vs, session) = {
            let mut f = n.facts.lock().expect("request note lock");
            f.method = msg.method.clone();
            f.request_bytes = Some(bytes as u64);
            f.not_a_request = !is_request;
            (
                f.virtual_server.clone().unwrap_or_default(),
                f.session.clone(),
            )
        };
        if !is_request {
            return;
        }
        let meta = msg.meta();
        let parent = meta
            .and_then(gatehouse_telemetry::context::from_meta)
            .or_else(|| n.header_trace.clone());
        let version = meta
            .and_then(|m| m.get(meta::PROTOCOL_VERSION))
            .and_then(Value::as_str)
            .or(n.protocol_version.as_deref());
        let id = match &msg.id {
            Some(Id::Number(n)) => Some(n.to_string()),
            Some(Id::String(s)) => Some(s.clone()),
            _ => None,
        };
        let span = n.telemetry.request(RequestInfo {
            virtual_server: &vs,
            method: msg.method(),
            request_id: id.as_deref(),
            session_id: session.as_deref(),
            protocol_version: version,
            client_address: n.peer,
            http_version: None,
            parent,
            transport_context: n.header_trace.clone(),
        });
        *n.span.lock().expect("span lock") = Some(span);
    });
}

/// The tool, prompt or resource a request is about (for the journal and the span), with
/// what a tool does (`read`, `write`, `delete`, `execute`; the anomaly detectors watch first
/// uses of `delete`).
pub fn target(kind: &'static str, name: &str, operation: Option<&'static str>) {
    let _ = NOTE.try_with(|n| {
        n.facts.lock().expect("request note lock").target = Some(TargetRecord {
            kind: kind.into(),
            name: name.to_string(),
            operation: operation.map(str::to_string),
        });
        if let Some(span) = n.span.lock().expect("span lock").as_mut() {
            span.set_target(match kind {
                "tool" => Target::Tool(name),
                "prompt" => Target::Prompt(name),
                _ => Target::Resource(name),
            });
        }
    });
}

/// The member server that serves the request.
pub fn server(name: &str) {
    let _ = NOTE.try_with(|n| {
        n.facts.lock().expect("request note lock").server = Some(name.to_string());
        if let Some(span) = n.span.lock().expect("span lock").as_mut() {
            span.set_server(name);
        }
    });
}

/// A policy decision about the request.
pub fn decision(d: &gatehouse_policy::Decision) {
    let _ = NOTE.try_with(|n| {
        n.telemetry.metrics().policy_decision(d.allowed);
        n.facts.lock().expect("request note lock").policy = Some(policy_record(d));
    });
}

/// Starts the span of a call to `server` (a child of the request's span) when there is a
/// trace to continue: the caller injects its context into the upstream `_meta`.
pub fn backend_call(
    server: &crate::snapshot::ServerHandle,
    method: &str,
    original_name: Option<&str>,
) -> Option<BackendSpan> {
    NOTE.try_with(|n| {
        let span = n.span.lock().expect("span lock");
        let span = span.as_ref()?;
        let transport = match &server.endpoint {
            Some((host, port)) => BackendTransport::Http {
                address: host,
                port: *port,
            },
            None => BackendTransport::Stdio,
        };
        let target = original_name.map(|name| match method {
            "prompts/get" => Target::Prompt(name),
            "resources/read" => Target::Resource(name),
            _ => Target::Tool(name),
        });
        Some(span.backend(BackendCall {
            server: &server.config.name,
            method,
            target,
            transport,
            request_id: None,
            protocol_version: None,
        }))
    })
    .ok()
    .flatten()
}

/// Records a call's arguments with `recorder`, honouring the decision's `@redact`
/// obligations; nothing when the request is not audited.
pub fn arguments(recorder: &gatehouse_audit::ArgumentRecorder, arguments: Option<&Value>) {
    let _ = NOTE.try_with(|n| {
        if n.auditor.is_none() {
            return;
        }
        let mut f = n.facts.lock().expect("request note lock");
        let redact: Vec<String> = f
            .policy
            .iter()
            .flat_map(|p| &p.obligations)
            .filter_map(|o| o.strip_prefix("redact:"))
            .map(str::to_string)
            .collect();
        f.arguments = recorder.record(arguments, &redact);
    });
}

/// Puts a backend call's trace context into the upstream request: `_meta` (SEP-414) for
/// every backend, and the headers of HTTP backends (the returned client context).
pub fn trace_upstream(
    span: &BackendSpan,
    params: &mut Option<Value>,
    client: &crate::backend::ClientContext,
) -> Option<crate::backend::ClientContext> {
    let trace = span.context()?;
    let params = params.get_or_insert_with(|| Value::Object(Default::default()));
    if let Some(p) = params.as_object_mut() {
        let m = p
            .entry("_meta")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(m) = m.as_object_mut() {
            gatehouse_telemetry::inject_meta(m, &trace);
        }
    }
    let mut c = client.clone();
    c.extra_headers
        .push((meta::TRACEPARENT.into(), trace.traceparent()));
    if let Some(state) = trace.tracestate() {
        c.extra_headers
            .push((meta::TRACESTATE.into(), state.to_string()));
    }
    Some(c)
}

/// Ends a backend call's span and records whether the backend answered (`backend_up`).
pub fn backend_result(
    server: &str,
    span: Option<BackendSpan>,
    result: &Result<Message, crate::backend::BackendError>,
) {
    use crate::backend::BackendError as E;
    let _ = NOTE.try_with(|n| {
        // Only a transport failure says the backend is down; errors it answered with do not.
        let up = !matches!(
            result,
            Err(E::Unavailable { .. } | E::Timeout { .. } | E::HttpStatus { .. })
        );
        n.telemetry.metrics().set_backend_up(server, up);
    });
    let Some(span) = span else { return };
    match result {
        Ok(m) => match &m.error {
            Some(e) => span.end(gatehouse_telemetry::Outcome::Error {
                code: e.code,
                message: &e.message,
            }),
            None => span.end(gatehouse_telemetry::Outcome::Ok),
        },
        Err(E::Timeout { .. }) => span.end(gatehouse_telemetry::Outcome::Failed {
            error_type: "timeout",
        }),
        Err(_) => span.end(gatehouse_telemetry::Outcome::Failed {
            error_type: "backend_unavailable",
        }),
    }
}

/// The principal as the journal records it.
pub fn principal_record(p: &gatehouse_identity::Principal) -> PrincipalRecord {
    PrincipalRecord {
        kind: p.kind.as_str().to_string(),
        subject: p.subject.clone(),
        issuer: p.issuer.clone(),
        email: p.email.clone(),
        tenant: p.tenant.clone(),
        groups: p.groups.clone(),
        client_id: p.client_id.clone(),
    }
}

/// The decision as the journal records it.
pub fn policy_record(d: &gatehouse_policy::Decision) -> PolicyRecord {
    PolicyRecord {
        decision: if d.allowed { "allow" } else { "deny" }.into(),
        policies: d.policies.clone(),
        version: d.version.to_string(),
        engine: d.engine.to_string(),
        reason: d.reason.clone(),
        obligations: d
            .obligations
            .iter()
            .map(|o| format!("{}:{}", o.kind, o.target))
            .collect(),
    }
}

impl RequestNote {
    /// A note for a request that just arrived.
    pub fn new(
        auditor: Option<Arc<Auditor>>,
        telemetry: Telemetry,
        arrival: Arrival,
    ) -> Arc<RequestNote> {
        Arc::new(RequestNote {
            auditor,
            telemetry,
            started: Instant::now(),
            facts: Mutex::new(arrival.facts),
            span: Mutex::new(None),
            peer: arrival.peer,
            header_trace: arrival.header_trace,
            protocol_version: arrival.protocol_version,
            claimed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        })
    }

    /// The call's task takes over ending the request.
    pub fn claim(&self) {
        self.claimed.store(true, Ordering::Relaxed);
    }

    /// False while the journal refuses writes (calls must be refused, `on_failure: refuse`).
    pub fn journal_accepting(&self) -> bool {
        self.auditor.as_ref().is_none_or(|a| a.journal.accepting())
    }

    /// The journal's last error.
    pub fn journal_error(&self) -> String {
        self.auditor
            .as_ref()
            .and_then(|a| a.journal.last_error())
            .unwrap_or_else(|| "unknown error".into())
    }
}
