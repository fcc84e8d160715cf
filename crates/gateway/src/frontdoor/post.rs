//! POST: one JSON-RPC message from a client of either era.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gatehouse_wire::{
    Era, ErrorObject, Id, Message, MessageKind, ProtocolVersion, codes, headers as h, meta, sse,
};
use serde_json::{Value, json};

use super::call::{self, CallStream, Step};
use super::guard::{REQUEST_ID, rpc_error};
use super::handshake::{self, Handled};
use super::session::Session;
use crate::Gateway;
use crate::backend::ClientContext;
use crate::dispatch::CallCtx;
use crate::snapshot::{Snapshot, VirtualServer};
use gatehouse_identity::Caller;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn accepts_sse(headers: &HeaderMap) -> bool {
    header(headers, header::ACCEPT.as_str())
        .is_some_and(|a| a.contains("text/event-stream") || a.contains("*/*"))
}

pub(super) async fn handle(
    gw: Arc<Gateway>,
    snapshot: Arc<Snapshot>,
    vs: Arc<crate::snapshot::VirtualServer>,
    headers: HeaderMap,
    body: Bytes,
    caller: Caller,
    request_id: String,
) -> Response {
    let msg = match Message::parse(&body) {
        Ok(m) => m,
        Err(e) => {
            crate::observe::note(|f| f.reason = Some("malformed".into()));
            tracing::warn!(request_id, error = %e, "malformed JSON-RPC message");
            crate::metrics::REJECTED_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return rpc_error(
                StatusCode::BAD_REQUEST,
                e.id(),
                e.to_error_object(),
                &request_id,
            );
        }
    };
    crate::observe::message(&msg, body.len());
    if let Some(refusal) =
        super::authn::check_tool_scopes(&snapshot, &vs, &headers, &msg, &caller, &request_id)
    {
        return refusal;
    }
    let id = msg.id.clone().unwrap_or(Id::Null);
    let modern_version = msg
        .meta()
        .and_then(|m| m.get(meta::PROTOCOL_VERSION))
        .and_then(Value::as_str)
        .map(str::to_string);
    let session_id = header(&headers, h::SESSION_ID).map(str::to_string);

    if msg.method() == "initialize" && modern_version.is_none() {
        return initialize(&gw, &vs, msg, &caller, &request_id).await;
    }
    if let Some(version) = modern_version.or_else(|| {
        header(&headers, h::PROTOCOL_VERSION)
            .filter(|v| *v == "2026-07-28")
            .map(str::to_string)
    }) {
        return stateless(gw, snapshot, vs, headers, msg, version, caller, request_id).await;
    }
    let Some(session_id) = session_id else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            ErrorObject::new(
                codes::BACKEND_UNAVAILABLE,
                "Bad Request: send initialize first (or the Mcp-Session-Id header), or use protocol 2026-07-28 with _meta",
            ),
            &request_id,
        );
    };
    let session = match gw
        .sessions
        .get(&gw.keys, &session_id, &vs.path, &caller)
        .await
    {
        Ok(s) => s,
        Err(refused) => {
            return rpc_error(
                StatusCode::NOT_FOUND,
                id,
                ErrorObject::new(codes::INVALID_REQUEST, refused.to_string()),
                &request_id,
            );
        }
    };
    if let Some(v) = header(&headers, h::PROTOCOL_VERSION)
        && v.parse::<ProtocolVersion>().is_err()
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            ErrorObject::with_data(
                codes::INVALID_REQUEST,
                format!("Bad Request: unsupported protocol version {v}"),
                json!({"supported": ProtocolVersion::supported_strings(), "requested": v}),
            ),
            &request_id,
        );
    }
    legacy(gw, snapshot, vs, headers, msg, session, caller, request_id).await
}

async fn initialize(
    gw: &Gateway,
    vs: &VirtualServer,
    msg: Message,
    caller: &Caller,
    request_id: &str,
) -> Response {
    let info = msg.params.as_ref().and_then(|p| p.get("clientInfo"));
    let text = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (name, version) = (text("name"), text("version"));
    crate::observe::note(|f| {
        f.client.name = name;
        f.client.version = version;
    });
    let (session, reply) = match handshake::open_session(gw, vs, msg, caller, request_id).await {
        Ok(ok) => ok,
        Err((id, e)) => return rpc_error(StatusCode::BAD_REQUEST, id, e, request_id),
    };
    crate::observe::note(|f| f.session = Some(crate::observe::session_digest(&session.id)));
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        reply.to_bytes(),
    )
        .into_response();
    resp.headers_mut().insert(
        h::SESSION_ID,
        HeaderValue::from_str(&session.id).expect("sealed ids are ASCII"),
    );
    resp
}

#[allow(clippy::too_many_arguments)]
async fn legacy(
    gw: Arc<Gateway>,
    snapshot: Arc<Snapshot>,
    vs: Arc<VirtualServer>,
    headers: HeaderMap,
    msg: Message,
    session: Arc<Session>,
    caller: Caller,
    request_id: String,
) -> Response {
    match handshake::handle(
        snapshot,
        vs,
        msg,
        session,
        &caller,
        accepts_sse(&headers),
        &request_id,
    )
    .await
    {
        Handled::Accepted => StatusCode::ACCEPTED.into_response(),
        Handled::Rejected(id, e) => rpc_error(StatusCode::BAD_REQUEST, id, e, &request_id),
        Handled::Call(stream) => respond(gw, stream, request_id, Era::Handshake).await,
        Handled::Reply(m) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            m.to_bytes(),
        )
            .into_response(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn stateless(
    gw: Arc<Gateway>,
    snapshot: Arc<Snapshot>,
    vs: Arc<VirtualServer>,
    headers: HeaderMap,
    msg: Message,
    version: String,
    caller: Caller,
    request_id: String,
) -> Response {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let bad = |code: i64, message: String, data: Option<Value>| {
        let err = match data {
            Some(d) => ErrorObject::with_data(code, message, d),
            None => ErrorObject::new(code, message),
        };
        rpc_error(StatusCode::BAD_REQUEST, id.clone(), err, &request_id)
    };
    // Order matters: a header that disagrees with the body is -32020 before anything else.
    let meta_version = msg
        .meta()
        .and_then(|m| m.get(meta::PROTOCOL_VERSION))
        .and_then(Value::as_str);
    match (header(&headers, h::PROTOCOL_VERSION), meta_version) {
        (Some(hv), Some(mv)) if hv != mv => {
            return bad(
                codes::HEADER_MISMATCH,
                format!(
                    "MCP-Protocol-Version header {hv:?} does not match _meta protocolVersion {mv:?}"
                ),
                None,
            );
        }
        (None, _) => {
            return bad(
                codes::HEADER_MISMATCH,
                "MCP-Protocol-Version header is required".into(),
                None,
            );
        }
        (Some(_), None) if msg.kind() == MessageKind::Request => {
            return bad(
                codes::INVALID_PARAMS,
                format!(
                    "_meta[\"{}\"] is required on every request",
                    meta::PROTOCOL_VERSION
                ),
                None,
            );
        }
        _ => {}
    }
    match version.parse::<ProtocolVersion>() {
        Ok(v) if v.era() == Era::Stateless => {}
        _ => {
            return bad(
                codes::UNSUPPORTED_PROTOCOL_VERSION,
                format!("Unsupported protocol version: {version}"),
                Some(
                    json!({"supported": ProtocolVersion::ALL.iter().filter(|v| v.era() == Era::Stateless).map(|v| v.as_str()).collect::<Vec<_>>(), "requested": version}),
                ),
            );
        }
    }
    if msg.method.is_some()
        && let Err(e) = h::validate(&msg, header(&headers, h::METHOD), header(&headers, h::NAME))
    {
        return bad(
            codes::HEADER_MISMATCH,
            format!("Header mismatch: {e}"),
            None,
        );
    }
    match msg.kind() {
        MessageKind::Notification | MessageKind::Result | MessageKind::Error => {
            return StatusCode::ACCEPTED.into_response();
        }
        MessageKind::Request => {}
    }
    let empty = serde_json::Map::new();
    let meta = msg.meta().unwrap_or(&empty);
    let Some(caps) = meta
        .get(meta::CLIENT_CAPABILITIES)
        .filter(|c| c.is_object())
        .cloned()
    else {
        return bad(
            codes::INVALID_PARAMS,
            format!("_meta[\"{}\"] is required", meta::CLIENT_CAPABILITIES),
            None,
        );
    };
    let client = ClientContext {
        caller,
        capabilities: Arc::new(caps),
        client_info: Arc::new(meta.get(meta::CLIENT_INFO).cloned().unwrap_or(Value::Null)),
        ..Default::default()
    };
    if REMOVED_IN_2026.contains(&msg.method()) {
        return rpc_error(
            StatusCode::NOT_FOUND,
            id,
            ErrorObject::new(
                codes::METHOD_NOT_FOUND,
                format!(
                    "Method not found: {} does not exist in protocol 2026-07-28",
                    msg.method()
                ),
            ),
            &request_id,
        );
    }
    if msg.method() == "subscriptions/listen" {
        let ctx = CallCtx {
            client: client.clone(),
            upstream: HashMap::new(),
            era: Era::Stateless,
            protocol_version: version.clone(),
            events: None,
            param_headers: Vec::new(),
        };
        return super::stream::listen(gw, vs, msg, ctx, request_id).await;
    }
    let can_stream = accepts_sse(&headers);
    let mut msg = msg;
    if let Some(token) = msg
        .params
        .as_ref()
        .and_then(|p| p.get("requestState"))
        .and_then(Value::as_str)
        && token.starts_with(call::STATE_PREFIX)
    {
        let principal = client.caller.principal.key();
        match gw.parked.resume(&gw.keys, token, &msg, &vs.path, principal) {
            Ok(call::Resumed::Parked(stream)) => {
                return respond(gw, stream, request_id, Era::Stateless).await;
            }
            Ok(call::Resumed::Again { declined: true }) => {
                let e = ErrorObject::new(
                    codes::INVALID_REQUEST,
                    "the user declined the authorization; the request was not run",
                );
                return rpc_error(StatusCode::OK, id, e, &request_id);
            }
            Ok(call::Resumed::Again { declined: false }) => {
                // The gateway's own input request is answered: run the request afresh.
                if let Some(p) = msg.params.as_mut().and_then(Value::as_object_mut) {
                    p.remove("requestState");
                    p.remove("inputResponses");
                }
            }
            Err(e) => return rpc_error(StatusCode::OK, id, e, &request_id),
        }
    }
    let param_headers = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with(h::PARAM_PREFIX))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let ctx = CallCtx {
        client,
        upstream: HashMap::new(),
        era: Era::Stateless,
        protocol_version: version.clone(),
        events: None,
        param_headers,
    };
    let stream = call::start(snapshot, vs, msg, ctx, None, can_stream);
    respond(gw, stream, request_id, Era::Stateless).await
}

/// A channel of SSE frames as an HTTP body stream.
pub(super) fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> futures::stream::BoxStream<'static, Result<Bytes, std::convert::Infallible>> {
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) },
    )
    .boxed()
}

/// Handshake-era methods a 2026-07-28 request may not use (404 + -32601).
const REMOVED_IN_2026: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// The HTTP status a 2026-07-28 error response travels with.
fn status_for(m: &Message) -> StatusCode {
    match m.error.as_ref().map(|e| e.code) {
        Some(codes::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            codes::HEADER_MISMATCH
            | codes::MISSING_CLIENT_CAPABILITY
            | codes::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// Sends the call's outcome: plain JSON when the response is the first thing ready, an SSE
/// stream when notifications or server→client requests come first.
async fn respond(
    gw: Arc<Gateway>,
    mut stream: CallStream,
    request_id: String,
    era: Era,
) -> Response {
    let first = match stream.next(&gw.keys, &gw.parked).await {
        Some(s) => s,
        None => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let json_headers = [
        (header::CONTENT_TYPE, "application/json"),
        (
            header::HeaderName::from_static(REQUEST_ID),
            request_id.as_str(),
        ),
    ];
    let first = match first {
        Step::Final(m) => {
            let status = if era == Era::Stateless {
                status_for(&m)
            } else {
                StatusCode::OK
            };
            return (status, json_headers, m.to_bytes()).into_response();
        }
        Step::Message(m) => m,
    };
    let events: futures::stream::BoxStream<'static, Result<Bytes, std::convert::Infallible>> =
        match stream.session().map(|s| s.streams.clone()) {
            // Handshake era: the call outlives a dropped connection and can be resumed.
            Some(streams) if era == Era::Handshake => {
                let rx = super::resume::spawn(gw, stream, first, streams);
                tokio_stream_from(rx)
            }
            _ => {
                let rest = futures::stream::unfold((stream, gw), |(mut stream, gw)| async move {
                    let (Step::Message(m) | Step::Final(m)) =
                        stream.next(&gw.keys, &gw.parked).await?;
                    Some((m, (stream, gw)))
                });
                futures::stream::once(async move { first })
                    .chain(rest)
                    .map(|m| {
                        Ok(sse::encode(
                            None,
                            None,
                            &String::from_utf8_lossy(&m.to_bytes()),
                        ))
                    })
                    .boxed()
            }
        };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .header(REQUEST_ID, request_id)
        .body(Body::from_stream(events))
        .expect("valid response")
}
