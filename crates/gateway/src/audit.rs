//! The request path's audit step: every request collects what it learns on the way (caller,
//! method, server, tool, arguments, policy decision) in a [`RequestNote`], and exactly one
//! event is written for it — by the call's task when the call ran, by the front door when the
//! request was answered before (refusals, `initialize`, session ends). The response is
//! released only after its event is written.
//!
//! The note travels in a task-local, so the layers in between (dispatch, authz) add to it
//! without it being threaded through every signature; `call::start` carries it into the call's
//! own task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use gatehouse_audit::{
    AuditEvent, ClientRecord, Coalescer, EventKind, FailureKey, Journal, Outcome, PolicyRecord,
    PrincipalRecord, RecordedArguments, ResultRecord, TargetRecord,
};
use gatehouse_wire::{ErrorObject, Id, Message, MessageKind, codes, meta};
use serde_json::Value;

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
    /// Recorded arguments.
    pub arguments: RecordedArguments,
    /// The policy decision.
    pub policy: Option<PolicyRecord>,
    /// W3C trace id.
    pub trace_id: Option<String>,
    /// Digest of the session id.
    pub session: Option<String>,
    /// Why the request was refused (a stable reason code).
    pub reason: Option<String>,
    /// The JSON-RPC error the front door answered with.
    pub error: Option<(i64, String)>,
}

/// One request's audit record in the making.
#[derive(Debug)]
pub struct RequestNote {
    auditor: Arc<Auditor>,
    started: Instant,
    facts: Mutex<Facts>,
    claimed: AtomicBool,
    finished: AtomicBool,
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), if valid.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    let valid_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (valid_hex(version, 2)
        && version != "ff"
        && valid_hex(trace, 32)
        && valid_hex(span, 16)
        && trace.bytes().any(|b| b != b'0'))
    .then(|| trace.to_string())
}

/// A short digest of a session id (the id itself lets its holder use the session).
pub fn session_digest(id: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(id.as_bytes())[..8])
}

/// Adds to the current request's facts (nothing outside a request).
pub fn note(f: impl FnOnce(&mut Facts)) {
    let _ = NOTE.try_with(|n| f(&mut n.facts.lock().expect("audit note lock")));
}

/// The current request's note.
pub fn current() -> Option<Arc<RequestNote>> {
    NOTE.try_with(Arc::clone).ok()
}

/// Runs `fut` with `note` as the current request's note.
pub async fn scope<F: std::future::Future>(note: Option<Arc<RequestNote>>, fut: F) -> F::Output {
    match note {
        Some(n) => NOTE.scope(n, fut).await,
        None => fut.await,
    }
}

/// Records what a client message says about the request: method, whether it is a request at
/// all, the target and the trace context in `_meta`.
pub fn message(msg: &Message) {
    note(|f| {
        f.method = msg.method.clone();
        f.not_a_request = msg.kind() != MessageKind::Request;
        if let Some(tp) = msg
            .meta()
            .and_then(|m| m.get(meta::TRACEPARENT))
            .and_then(Value::as_str)
            .and_then(trace_id_of)
        {
            f.trace_id = Some(tp);
        }
    });
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

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// What a response tells the journal.
fn result_of(reply: &Message) -> ResultRecord {
    if let Some(e) = &reply.error {
        return ResultRecord {
            status: "error".into(),
            error_code: Some(e.code),
            error_message: Some(truncate(&e.message, 256)),
            bytes: reply.to_bytes().len() as u64,
            http_status: None,
        };
    }
    let raw = reply.result.as_ref().map_or("", |r| r.get());
    #[derive(serde::Deserialize)]
    struct Flags {
        #[serde(default, rename = "isError")]
        is_error: bool,
        #[serde(default, rename = "resultType")]
        result_type: Option<String>,
    }
    // Most results say neither; parse only when they might.
    let flags = (raw.contains("isError") || raw.contains("input_required"))
        .then(|| serde_json::from_str::<Flags>(raw).ok())
        .flatten();
    let status = match flags {
        Some(f) if f.is_error => "tool_error",
        Some(f) if f.result_type.as_deref() == Some("input_required") => "input_required",
        _ => "ok",
    };
    ResultRecord {
        status: status.into(),
        error_code: None,
        error_message: None,
        bytes: raw.len() as u64,
        http_status: None,
    }
}

impl RequestNote {
    /// A note for a request that just arrived.
    pub fn new(auditor: Arc<Auditor>, facts: Facts) -> Arc<RequestNote> {
        Arc::new(RequestNote {
            auditor,
            started: Instant::now(),
            facts: Mutex::new(facts),
            claimed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        })
    }

    /// The call's task takes over writing the event.
    pub fn claim(&self) {
        self.claimed.store(true, Ordering::Relaxed);
    }

    /// False while the journal refuses writes (calls must be refused, `on_failure: refuse`).
    pub fn journal_accepting(&self) -> bool {
        self.auditor.journal.accepting()
    }

    /// The journal's last error.
    pub fn journal_error(&self) -> String {
        self.auditor
            .journal
            .last_error()
            .unwrap_or_else(|| "unknown error".into())
    }

    fn event(&self, kind: EventKind, outcome: Outcome) -> AuditEvent {
        let f = self.facts.lock().expect("audit note lock");
        let mut e = AuditEvent::new(kind, outcome);
        e.request_id = Some(f.request_id.clone());
        e.principal = f.principal.clone();
        e.client = Some(f.client.clone());
        e.virtual_server = f.virtual_server.clone();
        e.server = f.server.clone();
        e.method = f
            .method
            .clone()
            .or_else(|| (!f.http_method.is_empty()).then(|| f.http_method.clone()));
        e.target = f.target.clone();
        e.arguments = f.arguments.value.clone();
        e.arguments_digest = f.arguments.digest.clone();
        e.latency_us = Some(self.started.elapsed().as_micros() as u64);
        e.policy = f.policy.clone();
        e.trace_id = f.trace_id.clone();
        e.session = f.session.clone();
        e.reason = f.reason.clone();
        e
    }

    /// Writes the event of a call that produced `reply`; when the journal refuses the write,
    /// `reply` becomes an error (the result is withheld rather than served unaudited).
    pub async fn finish_call(&self, reply: &mut Message) {
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        let result = result_of(reply);
        let denied = self
            .facts
            .lock()
            .expect("audit note lock")
            .policy
            .as_ref()
            .is_some_and(|p| p.decision == "deny");
        let outcome = match (&reply.error, denied) {
            (Some(_), true) => Outcome::Denied,
            (Some(_), false) => Outcome::Error,
            (None, _) => Outcome::Ok,
        };
        let mut e = self.event(EventKind::Request, outcome);
        e.result = Some(result);
        if let Err(err) = self.auditor.journal.append(&e).await {
            tracing::error!(error = %err, request_id = e.request_id.as_deref().unwrap_or(""), "response withheld: its audit event could not be written");
            *reply = Message::error(
                reply.id.clone().unwrap_or(Id::Null),
                ErrorObject::new(
                    codes::INTERNAL_ERROR,
                    "the audit journal cannot be written, so the result is withheld (audit.on_failure: refuse); the gateway log has the cause",
                ),
            );
        }
    }

    /// Records a call that ended without a response (its client went away): written without
    /// waiting, from a destructor.
    pub fn abandon(&self) {
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        let e = self.event(EventKind::Request, Outcome::Cancelled);
        self.auditor.journal.append_detached(&e);
    }

    /// Writes the event of a request the front door answered itself (`status`), unless the
    /// call's task owns it. Returns false when the journal refused the write and the response
    /// must not be released.
    pub async fn finish_response(&self, status: StatusCode) -> bool {
        if self.claimed.load(Ordering::Relaxed) || self.finished.swap(true, Ordering::Relaxed) {
            return true;
        }
        let (authenticated, not_a_request, method, http_method, error) = {
            let f = self.facts.lock().expect("audit note lock");
            (
                f.principal.is_some(),
                f.not_a_request,
                f.method.clone(),
                f.http_method.clone(),
                f.error.clone(),
            )
        };
        if not_a_request && status.is_success() {
            return true;
        }
        // Opening a stream is transport, not a request: only refusals are events.
        if http_method == "GET" && status.is_success() {
            return true;
        }
        let outcome = match status.as_u16() {
            200..=299 => Outcome::Ok,
            401 => Outcome::Unauthenticated,
            403 => Outcome::Forbidden,
            500..=599 if authenticated => Outcome::Error,
            _ => Outcome::Rejected,
        };
        let kind = match (method.as_deref(), http_method.as_str(), outcome) {
            (_, _, Outcome::Unauthenticated | Outcome::Forbidden) if !authenticated => {
                EventKind::AuthFailure
            }
            (Some("initialize"), _, Outcome::Ok) => EventKind::SessionStart,
            (_, "DELETE", Outcome::Ok) => EventKind::SessionEnd,
            _ => EventKind::Request,
        };
        let mut e = self.event(kind, outcome);
        let (code, message) = error.unzip();
        e.result = Some(ResultRecord {
            status: if status.is_success() { "ok" } else { "error" }.into(),
            error_code: code,
            error_message: message.map(|m| truncate(&m, 256)),
            bytes: 0,
            http_status: Some(status.as_u16()),
        });
        if !authenticated && !status.is_success() {
            // Before authentication anyone can send anything: coalesce identical failures.
            let key = {
                let f = self.facts.lock().expect("audit note lock");
                FailureKey {
                    source: f.client.ip.clone().unwrap_or_default(),
                    endpoint: f.endpoint.clone(),
                    reason: f
                        .reason
                        .clone()
                        .unwrap_or_else(|| status.as_u16().to_string()),
                }
            };
            let events = self.auditor.coalescer.admit(key, e, Instant::now());
            for e in &events {
                self.auditor.journal.append_detached(e);
            }
            return true;
        }
        match self.auditor.journal.append(&e).await {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(error = %err, "response withheld: its audit event could not be written");
                false
            }
        }
    }
}

/// Records the call as abandoned if its task ends (is aborted) before writing its event.
#[derive(Debug)]
pub struct CallGuard(pub Arc<RequestNote>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_only_from_valid_traceparents() {
        assert_eq!(
            trace_id_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn results_are_classified_without_parsing_plain_ones() {
        let ok = Message::parse(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#).unwrap();
        assert_eq!(result_of(&ok).status, "ok");
        let tool_error =
            Message::parse(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError": true}}"#)
                .unwrap();
        assert_eq!(result_of(&tool_error).status, "tool_error");
        let err = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: x"}}"#,
        )
        .unwrap();
        let r = result_of(&err);
        assert_eq!((r.status.as_str(), r.error_code), ("error", Some(-32602)));
    }
}
