//! Ending a request: its audit event (written before the response is released), its span and
//! its metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::http::StatusCode;
use gatehouse_audit::{AuditEvent, EventKind, FailureKey, Outcome, ResultRecord};
use gatehouse_telemetry::{Outcome as SpanOutcome, RequestOutcome};
use gatehouse_wire::{ErrorObject, Id, Message, codes};

use super::RequestNote;

/// What a response tells the journal. The error message is kept whole here: the journal cuts
/// it (and every other recorded string) to `audit.max_field_bytes` with its length and digest.
pub(super) fn result_of(reply: &Message) -> ResultRecord {
    if let Some(e) = &reply.error {
        return ResultRecord {
            status: "error".into(),
            error_code: Some(e.code),
            error_message: Some(e.message.clone()),
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
    fn trace_id(&self) -> Option<String> {
        self.span
            .lock()
            .expect("span lock")
            .as_ref()
            .and_then(|s| s.trace_id())
            .or_else(|| self.header_trace.as_ref().map(|t| t.trace_id()))
    }

    /// The request's event. The note is ended once, so the larger facts (principal, client,
    /// arguments, decision) move into the event rather than being copied.
    fn event(&self, kind: EventKind, outcome: Outcome) -> AuditEvent {
        let trace_id = self.trace_id();
        let mut f = self.facts.lock().expect("request note lock");
        let mut e = AuditEvent::new(kind, outcome);
        e.request_id = Some(f.request_id.clone());
        e.principal = f.principal.take();
        e.client = Some(std::mem::take(&mut f.client));
        e.virtual_server = f.virtual_server.clone();
        e.server = f.server.clone();
        e.method = f
            .method
            .clone()
            .or_else(|| (!f.http_method.is_empty()).then(|| f.http_method.clone()));
        e.target = f.target.take();
        e.request_bytes = f.request_bytes;
        let arguments = std::mem::take(&mut f.arguments);
        e.arguments = arguments.value;
        e.arguments_digest = arguments.digest;
        e.latency_us = Some(self.started.elapsed().as_micros() as u64);
        e.policy = f.policy.take();
        e.trace_id = trace_id;
        e.session = f.session.take();
        e.reason = f.reason.take();
        e
    }

    /// Ends the span (or, without one, counts the request) with `outcome`.
    fn end_telemetry(&self, outcome: SpanOutcome<'_>) {
        match self.span.lock().expect("span lock").take() {
            Some(span) => span.end(outcome),
            None => {
                let f = self.facts.lock().expect("request note lock");
                let vs = f.virtual_server.as_deref().unwrap_or("");
                let method = f.method.as_deref().unwrap_or(&f.http_method);
                self.telemetry.metrics().request(
                    vs,
                    method,
                    outcome.label(),
                    self.started.elapsed(),
                );
                if outcome.label() == RequestOutcome::Error
                    && let Some(t) = outcome.error_type()
                {
                    self.telemetry.metrics().error(vs, method, &t);
                }
            }
        }
    }

    /// Writes `e`; false when it could not be written and the response must be withheld.
    async fn write(&self, e: &AuditEvent) -> bool {
        let Some(a) = &self.auditor else { return true };
        let metrics = self.telemetry.metrics();
        match a.journal.append(e).await {
            Ok(()) => {
                metrics.audit_event(e.outcome.as_str());
                true
            }
            Err(err) => {
                metrics.audit_write_error();
                tracing::error!(error = %err, request_id = e.request_id.as_deref().unwrap_or(""), "response withheld: its audit event could not be written");
                false
            }
        }
    }

    /// Ends a call that produced `reply`; when the journal refuses the event, `reply` becomes
    /// an error (the result is withheld rather than served unaudited).
    pub async fn finish_call(&self, reply: &mut Message) {
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        let result = result_of(reply);
        let denied = self
            .facts
            .lock()
            .expect("request note lock")
            .policy
            .as_ref()
            .is_some_and(|p| p.decision == "deny");
        let outcome = match (&reply.error, denied) {
            (Some(_), true) => Outcome::Denied,
            (Some(_), false) => Outcome::Error,
            (None, _) => Outcome::Ok,
        };
        let tool_error = result.status == "tool_error";
        let written = if self.auditor.is_some() {
            let mut e = self.event(EventKind::Request, outcome);
            e.result = Some(result);
            self.write(&e).await
        } else {
            true
        };
        match (&reply.error, denied) {
            (Some(err), true) => self.end_telemetry(SpanOutcome::Denied { code: err.code }),
            (Some(err), false) => self.end_telemetry(SpanOutcome::Error {
                code: err.code,
                message: &err.message,
            }),
            (None, _) if tool_error => self.end_telemetry(SpanOutcome::ToolError),
            (None, _) => self.end_telemetry(SpanOutcome::Ok),
        }
        if !written {
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
        if let Some(a) = &self.auditor {
            a.journal
                .append_detached(&self.event(EventKind::Request, Outcome::Cancelled));
        }
        self.end_telemetry(SpanOutcome::Failed {
            error_type: "cancelled",
        });
    }

    /// Ends a request the front door answered itself with `status`, unless the call's task
    /// owns it. Returns false when the journal refused the event and the response must not
    /// be released.
    pub async fn finish_response(&self, status: StatusCode) -> bool {
        if self.claimed.load(Ordering::Relaxed) || self.finished.swap(true, Ordering::Relaxed) {
            return true;
        }
        let (authenticated, not_a_request, method, http_method, error) = {
            let f = self.facts.lock().expect("request note lock");
            (
                f.principal.is_some(),
                f.not_a_request,
                f.method.clone(),
                f.http_method.clone(),
                f.error.clone(),
            )
        };
        // Notifications and responses from the client, and opened streams, are transport,
        // not requests: only their refusals are events.
        if (not_a_request || http_method == "GET") && status.is_success() {
            return true;
        }
        let outcome = match status.as_u16() {
            200..=299 => Outcome::Ok,
            401 => Outcome::Unauthenticated,
            403 => Outcome::Forbidden,
            500..=599 if authenticated => Outcome::Error,
            _ => Outcome::Rejected,
        };
        self.end_telemetry(match outcome {
            Outcome::Ok => SpanOutcome::Ok,
            Outcome::Unauthenticated => SpanOutcome::Unauthenticated,
            _ => match &error {
                Some((code, message)) if authenticated && status.is_server_error() => {
                    SpanOutcome::Error {
                        code: *code,
                        message,
                    }
                }
                _ => SpanOutcome::Rejected {
                    status: status.as_u16(),
                },
            },
        });
        let Some(auditor) = self.auditor.clone() else {
            return true;
        };
        let kind = match (method.as_deref(), http_method.as_str(), outcome) {
            (_, _, Outcome::Unauthenticated | Outcome::Forbidden) if !authenticated => {
                EventKind::AuthFailure
            }
            (Some("initialize"), _, Outcome::Ok) => EventKind::SessionStart,
            (_, "DELETE", Outcome::Ok) => EventKind::SessionEnd,
            _ => EventKind::Request,
        };
        // Before authentication anyone can send anything: identical failures are coalesced.
        let coalesce = (!authenticated && !status.is_success()).then(|| {
            let f = self.facts.lock().expect("request note lock");
            FailureKey {
                source: f.client.ip.clone().unwrap_or_default(),
                endpoint: f.endpoint.clone(),
                reason: f
                    .reason
                    .clone()
                    .unwrap_or_else(|| status.as_u16().to_string()),
            }
        });
        let mut e = self.event(kind, outcome);
        let (code, message) = error.unzip();
        e.result = Some(ResultRecord {
            status: if status.is_success() { "ok" } else { "error" }.into(),
            error_code: code,
            error_message: message,
            bytes: 0,
            http_status: Some(status.as_u16()),
        });
        if let Some(key) = coalesce {
            for e in auditor.coalescer.admit(key, e, Instant::now()) {
                auditor.journal.append_detached(&e);
            }
            return true;
        }
        self.write(&e).await
    }
}

/// Records the call as abandoned if its task ends (is aborted) before finishing it.
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
