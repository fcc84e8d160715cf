//! The legacy HTTP+SSE transport (2024-11-05): `GET <path>/sse` opens an event stream whose first
//! event names the endpoint to POST messages to (`<path>/message?sessionId=…`); every response and
//! server→client message travels on that stream. Older clients and bridges still use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gatehouse_identity::Caller;
use gatehouse_wire::{ErrorObject, Id, Message, codes, sse};
use tokio::sync::mpsc;

use super::call::Step;
use super::guard::rpc_error;
use super::handshake::{self, Handled};
use super::session::Session;
use crate::Gateway;
use crate::snapshot::{Snapshot, VirtualServer};

/// One open `GET …/sse` stream and the session initialized over it.
#[derive(Debug)]
pub struct SseConnection {
    tx: mpsc::Sender<Message>,
    vs_path: String,
    /// The principal that opened the connection; only it may post messages into it.
    principal: String,
    session: Mutex<Option<Arc<Session>>>,
}

/// The open HTTP+SSE connections of this process, by the id in their endpoint URL.
#[derive(Debug, Default)]
pub struct SseConnections {
    open: Mutex<HashMap<String, Arc<SseConnection>>>,
}

/// Removes a connection when its stream is dropped (the client went away).
struct Unregister {
    gw: Arc<Gateway>,
    id: String,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.gw.sse.open.lock().expect("sse lock").remove(&self.id);
    }
}

pub(super) fn open(
    gw: Arc<Gateway>,
    vs: Arc<VirtualServer>,
    caller: &Caller,
    request_id: &str,
) -> Response {
    let id = format!("{:032x}", rand::random::<u128>());
    let (tx, rx) = mpsc::channel(64);
    let conn = Arc::new(SseConnection {
        tx,
        vs_path: vs.path.clone(),
        principal: caller.principal.key().to_string(),
        session: Mutex::new(None),
    });
    gw.sse
        .open
        .lock()
        .expect("sse lock")
        .insert(id.clone(), conn);
    let endpoint = format!("{}/message?sessionId={id}", vs.path);
    tracing::info!(request_id, virtual_server = %vs.name, "HTTP+SSE connection opened");
    let guard = Unregister { gw: gw.clone(), id };
    let first = futures::stream::once(async move {
        Ok::<_, std::convert::Infallible>(sse::encode(None, Some("endpoint"), &endpoint))
    });
    // The session does not exist before initialize; resource updates reach this transport's
    // clients unfiltered (rare: it predates most subscription use).
    let rest = super::stream::merged_stream(vs, gw.hub.subscribe(), rx, None, None);
    let body = first.chain(rest).map(move |b| {
        let _keep = &guard;
        b
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .expect("valid response")
}

pub(super) async fn message(
    gw: Arc<Gateway>,
    snapshot: Arc<Snapshot>,
    vs: Arc<VirtualServer>,
    query: Option<&str>,
    body: Bytes,
    caller: Caller,
    request_id: String,
) -> Response {
    let conn_id = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("sessionId="))
        .map(str::to_string);
    let conn = conn_id.and_then(|id| gw.sse.open.lock().expect("sse lock").get(&id).cloned());
    // Another principal cannot post into a connection (the id is in a URL, not a secret).
    let principal = caller.principal.key();
    let Some(conn) = conn.filter(|c| c.vs_path == vs.path && c.principal == principal) else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            Id::Null,
            ErrorObject::new(codes::INVALID_REQUEST, "unknown or closed SSE session"),
            &request_id,
        );
    };
    let msg = match Message::parse(&body) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(request_id, error = %e, "malformed JSON-RPC message");
            return rpc_error(
                StatusCode::BAD_REQUEST,
                e.id(),
                e.to_error_object(),
                &request_id,
            );
        }
    };
    crate::observe::message(&msg, body.len());
    if let Some(refusal) = super::authn::check_tool_scopes(
        &snapshot,
        &vs,
        &axum::http::HeaderMap::new(),
        &msg,
        &caller,
        &request_id,
    ) {
        return refusal;
    }
    if msg.method() == "initialize" {
        match handshake::open_session(&gw, &vs, msg, &caller, &request_id).await {
            Ok((session, reply)) => {
                *conn.session.lock().expect("sse session lock") = Some(session);
                let _ = conn.tx.send(reply).await;
            }
            Err((id, e)) => {
                let _ = conn.tx.send(Message::error(id, e)).await;
            }
        }
        return StatusCode::ACCEPTED.into_response();
    }
    let session = conn.session.lock().expect("sse session lock").clone();
    // An ended or expired session is gone: the client initializes again on this connection.
    let Some(session) = session.filter(|s| gw.sessions.touch(s)) else {
        let id = msg.id.clone().unwrap_or(Id::Null);
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            ErrorObject::new(codes::INVALID_REQUEST, "send initialize first"),
            &request_id,
        );
    };
    match handshake::handle(snapshot, vs, msg, session, &caller, true, &request_id).await {
        Handled::Accepted => {}
        Handled::Rejected(id, e) => {
            let _ = conn.tx.send(Message::error(id, e)).await;
        }
        Handled::Reply(m) => {
            let _ = conn.tx.send(m).await;
        }
        Handled::Call(mut stream) => {
            let tx = conn.tx.clone();
            tokio::spawn(async move {
                while let Some(step) = stream.next(&gw.keys, &gw.parked).await {
                    let (Step::Message(m) | Step::Final(m)) = step;
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    StatusCode::ACCEPTED.into_response()
}
