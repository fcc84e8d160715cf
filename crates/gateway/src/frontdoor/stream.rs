//! Long-lived streams: a handshake-era session's GET stream, DELETE, and the 2026-07-28
//! `subscriptions/listen` stream. Both carry member changes as the virtual server's own
//! `list_changed` / `resources/updated` notifications.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gatehouse_wire::{ErrorObject, Id, Message, codes, headers as h, meta, sse};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::guard::rpc_error;
use super::session::Session;
use crate::Gateway;
use crate::backend::{Backend, CallEvent};
use crate::notify::ServerChange;
use crate::snapshot::VirtualServer;

const KEEPALIVE: Duration = Duration::from_secs(15);

fn sse_response(body: Body, request_id: &str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .header(super::guard::REQUEST_ID, request_id)
        .body(body)
        .expect("valid response")
}

/// What a member change means for clients of `vs`, if anything.
fn relay_change(vs: &VirtualServer, change: &ServerChange) -> Option<Message> {
    if !vs.has_member(&change.server) {
        return None;
    }
    match change.message.method() {
        m @ ("notifications/tools/list_changed"
        | "notifications/prompts/list_changed"
        | "notifications/resources/list_changed") => Some(Message::notification(m, None)),
        "notifications/resources/updated" => Some(change.message.clone()),
        _ => None,
    }
}

pub(super) async fn get(
    gw: Arc<Gateway>,
    vs: Arc<VirtualServer>,
    headers: HeaderMap,
    caller: gatehouse_identity::Caller,
    request_id: String,
) -> Response {
    let Some(sid) = headers.get(h::SESSION_ID).and_then(|v| v.to_str().ok()) else {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [("allow", "POST")],
            "GET needs an Mcp-Session-Id (2026-07-28 clients use subscriptions/listen)\n",
        )
            .into_response();
    };
    let session = match gw.sessions.get(&gw.keys, sid, &vs.path, &caller).await {
        Ok(s) => s,
        Err(_) => {
            return rpc_error(
                StatusCode::NOT_FOUND,
                Id::Null,
                ErrorObject::new(codes::INVALID_REQUEST, "Session not found"),
                &request_id,
            );
        }
    };
    if let Some(last) = headers.get(h::LAST_EVENT_ID).and_then(|v| v.to_str().ok()) {
        // Resuming a response stream: replay what was missed, then the rest as it comes.
        if let Some((replay, rest)) = session.streams.resume(last) {
            tracing::info!(
                request_id,
                last_event_id = last,
                replayed = replay.len(),
                "stream resumed"
            );
            let replay = futures::stream::iter(replay.into_iter().map(Ok));
            let body = match rest {
                Some(rx) => replay.chain(super::post::tokio_stream_from(rx)).boxed(),
                None => replay.boxed(),
            };
            return sse_response(Body::from_stream(body), &request_id);
        }
    }
    let (tx, rx) = mpsc::channel::<Message>(64);
    relay_member_streams(&vs, &session, &caller, &tx).await;
    watch_policy(&gw, vs.path.clone(), session.call_ctx(&caller), tx.clone());
    let changes = gw.hub.subscribe();
    let stream = merged_stream(vs, changes, rx, None, Some(session));
    sse_response(Body::from_stream(stream), &request_id)
}

/// Relays what members send on this client's own upstream sessions (log messages, resource
/// updates, server→client requests) for as long as the client's GET stream is open.
async fn relay_member_streams(
    vs: &VirtualServer,
    session: &Arc<Session>,
    caller: &gatehouse_identity::Caller,
    tx: &mpsc::Sender<Message>,
) {
    let client = session.client(caller);
    for m in &vs.members {
        let (Some(up), Backend::Http(b)) = (
            session.claims.up.get(&m.server.config.name),
            &m.server.backend,
        ) else {
            continue;
        };
        let opened = tokio::time::timeout(b.timeout(), b.open_stream(Some(up), &[], &client)).await;
        let mut rx = match opened.unwrap_or_else(|_| {
            Err(crate::backend::BackendError::Timeout {
                server: m.server.config.name.clone(),
                timeout: b.timeout(),
            })
        }) {
            Ok(rx) => rx,
            Err(e) => {
                tracing::debug!(server = %m.server.config.name, error = %e, "member has no session stream");
                continue;
            }
        };
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

pub(super) async fn delete(
    gw: Arc<Gateway>,
    vs: Arc<VirtualServer>,
    headers: HeaderMap,
    caller: gatehouse_identity::Caller,
    request_id: String,
) -> Response {
    let Some(sid) = headers.get(h::SESSION_ID).and_then(|v| v.to_str().ok()) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Id::Null,
            ErrorObject::new(codes::INVALID_REQUEST, "DELETE needs an Mcp-Session-Id"),
            &request_id,
        );
    };
    let session = match gw.sessions.get(&gw.keys, sid, &vs.path, &caller).await {
        Ok(s) => s,
        Err(_) => {
            return rpc_error(
                StatusCode::NOT_FOUND,
                Id::Null,
                ErrorObject::new(codes::INVALID_REQUEST, "Session not found"),
                &request_id,
            );
        }
    };
    if let Err(e) = gw.sessions.delete(&session).await {
        tracing::error!(request_id, error = %e, "session not ended");
        return rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Id::Null,
            ErrorObject::new(
                codes::INTERNAL_ERROR,
                "Session not ended: the gateway could not record its end in its store; retry",
            ),
            &request_id,
        );
    }
    // Release the session's resource subscriptions through the normal unsubscribe path, so
    // subscriptions the gateway holds at stateless members for it are dropped too.
    let uris: Vec<String> = session
        .subscriptions
        .lock()
        .expect("subscriptions lock")
        .drain()
        .collect();
    if !uris.is_empty() {
        let ctx = session.call_ctx(&caller);
        for uri in uris {
            let unsubscribe = Message::request(
                Id::String("gatehouse-cleanup".into()),
                "resources/unsubscribe",
                Some(json!({ "uri": uri })),
            );
            crate::dispatch::dispatch(&vs, unsubscribe, &ctx).await;
        }
    }
    session.close_upstream_sessions(&vs).await;
    tracing::info!(request_id, virtual_server = %vs.name, "session ended by the client");
    StatusCode::OK.into_response()
}

/// Tells this stream's caller when a policy change alters what it may see: the lists whose
/// visible items differ get `list_changed`. Ends with the stream.
fn watch_policy(
    gw: &Arc<Gateway>,
    path: String,
    ctx: crate::dispatch::CallCtx,
    tx: mpsc::Sender<Message>,
) {
    let mut swaps = gw.policy_swaps.subscribe();
    let weak = Arc::downgrade(gw);
    tokio::spawn(async move {
        loop {
            let swap = tokio::select! {
                r = swaps.recv() => r,
                _ = tx.closed() => return,
            };
            let methods: Vec<&'static str> = match swap {
                Ok(swap) => {
                    let Some(vs) = weak
                        .upgrade()
                        .and_then(|gw| gw.snapshot().virtual_servers.get(&path).cloned())
                    else {
                        return;
                    };
                    crate::authz::changed_lists(&vs, &ctx, &swap).await
                }
                // Missed changes: tell the client to look again rather than leave it stale.
                Err(broadcast::error::RecvError::Lagged(_)) => vec![
                    "notifications/tools/list_changed",
                    "notifications/prompts/list_changed",
                    "notifications/resources/list_changed",
                ],
                Err(broadcast::error::RecvError::Closed) => return,
            };
            for m in methods {
                if tx.send(Message::notification(m, None)).await.is_err() {
                    return;
                }
            }
        }
    });
}

pub(super) async fn listen(
    gw: Arc<Gateway>,
    vs: Arc<VirtualServer>,
    msg: Message,
    ctx: crate::dispatch::CallCtx,
    request_id: String,
) -> Response {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let filter = msg
        .params
        .as_ref()
        .and_then(|p| p.get("notifications"))
        .cloned()
        .unwrap_or(json!({}));
    let mut honoured = serde_json::Map::new();
    for key in [
        "toolsListChanged",
        "promptsListChanged",
        "resourcesListChanged",
    ] {
        if filter.get(key).and_then(Value::as_bool) == Some(true) {
            honoured.insert(key.into(), Value::Bool(true));
        }
    }
    if let Some(uris) = filter.get("resourceSubscriptions").filter(|u| u.is_array()) {
        honoured.insert("resourceSubscriptions".into(), uris.clone());
    }
    let honoured = Value::Object(honoured);
    let mut ack_meta = serde_json::Map::new();
    ack_meta.insert(meta::SUBSCRIPTION_ID.into(), id.to_value());
    let ack = Message::notification(
        "notifications/subscriptions/acknowledged",
        Some(json!({"notifications": honoured.clone(), "_meta": ack_meta})),
    );
    let (tx, rx) = mpsc::channel::<Message>(4);
    let _ = tx.send(ack).await;
    watch_policy(&gw, vs.path.clone(), ctx, tx.clone());
    let changes = gw.hub.subscribe();
    let stream = merged_stream(vs, changes, rx, Some((id, honoured, tx)), None);
    sse_response(Body::from_stream(stream), &request_id)
}

type Listen = (Id, Value, mpsc::Sender<Message>);

fn wanted(filter: &Value, m: &Message) -> bool {
    let flag = |k: &str| filter.get(k).and_then(Value::as_bool) == Some(true);
    match m.method() {
        "notifications/tools/list_changed" => flag("toolsListChanged"),
        "notifications/prompts/list_changed" => flag("promptsListChanged"),
        "notifications/resources/list_changed" => flag("resourcesListChanged"),
        "notifications/resources/updated" => {
            let uri = m
                .params
                .as_ref()
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str)
                .unwrap_or("");
            filter
                .get("resourceSubscriptions")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|u| u.as_str() == Some(uri)))
        }
        _ => true,
    }
}

pub(super) fn merged_stream(
    vs: Arc<VirtualServer>,
    changes: broadcast::Receiver<ServerChange>,
    direct: mpsc::Receiver<Message>,
    listen: Option<Listen>,
    session: Option<Arc<Session>>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> {
    let ticker = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    futures::stream::unfold((vs, changes, direct, listen, ticker), move |(vs, mut changes, mut direct, listen, mut ticker)| {
        let session = session.clone();
        async move {
        loop {
            let out = tokio::select! {
                Some(m) = direct.recv() => Some(m),
                r = changes.recv() => match r {
                    // A handshake-era session hears only of the resources it subscribed to.
                    Ok(change) => relay_change(&vs, &change).filter(|m| {
                        m.method() != "notifications/resources/updated"
                            || session.as_ref().is_none_or(|s| {
                                let uri = m.params.as_ref().and_then(|p| p.get("uri")).and_then(Value::as_str).unwrap_or("");
                                s.subscriptions.lock().expect("subscriptions lock").contains(uri)
                            })
                    }),
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = ticker.tick() => return Some((sse::comment("keep-alive"), (vs, changes, direct, listen, ticker))),
            };
            let Some(mut m) = out else { continue };
            if let Some((sub_id, filter, _)) = &listen {
                if !wanted(filter, &m) {
                    continue;
                }
                if let Some(p) = m.params.get_or_insert_with(|| json!({})).as_object_mut() {
                    let meta = p.entry("_meta").or_insert_with(|| json!({}));
                    meta[meta::SUBSCRIPTION_ID] = sub_id.to_value();
                }
            }
            let bytes = sse::encode(None, None, &String::from_utf8_lossy(&m.to_bytes()));
            return Some((bytes, (vs, changes, direct, listen, ticker)));
        }
        }
    })
    .map(Ok)
}
