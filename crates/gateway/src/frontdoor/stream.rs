//! Long-lived streams: a handshake-era session's GET stream, DELETE, and the 2026-07-28
//! `subscriptions/listen` stream. What they carry is decided per caller by a [`Listener`].

use std::sync::Arc;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gatehouse_wire::{Id, Message, codes, headers as h, meta};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::listener::{Listener, Out, Owner};
use super::request::{Refusal, RequestCtx};
use super::session::Session;
use crate::backend::CallEvent;
use crate::catalog::ListKind;
use crate::context::CallCtx;
use crate::subscriptions::{self, Subscriptions};
use crate::{methods, upstream};

/// An SSE response around `body`.
pub(super) fn sse_response(body: Body, request_id: &str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .header(super::guard::REQUEST_ID, request_id)
        .body(body)
        .expect("valid response")
}

async fn session_of(cx: &RequestCtx, verb: &str) -> Result<Arc<Session>, Refusal> {
    let Some(sid) = cx.header(h::SESSION_ID) else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_REQUEST,
            format!("{verb} needs an Mcp-Session-Id"),
        ));
    };
    let gw = &cx.gw;
    gw.sessions
        .get(&gw.keys, sid, &cx.vs.path, &cx.caller)
        .await
        .map_err(|refused| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                codes::INVALID_REQUEST,
                refused.to_string(),
            )
        })
}

/// GET: a session's stream of server-initiated messages, or the resumption of one of its
/// response streams (`Last-Event-ID`).
pub(super) async fn get(cx: RequestCtx) -> Response {
    if cx.header(h::SESSION_ID).is_none() {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [("allow", "POST")],
            "GET needs an Mcp-Session-Id (2026-07-28 clients use subscriptions/listen)\n",
        )
            .into_response();
    }
    let session = match session_of(&cx, "GET").await {
        Ok(s) => s,
        Err(r) => return r.into_response(&cx.request_id),
    };
    if let Some(last) = cx.header(h::LAST_EVENT_ID) {
        // Resuming a response stream: replay what was missed, then the rest as it comes.
        if let Some((replay, rest)) = session.streams.resume(last) {
            tracing::info!(
                request_id = %cx.request_id,
                last_event_id = %crate::observe::shown(last),
                replayed = replay.len(),
                "stream resumed"
            );
            let replay = futures::stream::iter(replay.into_iter().map(Ok));
            let body = match rest {
                Some(rx) => replay.chain(super::pump::body_from(rx)).boxed(),
                None => replay.boxed(),
            };
            return sse_response(Body::from_stream(body), &cx.request_id);
        }
    }
    let ctx = session.call_ctx(&cx.caller);
    // A subscription made before a policy change this session did not hear of.
    subscriptions::redecide(&cx.vs, &ctx, &session.subscriptions).await;
    let (direct_tx, direct_rx) = mpsc::channel::<Message>(64);
    relay_member_streams(&cx, &session, &direct_tx).await;
    let (tx, rx) = mpsc::channel(64);
    let listener = Listener::open(
        &cx,
        ctx,
        Owner::Session(session),
        &[ListKind::Tools, ListKind::Prompts, ListKind::Resources],
        None,
    )
    .await;
    tokio::spawn(listener.run(Out::Channel(tx), Some(direct_rx)));
    sse_response(
        Body::from_stream(super::pump::body_from(rx)),
        &cx.request_id,
    )
}

/// Relays what members send on this client's own upstream sessions (log messages, resource
/// updates, server→client requests) for as long as the client's GET stream is open.
async fn relay_member_streams(cx: &RequestCtx, session: &Arc<Session>, tx: &mpsc::Sender<Message>) {
    let client = session.client(&cx.caller);
    for mut rx in upstream::open_session_streams(&cx.vs, &session.claims.up, &client).await {
        let tx = tx.clone();
        let session = session.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = tx.closed() => return,
                };
                let msg = match ev {
                    None => return,
                    Some(CallEvent::Notification(n)) => n,
                    Some(CallEvent::ServerRequest { request, reply }) => {
                        session.register_request(request, reply)
                    }
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// DELETE: ends a session, its subscriptions and its upstream sessions.
pub(super) async fn delete(cx: RequestCtx) -> Response {
    let session = match session_of(&cx, "DELETE").await {
        Ok(s) => s,
        Err(r) => return r.into_response(&cx.request_id),
    };
    if let Err(e) = cx.gw.sessions.delete(&session).await {
        tracing::error!(request_id = %cx.request_id, error = %e, "session not ended");
        return Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::INTERNAL_ERROR,
            "Session not ended: the gateway could not record its end in its store; retry",
        )
        .into_response(&cx.request_id);
    }
    session.release(&cx.vs, &cx.caller).await;
    tracing::info!(request_id = %cx.request_id, virtual_server = %cx.vs.name, "session ended by the client");
    StatusCode::OK.into_response()
}

/// `subscriptions/listen`: acknowledges what the caller may hear — list changes it asked for,
/// and of the resources it named only those it may read and a member serves (a refused URI
/// and an unknown one are both left out) — then streams them until the client goes away.
pub(super) async fn listen(cx: RequestCtx, msg: Message, ctx: CallCtx) -> Response {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let filter = msg
        .params
        .as_ref()
        .and_then(|p| p.get("notifications"))
        .cloned()
        .unwrap_or(json!({}));
    let mut honoured = serde_json::Map::new();
    let mut kinds = Vec::new();
    for (key, kind) in [
        ("toolsListChanged", ListKind::Tools),
        ("promptsListChanged", ListKind::Prompts),
        ("resourcesListChanged", ListKind::Resources),
    ] {
        if filter.get(key).and_then(Value::as_bool) == Some(true) {
            honoured.insert(key.into(), Value::Bool(true));
            kinds.push(kind);
        }
    }
    let subs = Arc::new(Subscriptions::default());
    if let Some(uris) = filter
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
    {
        let mut allowed = Vec::new();
        for uri in uris.iter().filter_map(Value::as_str).take(MAX_LISTEN_URIS) {
            if let Some(member) = methods::decide_read(&cx.vs, &ctx, uri).await {
                subscriptions::hold_for_listen(&cx.vs, &ctx, &subs, uri, member).await;
                allowed.push(Value::from(uri));
            }
        }
        honoured.insert("resourceSubscriptions".into(), Value::Array(allowed));
    }
    let mut ack_meta = serde_json::Map::new();
    ack_meta.insert(meta::SUBSCRIPTION_ID.into(), id.to_value());
    let ack = Message::notification(
        "notifications/subscriptions/acknowledged",
        Some(json!({"notifications": honoured, "_meta": ack_meta})),
    );
    let (tx, rx) = mpsc::channel(64);
    let listener = Listener::open(&cx, ctx, Owner::Listen(subs), &kinds, Some(id)).await;
    let out = Out::Channel(tx);
    tokio::spawn(async move {
        if out.send(&listener.stamp(ack)).await {
            listener.run(out, None).await;
        }
    });
    sse_response(
        Body::from_stream(super::pump::body_from(rx)),
        &cx.request_id,
    )
}

/// Most resources one `subscriptions/listen` may name (each is a policy decision and a hold
/// at a member).
const MAX_LISTEN_URIS: usize = 1000;
