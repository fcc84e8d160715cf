//! What every step of the front door shares: the request's context, and the one refusal type
//! every HTTP-level rejection is made of.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use gatehouse_identity::Caller;
use gatehouse_wire::{ErrorObject, Id};
use serde_json::Value;

use super::guard::rpc_error;
use crate::Gateway;
use crate::snapshot::{Snapshot, VirtualServer};

/// One HTTP request to a virtual server, once routed and authenticated: everything the steps
/// after authentication need, fixed for the request's life.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The gateway.
    pub gw: Arc<Gateway>,
    /// The snapshot the request is served against (invariant 1).
    pub snapshot: Arc<Snapshot>,
    /// The virtual server the request is for.
    pub vs: Arc<VirtualServer>,
    /// Who is calling.
    pub caller: Caller,
    /// The request's HTTP headers.
    pub headers: HeaderMap,
    /// The gateway's id of this request (logs, audit, `x-request-id`).
    pub request_id: String,
}

impl RequestCtx {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// True when the client accepts an SSE response.
    pub fn accepts_sse(&self) -> bool {
        self.header(axum::http::header::ACCEPT.as_str())
            .is_some_and(|a| a.contains("text/event-stream") || a.contains("*/*"))
    }
}

/// An HTTP-level rejection: a status, the JSON-RPC error in the body (with the request id
/// added when rendered), extra headers, and the stable reason code the audit event records.
/// Boxed: refusals are the rare path, and every step returns `Result<_, Refusal>`.
#[derive(Debug)]
pub struct Refusal(Box<Parts>);

#[derive(Debug)]
struct Parts {
    status: StatusCode,
    id: Id,
    error: ErrorObject,
    headers: Vec<(HeaderName, HeaderValue)>,
    reason: Option<&'static str>,
}

impl Refusal {
    /// A refusal with `status` and a JSON-RPC error.
    pub fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Refusal {
        Refusal::error(status, ErrorObject::new(code, message))
    }

    /// A refusal carrying a prepared JSON-RPC error.
    pub fn error(status: StatusCode, error: ErrorObject) -> Refusal {
        Refusal(Box::new(Parts {
            status,
            id: Id::Null,
            error,
            headers: Vec::new(),
            reason: None,
        }))
    }

    /// The JSON-RPC id of the request refused.
    pub fn id(mut self, id: Id) -> Refusal {
        self.0.id = id;
        self
    }

    /// Structured detail for the client.
    pub fn data(mut self, data: Value) -> Refusal {
        self.0.error.data = Some(data);
        self
    }

    /// An extra response header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Refusal {
        self.0.headers.push((name, value));
        self
    }

    /// The stable reason code recorded in the request's audit event.
    pub fn reason(mut self, reason: &'static str) -> Refusal {
        self.0.reason = Some(reason);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The response, tagged with `request_id`.
    pub fn into_response(self, request_id: &str) -> Response {
        let p = *self.0;
        if let Some(reason) = p.reason {
            crate::observe::note(|f| f.reason = Some(reason.into()));
        }
        let mut resp = rpc_error(p.status, p.id, p.error, request_id);
        for (name, value) in p.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}
