//! The front door: one Streamable HTTP endpoint per virtual server serving both protocol eras.
//!
//! A POST is routed by what it carries: `initialize` or an `Mcp-Session-Id` selects the
//! handshake era (sealed sessions, SSE streams, server→client requests); a request whose `_meta`
//! names a protocol version is a stateless 2026-07-28 request (header validation, MRTR, cache
//! hints). GET opens a session's standalone stream; DELETE ends a session.

pub mod authn;
pub mod call;
pub mod guard;
mod handshake;
mod oauth;
mod post;
pub mod resume;
pub mod session;
pub mod sse;
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
    let response = crate::observe::scope(
        Some(note.clone()),
        handle(gw, parts, body, request_id.clone()),
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
            format!("no virtual server at {path}\n"),
        )
            .into_response();
    };
    crate::observe::note(|f| f.virtual_server = Some(vs.name.clone()));
    if let Err(reason) = gw.origin_policy.check(&parts.headers) {
        crate::observe::note(|f| f.reason = Some("origin_refused".into()));
        tracing::warn!(request_id, reason = %crate::observe::shown(&reason), "refused request (DNS rebinding protection)");
        return rpc_error(
            StatusCode::FORBIDDEN,
            Id::Null,
            ErrorObject::new(codes::INVALID_REQUEST, format!("Forbidden: {reason}")),
            &request_id,
        );
    }
    if gw.is_draining() {
        crate::observe::note(|f| f.reason = Some("draining".into()));
        return rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Id::Null,
            ErrorObject::new(codes::BACKEND_UNAVAILABLE, "the gateway is shutting down"),
            &request_id,
        );
    }
    let caller = match authn::authenticate(
        &snapshot,
        &vs,
        &parts.headers,
        parts.uri.query(),
        &request_id,
    )
    .await
    {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let mut caller = caller;
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
    if legacy_sse == Some(true) {
        return sse::open(gw, vs, &caller, &request_id);
    }
    match parts.method {
        Method::POST => {
            let limit = gw.max_body_bytes;
            let bytes = match axum::body::to_bytes(body, limit).await {
                Ok(b) => b,
                Err(_) => {
                    tracing::warn!(request_id, limit, "request body too large");
                    return rpc_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Id::Null,
                        ErrorObject::new(
                            codes::INVALID_REQUEST,
                            format!("request body exceeds the limit of {limit} bytes"),
                        ),
                        &request_id,
                    );
                }
            };
            if legacy_sse == Some(false) {
                return sse::message(
                    gw,
                    snapshot,
                    vs,
                    parts.uri.query(),
                    bytes,
                    caller,
                    request_id,
                )
                .await;
            }
            post::handle(gw, snapshot, vs, parts.headers, bytes, caller, request_id).await
        }
        Method::GET => stream::get(gw, vs, parts.headers, caller, request_id).await,
        Method::DELETE => stream::delete(gw, vs, parts.headers, caller, request_id).await,
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            [("allow", "GET, POST, DELETE")],
            Bytes::new(),
        )
            .into_response(),
    }
}
