//! The legacy HTTP+SSE transport (2024-11-05): `GET <path>/sse` opens an event stream whose first
//! event names the endpoint to POST messages to (`<path>/message?sessionId=…`); every response and
//! server→client message travels on that stream. Older clients and bridges still use it.
//!
//! A client that POSTs calls but does not read the stream would make the gateway hold their
//! results: each connection queues at most `gateway.sse_queue_bytes`, and past it the stream
//! ends with an error event, the session's calls stop and later POSTs are refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_wire::{ErrorObject, Id, Message, codes, sse};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::handshake::{self, Handled};
use super::listener::{Listener, Out, Owner};
use super::pump::{self, Sink};
use super::request::{Refusal, RequestCtx};
use super::session::Session;
use crate::Gateway;
use crate::catalog::ListKind;

/// One open `GET …/sse` stream and the session initialized over it.
#[derive(Debug)]
pub struct SseConnection {
    queue: mpsc::UnboundedSender<Bytes>,
    /// Bytes queued and not yet taken by the response body.
    queued: Arc<AtomicUsize>,
    limit: usize,
    overflowed: AtomicBool,
    closed: CancellationToken,
    vs_path: String,
    /// The principal that opened the connection; only it may post messages into it.
    principal: String,
    session: Mutex<Option<Arc<Session>>>,
}

impl SseConnection {
    /// The session initialized over this connection, once there is one.
    pub fn session(&self) -> Option<Arc<Session>> {
        self.session.lock().expect("sse session lock").clone()
    }

    /// Queues one SSE frame for the client. False when the connection is closed — or just
    /// closed because the client let more than the limit pile up unread.
    pub fn push(&self, frame: Bytes) -> bool {
        if self.closed.is_cancelled() {
            return false;
        }
        let queued = self.queued.fetch_add(frame.len(), Ordering::AcqRel) + frame.len();
        if queued > self.limit {
            self.overflow(queued);
            return false;
        }
        self.queue.send(frame).is_ok()
    }

    fn overflow(&self, queued: usize) {
        if self.overflowed.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(
            virtual_server_path = %self.vs_path,
            queued,
            limit = self.limit,
            "legacy SSE stream closed: its client does not read it (gateway.sse_queue_bytes)"
        );
        if let Some(s) = self.session() {
            for (_, h) in s.inflight.lock().expect("inflight lock").drain() {
                h.abort();
            }
        }
        self.closed.cancel();
    }

    /// Resolves when the connection is closed.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }
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
    conn: Arc<SseConnection>,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.conn.closed.cancel();
        if !self.conn.overflowed.load(Ordering::Acquire) {
            self.gw.sse.open.lock().expect("sse lock").remove(&self.id);
            return;
        }
        // A client cut off for not reading keeps hearing why for a while, instead of an
        // "unknown session" it could take for a gateway restart.
        let (gw, id) = (Arc::downgrade(&self.gw), self.id.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(CUT_OFF_REMEMBERED).await;
                if let Some(gw) = gw.upgrade() {
                    gw.sse.open.lock().expect("sse lock").remove(&id);
                }
            });
        }
    }
}

/// How long POSTs to a connection cut off for not reading get the specific refusal.
const CUT_OFF_REMEMBERED: std::time::Duration = std::time::Duration::from_secs(60);

/// The error event a client that fell behind sees before its stream ends.
fn overflow_event(limit: usize) -> Bytes {
    let msg = Message::error(
        Id::Null,
        ErrorObject::new(
            codes::BACKEND_UNAVAILABLE,
            format!(
                "stream closed by the gateway: more than {limit} bytes were waiting for this client to read (gateway.sse_queue_bytes); reconnect"
            ),
        ),
    );
    sse::encode(None, None, &String::from_utf8_lossy(&msg.to_bytes()))
}

pub(super) async fn open(cx: RequestCtx) -> Response {
    let id = format!("{:032x}", rand::random::<u128>());
    let (tx, rx) = mpsc::unbounded_channel();
    let limit = usize::try_from(cx.snapshot.config.gateway.sse_queue_bytes).unwrap_or(usize::MAX);
    let conn = Arc::new(SseConnection {
        queue: tx,
        queued: Arc::default(),
        limit,
        overflowed: AtomicBool::new(false),
        closed: CancellationToken::new(),
        vs_path: cx.vs.path.clone(),
        principal: cx.caller.principal.key().to_string(),
        session: Mutex::new(None),
    });
    cx.gw
        .sse
        .open
        .lock()
        .expect("sse lock")
        .insert(id.clone(), conn.clone());
    let endpoint = format!("{}/message?sessionId={id}", cx.vs.path);
    tracing::info!(request_id = %cx.request_id, virtual_server = %cx.vs.name, "HTTP+SSE connection opened");
    conn.push(sse::encode(None, Some("endpoint"), &endpoint));
    let listener = Listener::open(
        &cx,
        crate::context::CallCtx::handshake(&cx.caller),
        Owner::Legacy(conn.clone()),
        &[ListKind::Tools, ListKind::Prompts, ListKind::Resources],
        None,
    )
    .await;
    tokio::spawn(listener.run(Out::Legacy(conn.clone()), None));
    let guard = Unregister {
        gw: cx.gw.clone(),
        id,
        conn: conn.clone(),
    };
    let body = futures::stream::unfold(Some((guard, rx)), |state| async move {
        let (guard, mut rx) = state?;
        let next = tokio::select! {
            biased;
            () = guard.conn.closed.cancelled() => None,
            f = rx.recv() => f,
        };
        match next {
            Some(frame) => {
                guard.conn.queued.fetch_sub(frame.len(), Ordering::AcqRel);
                Some((Ok::<_, std::convert::Infallible>(frame), Some((guard, rx))))
            }
            None if guard.conn.overflowed.load(Ordering::Acquire) => {
                guard
                    .gw
                    .telemetry
                    .metrics()
                    .stream_closed("legacy_sse", "slow_reader");
                Some((Ok(overflow_event(guard.conn.limit)), None))
            }
            None => None,
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .expect("valid response")
}

/// A running call whose messages go to a legacy connection's stream.
struct LegacySink(Arc<SseConnection>);

impl Sink for LegacySink {
    async fn send(&mut self, msg: Message, _last: bool) -> bool {
        self.0.push(sse::encode(
            None,
            None,
            &String::from_utf8_lossy(&msg.to_bytes()),
        ))
    }

    async fn gone(&self) {
        self.0.closed().await
    }
}

fn reply(conn: &SseConnection, msg: &Message) {
    conn.push(sse::encode(
        None,
        None,
        &String::from_utf8_lossy(&msg.to_bytes()),
    ));
}

/// `POST <path>/message?sessionId=…`: one message on a legacy connection.
pub(super) async fn message(cx: RequestCtx, query: Option<&str>, bytes: Bytes) -> Response {
    match post(cx.clone(), query, bytes).await {
        Ok(r) => r,
        Err(refusal) => refusal.into_response(&cx.request_id),
    }
}

async fn post(cx: RequestCtx, query: Option<&str>, bytes: Bytes) -> Result<Response, Refusal> {
    let conn_id = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("sessionId="));
    let conn = conn_id.and_then(|id| cx.gw.sse.open.lock().expect("sse lock").get(id).cloned());
    // Another principal cannot post into a connection (the id is in a URL, not a secret).
    let principal = cx.caller.principal.key();
    let Some(conn) = conn.filter(|c| c.vs_path == cx.vs.path && c.principal == principal) else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            codes::INVALID_REQUEST,
            "unknown or closed SSE session",
        ));
    };
    if conn.overflowed.load(Ordering::Acquire) {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            codes::INVALID_REQUEST,
            "this SSE session's stream was closed because its client did not read it (gateway.sse_queue_bytes); open a new one",
        )
        .reason("sse_slow_reader"));
    }
    let msg = match Message::parse(&bytes) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(request_id = %cx.request_id, error = %e, "malformed JSON-RPC message");
            return Err(Refusal::error(StatusCode::BAD_REQUEST, e.to_error_object())
                .id(e.id())
                .reason("malformed"));
        }
    };
    crate::observe::message(&msg, bytes.len());
    if msg.method() == "initialize" {
        match handshake::open_session(&cx, msg).await {
            Ok((session, r)) => {
                *conn.session.lock().expect("sse session lock") = Some(session);
                reply(&conn, &r);
            }
            Err(r) => reply(&conn, &r),
        }
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    // An ended or expired session is gone: the client initializes again on this connection.
    let Some(session) = conn.session().filter(|s| cx.gw.sessions.touch(s)) else {
        let id = msg.id.clone().unwrap_or(Id::Null);
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_REQUEST,
            "send initialize first",
        )
        .id(id));
    };
    if let Handled::Call(call) = handshake::handle(&cx, session, msg, true).await? {
        tokio::spawn(pump::run(cx.gw.clone(), call, None, LegacySink(conn)));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}
