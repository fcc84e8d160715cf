//! The front door: one Streamable HTTP endpoint per virtual server serving both protocol eras.
//!
//! A POST is routed by what it carries: `initialize` or an `Mcp-Session-Id` selects the
//! handshake era (sealed sessions, SSE streams, server→client requests); a request whose `_meta`
//! names a protocol version is a stateless 2026-07-28 request (header validation, MRTR, cache
//! hints). GET opens a session's standalone stream; DELETE ends a session.

pub mod authn;
mod authorize;
pub mod body;
pub mod call;
pub mod guard;
mod handshake;
mod listener;
pub mod mrtr;
mod oauth;
mod post;
mod pump;
pub mod request;
pub mod resume;
pub mod session;
pub mod sse;
mod stateless;
mod stream;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_wire::{ErrorObject, Id, codes};

use crate::Gateway;
use guard::rpc_error;
use request::{Refusal, RequestCtx};

/// Builds the HTTP router: health endpoints plus every virtual server's path.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(entry)
        .with_state(gw)
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let snap = gw.snapshot();
    (
        StatusCode::OK,
        format!(
            "ready: config version {}, {} virtual server(s)\n",
            snap.version,
            snap.virtual_servers.len()
        ),
    )
        .into_response()
}

fn new_request_id(headers: &HeaderMap) -> String {
    headers
        .get(guard::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()))
}

/// Every request to a virtual server: handled inside its audit note's scope, and released
/// only once its audit event is written.
async fn entry(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let request_id = new_request_id(&parts.headers);
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let arrival = crate::observe::Arrival {
        facts: crate::observe::Facts {
            request_id: request_id.clone(),
            endpoint: parts.uri.path().to_string(),
            http_method: parts.method.to_string(),
            client: gatehouse_audit::ClientRecord {
                ip: peer.map(|p| p.ip().to_string()),
                user_agent: header("user-agent").map(str::to_string),
                ..Default::default()
            },
            session: header(gatehouse_wire::headers::SESSION_ID)
                .map(crate::observe::session_digest),
            ..Default::default()
        },
        peer,
        header_trace: gatehouse_telemetry::context::from_headers(&parts.headers),
        protocol_version: header(gatehouse_wire::headers::PROTOCOL_VERSION).map(str::to_string),
    };
    let note = crate::observe::RequestNote::new(gw.audit.clone(), gw.telemetry.clone(), arrival);
    // Boxed: the request's future is several KiB, and unboxed it would be copied each time
    // axum and hyper move the future that holds it.
    let response = crate::observe::scope(
        Some(note.clone()),
        Box::pin(handle(gw, parts, body, request_id.clone())),
    )
    .await;
    if note.finish_response(response.status()).await {
        response
    } else {
        audit_refusal(&request_id, &note)
    }
}

/// The answer when a request's audit event cannot be written (`audit.on_failure: refuse`).
fn audit_refusal(request_id: &str, note: &crate::observe::RequestNote) -> Response {
    rpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        Id::Null,
        ErrorObject::new(
            codes::BACKEND_UNAVAILABLE,
            format!(
                "the audit journal cannot be written ({}); requests are refused until it can (audit.on_failure: refuse)",
                note.journal_error()
            ),
        ),
        request_id,
    )
}

/// Routes one HTTP request to its virtual server and front door: the protected-resource
/// metadata and OAuth callback first, then DNS-rebinding protection, draining, and
/// authentication (before any other work), then the transport by method and path.
async fn handle(
    gw: Arc<Gateway>,
    parts: axum::http::request::Parts,
    body: axum::body::Body,
    request_id: String,
) -> Response {
    let snapshot = gw.snapshot();
    // The legacy HTTP+SSE transport lives under the virtual server's path.
    let path = parts.uri.path();
    if parts.method == Method::GET {
        if let Some(resp) = authn::metadata(&snapshot, path) {
            return resp;
        }
        if path == gatehouse_identity::outbound::user_oauth::CALLBACK_PATH {
            return oauth::callback(&gw, parts.uri.query()).await;
        }
    }
    // `<endpoint>/.gatehouse/authorize/<server>` belongs to the endpoint (and its auth).
    let authorize = path
        .split_once(oauth::AUTHORIZE_SEGMENT)
        .filter(|_| parts.method == Method::GET);
    let path = authorize.map_or(path, |(vs_path, _)| vs_path);
    let (vs_path, legacy_sse) = match (path.strip_suffix("/sse"), path.strip_suffix("/message")) {
        (Some(base), _)
            if parts.method == Method::GET && !snapshot.virtual_servers.contains_key(path) =>
        {
            (base, Some(true))
        }
        (_, Some(base))
            if parts.method == Method::POST && !snapshot.virtual_servers.contains_key(path) =>
        {
            (base, Some(false))
        }
        _ => (path, None),
    };
    let Some(vs) = snapshot.virtual_servers.get(vs_path).cloned() else {
        crate::observe::note(|f| f.reason = Some("no_such_endpoint".into()));
        return (
            StatusCode::NOT_FOUND,
            format!("no virtual server at {}\n", crate::observe::shown(path)),
        )
            .into_response();
    };
    crate::observe::note(|f| f.virtual_server = Some(vs.name.clone()));
    if let Err(reason) = snapshot.origin_policy.check(&parts.uri, &parts.headers) {
        tracing::warn!(request_id, %reason, "refused request (DNS rebinding protection)");
        return Refusal::new(
            StatusCode::FORBIDDEN,
            codes::INVALID_REQUEST,
            format!("Forbidden: {reason}"),
        )
        .reason("origin_refused")
        .into_response(&request_id);
    }
    if gw.is_draining() {
        return Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::BACKEND_UNAVAILABLE,
            "the gateway is shutting down",
        )
        .reason("draining")
        .into_response(&request_id);
    }
    let mut caller = match authn::authenticate(
        &snapshot,
        &vs,
        &parts.headers,
        parts.uri.query(),
        &request_id,
    )
    .await
    {
        Ok(c) => c,
        Err(refusal) => return refusal.into_response(&request_id),
    };
    caller.source_ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    crate::observe::note(|f| {
        f.principal = Some(crate::observe::principal_record(&caller.principal))
    });
    if let Some(note) = crate::observe::current()
        && !note.journal_accepting()
    {
        return audit_refusal(&request_id, &note);
    }
    if let Some((_, server)) = authorize {
        return oauth::authorize(&vs, server, parts.uri.query(), &caller).await;
    }
    // A body is read (within its bounds) before anything looks at it.
    let bytes = if parts.method == Method::POST {
        match body::read(&snapshot.bodies, &parts, body, &request_id).await {
            Ok(b) => Some(b),
            Err(refusal) => return refusal,
        }
    } else {
        None
    };
    let cx = RequestCtx {
        gw,
        snapshot,
        vs,
        caller,
        headers: parts.headers,
        request_id,
    };
    match (parts.method, legacy_sse, bytes) {
        (Method::GET, Some(true), _) => sse::open(cx).await,
        (Method::POST, Some(false), Some(bytes)) => {
            sse::message(cx, parts.uri.query(), bytes).await
        }
        // Boxed like the request itself: constructed in place on the heap rather than
        // copied into this future's state.
        (Method::POST, _, Some(bytes)) => Box::pin(post::handle(cx, bytes)).await,
        (Method::GET, _, _) => stream::get(cx).await,
        (Method::DELETE, _, _) => stream::delete(cx).await,
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            [("allow", "GET, POST, DELETE")],
            Bytes::new(),
        )
            .into_response(),
    }
}
