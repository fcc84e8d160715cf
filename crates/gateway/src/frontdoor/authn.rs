//! Authentication at the front door: every request to a virtual server with `auth` must carry a
//! valid bearer token; refusals carry the RFC 6750 / RFC 9728 challenge that tells an MCP
//! client where to get one. Also serves the protected-resource metadata documents.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_identity::{AuthFailure, Caller};

use super::request::{Refusal, RequestCtx};
use crate::snapshot::{Snapshot, VirtualServer};

/// Path prefix of RFC 9728 metadata documents.
pub const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// JSON-RPC code of authentication refusals (the HTTP status and challenge say the rest).
const UNAUTHORIZED: i64 = -32001;

/// The caller of a request to `vs`, or the refusal to send.
pub(super) async fn authenticate(
    snapshot: &Snapshot,
    vs: &VirtualServer,
    headers: &HeaderMap,
    query: Option<&str>,
    request_id: &str,
) -> Result<Caller, Refusal> {
    let Some(rs) = &vs.auth else {
        return Ok(Caller::anonymous());
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match rs.authenticate(authorization, query).await {
        Ok(caller) => {
            tracing::debug!(request_id, virtual_server = %vs.name, principal = %caller.principal.key(), "authenticated");
            Ok(caller)
        }
        Err(failure) => {
            // A client's first, token-less request is the normal start of the OAuth dance.
            if failure.refusal.reason == gatehouse_identity::Reason::MissingToken {
                tracing::info!(request_id, virtual_server = %vs.name, reason = failure.refusal.reason.code(), "request without a token refused");
            } else {
                tracing::warn!(request_id, virtual_server = %vs.name, reason = failure.refusal.reason.code(), detail = %crate::observe::shown(&failure.refusal.detail), status = failure.status, "request refused by authentication");
            }
            Err(refusal(snapshot, vs, headers, &failure))
        }
    }
}

/// Step-up check of a `tools/call` the table allowed: a caller lacking the scopes the tool's
/// server requires for it (per-tool `scopes`, by the server's own tool name) gets `403
/// insufficient_scope` naming them (RFC 6750 §3.1), so its client can ask for more. The tool
/// is the one the table resolved: a tool the caller cannot see never asks for a scope.
pub(super) fn check_tool_scopes(
    cx: &RequestCtx,
    tool: &crate::methods::Resolved,
) -> Result<(), Refusal> {
    let vs = &cx.vs;
    if vs.auth.is_none() {
        return Ok(());
    }
    let server = &vs.members[tool.member].server.config;
    let Some(needed) = server.scopes.get(&tool.original) else {
        return Ok(());
    };
    let missing = cx.caller.principal.missing_scopes(needed);
    if missing.is_empty() {
        return Ok(());
    }
    let mut scope: Vec<String> = vs
        .auth
        .as_ref()
        .map(|a| a.required_scopes().to_vec())
        .unwrap_or_default();
    for s in needed {
        if !scope.contains(s) {
            scope.push(s.clone());
        }
    }
    let failure = AuthFailure::insufficient_scope(&missing, scope);
    tracing::warn!(request_id = %cx.request_id, virtual_server = %vs.name, principal = %cx.caller.principal.key(), tool = %crate::observe::shown(&tool.exposed), reason = failure.refusal.reason.code(), "tool call refused: missing scope");
    Err(refusal(&cx.snapshot, vs, &cx.headers, &failure))
}

/// The refusal for an authentication or scope failure, with its challenge.
pub(crate) fn refusal(
    snapshot: &Snapshot,
    vs: &VirtualServer,
    headers: &HeaderMap,
    failure: &AuthFailure,
) -> Refusal {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let message = match failure.status {
        503 => format!(
            "Service unavailable: the identity provider's keys are not loaded ({})",
            failure.refusal.detail
        ),
        403 => format!("Forbidden: {}", failure.refusal.detail),
        _ => format!("Unauthorized: {}", failure.refusal.detail),
    };
    let mut r = Refusal::new(status, UNAUTHORIZED, message).reason(failure.refusal.reason.code());
    let metadata = metadata_url(snapshot, headers, &vs.path);
    if let Ok(v) = HeaderValue::from_str(&failure.challenge(&metadata)) {
        r = r.header(header::WWW_AUTHENTICATE, v);
    }
    if let Some(secs) = failure.retry_after {
        r = r.header(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// The absolute URL of `vs_path`'s metadata document: under `gateway.public_url` when set,
/// else the request's own Host (already checked against DNS rebinding).
fn metadata_url(snapshot: &Snapshot, headers: &HeaderMap, vs_path: &str) -> String {
    let gw = &snapshot.config.gateway;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&gw.listen);
    let base = crate::public_base(&snapshot.config, host);
    format!("{base}{METADATA_PREFIX}{vs_path}")
}

/// Serves `GET /.well-known/oauth-protected-resource[/<path>]`: the metadata of the virtual
/// server at `<path>`, or — at the bare root — of the only authenticated one.
pub(super) fn metadata(snapshot: &Arc<Snapshot>, path: &str) -> Option<Response> {
    let rest = path.strip_prefix(METADATA_PREFIX)?;
    let vs = if rest.is_empty() || rest == "/" {
        let mut authed = snapshot
            .virtual_servers
            .values()
            .filter(|v| v.auth.is_some());
        match (authed.next(), authed.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    } else {
        snapshot.virtual_servers.get(rest)
    };
    let Some(rs) = vs.and_then(|v| v.auth.as_ref()) else {
        return Some(
            (
                StatusCode::NOT_FOUND,
                "no protected resource here (endpoints without auth publish no metadata)\n",
            )
                .into_response(),
        );
    };
    Some(
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                // Browser-based MCP clients fetch this cross-origin.
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::CACHE_CONTROL, "max-age=300"),
            ],
            rs.metadata().to_string(),
        )
            .into_response(),
    )
}
