//! POST: one JSON-RPC message from a client of either era. The request path, top to bottom
//! (`mod.rs` routed it to its virtual server, checked Host and Origin, authenticated the
//! caller and then read the body within its size, time and memory bounds
//! ([`super::body`]); the request's audit event and span wrap all of it):
//!
//! 2. **parse** — one JSON-RPC message, or `-32700`/`-32600`;
//! 3. **era** — `initialize` opens a handshake-era session; a protocol version in `_meta`
//!    makes a 2026-07-28 request ([`super::stateless`]); otherwise the session the
//!    `Mcp-Session-Id` names ([`super::handshake`]);
//! 4. **view** — the caller's view of the virtual server for this request (`CallCtx`);
//! 5. **authorize** — the table decides the method and the item it names
//!    ([`super::authorize`]); an MRTR retry resumes its parked call instead;
//! 6. **call** — the decided route runs on a task of its own ([`super::call`]); per member,
//!    [`crate::upstream`] obtains the outbound credential, then sends;
//! 7. **respond** — JSON, or an SSE stream driven by the one pump ([`super::pump`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_wire::{Era, Id, Message, ProtocolVersion, codes, headers as h, meta};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::call::{self, Call, CallStream, Step};
use super::guard::REQUEST_ID;
use super::handshake::{self, Handled};
use super::mrtr::{self, Resumed};
use super::pump::{self, BodySink, ResumableSink};
use super::request::{Refusal, RequestCtx};
use super::session::Session;
use super::stateless::{self, Admitted};
use crate::methods::Route;

/// Runs one POST through the request path.
pub(super) async fn handle(cx: RequestCtx, bytes: Bytes) -> Response {
    let request_id = cx.request_id.clone();
    match path(cx, bytes).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(&request_id),
    }
}

async fn path(cx: RequestCtx, bytes: Bytes) -> Result<Response, Refusal> {
    let msg = parse(&cx, &bytes)?;
    match era(&cx, msg).await? {
        Arrived::Initialize(msg) => initialize(&cx, msg).await,
        Arrived::Stateless(msg, version) => stateless(cx, msg, &version).await,
        Arrived::Session(session, msg) => on_session(cx, session, msg).await,
    }
}

/// Step 2: the body as one JSON-RPC message.
fn parse(cx: &RequestCtx, bytes: &Bytes) -> Result<Message, Refusal> {
    match Message::parse(bytes) {
        Ok(msg) => {
            crate::observe::message(&msg, bytes.len());
            Ok(msg)
        }
        Err(e) => {
            tracing::warn!(request_id = %cx.request_id, error = %e, "malformed JSON-RPC message");
            crate::metrics::REJECTED_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(Refusal::error(StatusCode::BAD_REQUEST, e.to_error_object())
                .id(e.id())
                .reason("malformed"))
        }
    }
}

/// Which era a message arrived in.
enum Arrived {
    /// A handshake-era `initialize`.
    Initialize(Message),
    /// A 2026-07-28 request (or notification) naming this version.
    Stateless(Message, String),
    /// A message on an open handshake-era session.
    Session(Arc<Session>, Message),
}

/// Step 3: the era, and for the handshake era the session.
async fn era(cx: &RequestCtx, msg: Message) -> Result<Arrived, Refusal> {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let names_version = msg
        .meta()
        .is_some_and(|m| m.contains_key(meta::PROTOCOL_VERSION));
    if msg.method() == "initialize" && !names_version {
        return Ok(Arrived::Initialize(msg));
    }
    if let Some(version) = stateless::version_of(cx, &msg) {
        return Ok(Arrived::Stateless(msg, version));
    }
    let Some(session_id) = cx.header(h::SESSION_ID) else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            codes::BACKEND_UNAVAILABLE,
            "Bad Request: send initialize first (or the Mcp-Session-Id header), or use protocol 2026-07-28 with _meta",
        )
        .id(id));
    };
    let gw = &cx.gw;
    let session = match gw
        .sessions
        .get(&gw.keys, session_id, &cx.vs.path, &cx.caller)
        .await
    {
        Ok(s) => s,
        Err(refused) => {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                codes::INVALID_REQUEST,
                refused.to_string(),
            )
            .id(id));
        }
    };
    if let Some(v) = cx.header(h::PROTOCOL_VERSION)
        && v.parse::<ProtocolVersion>().is_err()
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_REQUEST,
            format!(
                "Bad Request: unsupported protocol version {}",
                crate::observe::shown(v)
            ),
        )
        .id(id)
        .data(json!({"supported": ProtocolVersion::supported_strings(), "requested": v})));
    }
    Ok(Arrived::Session(session, msg))
}

async fn initialize(cx: &RequestCtx, msg: Message) -> Result<Response, Refusal> {
    let (session, reply) = match handshake::open_session(cx, msg).await {
        Ok(ok) => ok,
        Err(reply) => return Ok(json_response(StatusCode::BAD_REQUEST, &reply, cx)),
    };
    crate::observe::note(|f| f.session = Some(crate::observe::session_digest(&session.id)));
    let mut resp = json_response(StatusCode::OK, &reply, cx);
    resp.headers_mut().insert(
        h::SESSION_ID,
        HeaderValue::from_str(&session.id).expect("sealed ids are ASCII"),
    );
    Ok(resp)
}

/// A handshake-era message on Streamable HTTP.
async fn on_session(
    cx: RequestCtx,
    session: Arc<Session>,
    msg: Message,
) -> Result<Response, Refusal> {
    match handshake::handle(&cx, session, msg, cx.accepts_sse()).await? {
        Handled::Accepted => Ok(StatusCode::ACCEPTED.into_response()),
        Handled::Call(call) => Ok(respond(&cx, call, Era::Handshake).await),
    }
}

/// A 2026-07-28 message: its era's rules, an MRTR retry, then the table.
async fn stateless(cx: RequestCtx, msg: Message, version: &str) -> Result<Response, Refusal> {
    let ctx = match stateless::admit(&cx, &msg, version)? {
        Admitted::NotARequest => return Ok(StatusCode::ACCEPTED.into_response()),
        Admitted::Request(ctx) => *ctx,
    };
    let msg = match retry(&cx, msg)? {
        Retried::Resumed(call) => return Ok(respond(&cx, call, Era::Stateless).await),
        Retried::Run(msg) => msg,
    };
    let client_id = msg.id.clone().unwrap_or(Id::Null);
    let method = msg.method().to_string();
    let scope = mrtr::request_scope(&cx.vs.path, cx.caller.principal.key(), &msg);
    let route = super::authorize::authorize(&cx, &ctx, msg).await?;
    if let Route::Listen(msg) = route {
        return Ok(super::stream::listen(cx, msg, ctx).await);
    }
    let can_stream = cx.accepts_sse();
    let call = call::start(
        &cx,
        Call {
            client_id,
            method,
            route,
            ctx,
            session: None,
            can_stream,
            scope,
        },
    );
    Ok(respond(&cx, call, Era::Stateless).await)
}

/// What an MRTR retry carrying a gateway `requestState` becomes.
enum Retried {
    /// The parked call, resumed with the client's answers.
    Resumed(CallStream),
    /// A request to run (afresh).
    Run(Message),
}

fn retry(cx: &RequestCtx, mut msg: Message) -> Result<Retried, Refusal> {
    let Some(token) = msg
        .params
        .as_ref()
        .and_then(|p| p.get("requestState"))
        .and_then(Value::as_str)
        .filter(|t| t.starts_with(mrtr::STATE_PREFIX))
    else {
        return Ok(Retried::Run(msg));
    };
    let id = msg.id.clone().unwrap_or(Id::Null);
    let gw = &cx.gw;
    let principal = cx.caller.principal.key();
    match gw
        .parked
        .resume(&gw.keys, token, &msg, &cx.vs.path, principal)
    {
        Ok(Resumed::Parked(call)) => Ok(Retried::Resumed(call)),
        Ok(Resumed::Again { declined: true }) => Err(Refusal::new(
            StatusCode::OK,
            codes::INVALID_REQUEST,
            "the user declined the authorization; the request was not run",
        )
        .id(id)),
        Ok(Resumed::Again { declined: false }) => {
            // The gateway's own input request is answered: run the request afresh.
            if let Some(p) = msg.params.as_mut().and_then(Value::as_object_mut) {
                p.remove("requestState");
                p.remove("inputResponses");
            }
            Ok(Retried::Run(msg))
        }
        Err(e) => Err(Refusal::error(StatusCode::OK, e).id(id)),
    }
}

fn json_response(status: StatusCode, msg: &Message, cx: &RequestCtx) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::HeaderName::from_static(REQUEST_ID),
                cx.request_id.as_str(),
            ),
        ],
        msg.to_bytes(),
    )
        .into_response()
}

/// Step 7: the call's outcome — plain JSON when the response is the first thing ready, an SSE
/// stream when notifications or server→client requests come first.
async fn respond(cx: &RequestCtx, mut call: CallStream, era: Era) -> Response {
    let gw = cx.gw.clone();
    let first = match call.next(&gw).await {
        Some(Step::Final(m)) => {
            let status = if era == Era::Stateless {
                stateless::status_for(&m)
            } else {
                StatusCode::OK
            };
            return json_response(status, &m, cx);
        }
        Some(Step::Message(m)) => m,
        None => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let (tx, rx) = mpsc::channel(64);
    match call.session().map(|s| s.streams.clone()) {
        // Handshake era: the call outlives a dropped connection and can be resumed.
        Some(streams) if era == Era::Handshake => {
            let stream = streams.open(tx);
            tokio::spawn(pump::run(
                gw,
                call,
                Some(first),
                ResumableSink { streams, stream },
            ));
        }
        _ => {
            tokio::spawn(pump::run(gw, call, Some(first), BodySink(tx)));
        }
    }
    super::stream::sse_response(Body::from_stream(pump::body_from(rx)), &cx.request_id)
}
