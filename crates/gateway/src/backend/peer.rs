//! A JSON-RPC peer over a message transport the gateway owns (a stdio pipe): id remapping,
//! pending calls, progress-token remapping and routing of server→client traffic.
//!
//! One connection serves many client calls at once, so ids and progress tokens are rewritten
//! to gateway-unique values on the way in and restored on the way out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use gatehouse_wire::{ErrorObject, Id, Message, MessageKind, codes, meta};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{BackendError, CallEvent};
use crate::notify::ChangeHub;

struct PendingCall {
    reply: oneshot::Sender<Result<Message, BackendError>>,
    events: Option<mpsc::Sender<CallEvent>>,
    client_progress_token: Option<Value>,
}

#[derive(Default)]
struct PeerState {
    pending: HashMap<i64, PendingCall>,
    closed: Option<String>,
}

/// The client side of one JSON-RPC connection to a server.
pub struct Peer {
    server: String,
    out: mpsc::Sender<Vec<u8>>,
    state: Mutex<PeerState>,
    next_id: AtomicI64,
    hub: Arc<ChangeHub>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("server", &self.server)
            .finish()
    }
}

const PROGRESS_PREFIX: &str = "gatehouse-progress-";

impl Peer {
    /// A peer writing serialised messages (without trailing newline) into `out`.
    pub fn new(server: String, out: mpsc::Sender<Vec<u8>>, hub: Arc<ChangeHub>) -> Arc<Peer> {
        Arc::new(Peer {
            server,
            out,
            state: Mutex::default(),
            next_id: AtomicI64::new(1),
            hub,
        })
    }

    /// Sends a request and waits for its response. Dropping the future sends
    /// `notifications/cancelled` for it.
    pub async fn request(
        self: &Arc<Self>,
        method: &str,
        mut params: Option<Value>,
        events: Option<mpsc::Sender<CallEvent>>,
    ) -> Result<Message, BackendError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut client_progress_token = None;
        if let Some(p) = params.as_mut()
            && let Some(m) = p.get_mut("_meta").and_then(Value::as_object_mut)
            && let Some(tok) = m.get_mut(meta::PROGRESS_TOKEN)
        {
            client_progress_token = Some(std::mem::replace(
                tok,
                Value::from(format!("{PROGRESS_PREFIX}{id}")),
            ));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.state.lock().expect("peer lock");
            if let Some(reason) = &st.closed {
                return Err(BackendError::Unavailable {
                    server: self.server.clone(),
                    reason: reason.clone(),
                });
            }
            st.pending.insert(
                id,
                PendingCall {
                    reply: tx,
                    events,
                    client_progress_token,
                },
            );
        }
        let guard = CancelGuard {
            peer: self.clone(),
            id,
            armed: true,
        };
        if !self.send(&Message::request(Id::Number(id), method, params)) {
            return Err(BackendError::Unavailable {
                server: self.server.clone(),
                reason: "the server is not reading its input (outgoing queue full)".into(),
            });
        }
        let result = rx.await;
        let mut guard = guard;
        guard.armed = false;
        match result {
            Ok(r) => r,
            Err(_) => Err(BackendError::Failed {
                server: self.server.clone(),
                reason: "connection closed".into(),
            }),
        }
    }

    /// Sends a notification.
    pub fn notify(&self, method: &str, params: Option<Value>) {
        let _ = self.send(&Message::notification(method, params));
    }

    /// Queues a message for the server; false when the queue is full (the server stopped
    /// reading) or the connection is gone, so memory never grows behind a stuck server.
    fn send(&self, msg: &Message) -> bool {
        self.out.try_send(msg.to_bytes()).is_ok()
    }

    /// True once the connection closed.
    pub fn is_closed(&self) -> bool {
        self.state.lock().expect("peer lock").closed.is_some()
    }

    /// Fails every pending call: the connection is gone.
    pub fn close(&self, reason: &str) {
        let pending = {
            let mut st = self.state.lock().expect("peer lock");
            st.closed = Some(reason.to_string());
            std::mem::take(&mut st.pending)
        };
        for (_, call) in pending {
            let _ = call.reply.send(Err(BackendError::Failed {
                server: self.server.clone(),
                reason: reason.to_string(),
            }));
        }
    }

    /// Handles one message from the server.
    pub fn handle_incoming(self: &Arc<Self>, msg: Message) {
        match msg.kind() {
            MessageKind::Result | MessageKind::Error => {
                let Some(Id::Number(n)) = msg.id else { return };
                let call = self.state.lock().expect("peer lock").pending.remove(&n);
                if let Some(call) = call {
                    let _ = call.reply.send(Ok(msg));
                }
            }
            MessageKind::Notification => self.handle_notification(msg),
            MessageKind::Request => self.handle_server_request(msg),
        }
    }

    fn handle_notification(&self, mut msg: Message) {
        let method = msg.method().to_string();
        match method.as_str() {
            "notifications/progress" => {
                let id = msg
                    .params
                    .as_ref()
                    .and_then(|p| p.get(meta::PROGRESS_TOKEN))
                    .and_then(Value::as_str)
                    .and_then(|t| t.strip_prefix(PROGRESS_PREFIX))
                    .and_then(|n| n.parse::<i64>().ok());
                let st = self.state.lock().expect("peer lock");
                if let Some(call) = id.and_then(|id| st.pending.get(&id))
                    && let (Some(events), Some(tok)) = (&call.events, &call.client_progress_token)
                {
                    if let Some(p) = msg.params.as_mut().and_then(Value::as_object_mut) {
                        p.insert(meta::PROGRESS_TOKEN.into(), tok.clone());
                    }
                    let _ = events.try_send(CallEvent::Notification(msg));
                }
            }
            "notifications/message" => {
                let st = self.state.lock().expect("peer lock");
                if let Some(events) = sole_call_with_events(&st) {
                    let _ = events.try_send(CallEvent::Notification(msg));
                } else {
                    tracing::debug!(server = %self.server, params = %crate::observe::shown(format_args!("{:?}", msg.params)), "server log message");
                }
            }
            "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed"
            | "notifications/resources/updated"
            // A task names itself: the front door delivers it to the task's creator only.
            | "notifications/tasks"
            | "notifications/tasks/status" => self.hub.publish(&self.server, msg),
            _ => {
                tracing::debug!(server = %self.server, method = %crate::observe::shown(method), "notification from server not relayed")
            }
        }
    }

    fn handle_server_request(self: &Arc<Self>, msg: Message) {
        let server_id = msg.id.clone().unwrap_or(Id::Null);
        if msg.method() == "ping" {
            self.send(&Message::result(server_id, &json!({})));
            return;
        }
        let events = sole_call_with_events(&self.state.lock().expect("peer lock"));
        let Some(events) = events else {
            let reply = if msg.method() == "roots/list" {
                Message::result(server_id, &json!({"roots": []}))
            } else {
                Message::error(
                    server_id,
                    ErrorObject::new(
                        codes::METHOD_NOT_FOUND,
                        "no single client call this request belongs to: the gateway will not guess which client to ask",
                    ),
                )
            };
            self.send(&reply);
            return;
        };
        let (tx, rx) = oneshot::channel();
        if events
            .try_send(CallEvent::ServerRequest {
                request: msg,
                reply: tx,
            })
            .is_err()
        {
            self.send(&Message::error(
                server_id,
                ErrorObject::new(codes::INTERNAL_ERROR, "client is not reachable"),
            ));
            return;
        }
        let peer = self.clone();
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(super::CLIENT_ANSWER_TIMEOUT, rx).await {
                Ok(Ok(mut m)) => {
                    m.id = Some(server_id);
                    m
                }
                _ => Message::error(
                    server_id,
                    ErrorObject::new(codes::INTERNAL_ERROR, "the client did not answer"),
                ),
            };
            let _ = peer.send(&answer);
        });
    }
}

/// The one call that server-initiated traffic without a request id can belong to.
///
/// Over a pipe shared by several calls, a server→client request or log message names no call.
/// Guessing would show one client another's prompt or data, so it is only routed when exactly
/// one call could have caused it.
fn sole_call_with_events(st: &PeerState) -> Option<mpsc::Sender<CallEvent>> {
    let mut with_events = st.pending.values().filter_map(|c| c.events.as_ref());
    match (with_events.next(), with_events.next()) {
        (Some(only), None) => Some(only.clone()),
        _ => None,
    }
}

struct CancelGuard {
    peer: Arc<Peer>,
    id: i64,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let removed = self
            .peer
            .state
            .lock()
            .expect("peer lock")
            .pending
            .remove(&self.id)
            .is_some();
        if removed {
            self.peer.notify(
                "notifications/cancelled",
                Some(json!({"requestId": self.id, "reason": "cancelled by the client"})),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_request() -> Message {
        Message::request(
            Id::Number(77),
            "elicitation/create",
            Some(json!({"message": "secret prompt"})),
        )
    }

    #[tokio::test]
    async fn an_unsolicited_request_reaches_only_a_sole_call() {
        let (out_tx, mut out_rx) = mpsc::channel(16);
        let peer = Peer::new("s".into(), out_tx, Arc::new(ChangeHub::default()));
        let (ev_a, mut rx_a) = mpsc::channel(4);
        let (ev_b, mut rx_b) = mpsc::channel(4);
        let a = {
            let peer = peer.clone();
            tokio::spawn(async move { peer.request("tools/call", None, Some(ev_a)).await })
        };
        let b = {
            let peer = peer.clone();
            tokio::spawn(async move { peer.request("tools/call", None, Some(ev_b)).await })
        };
        // Both requests went out; now the server asks something that names no call.
        let _ = out_rx.recv().await;
        let _ = out_rx.recv().await;
        peer.handle_incoming(server_request());
        let answer = Message::parse(&out_rx.recv().await.unwrap()).unwrap();
        assert_eq!(answer.id, Some(Id::Number(77)));
        assert!(answer.error.is_some(), "refused, not guessed");
        assert!(
            rx_a.try_recv().is_err() && rx_b.try_recv().is_err(),
            "no client saw the prompt"
        );
        a.abort();
        b.abort();
        let _ = (a.await, b.await);
        // With exactly one call in flight, it is that call's.
        let (ev_c, mut rx_c) = mpsc::channel(4);
        let c = {
            let peer = peer.clone();
            tokio::spawn(async move { peer.request("tools/call", None, Some(ev_c)).await })
        };
        while let Ok(Some(m)) =
            tokio::time::timeout(std::time::Duration::from_millis(100), out_rx.recv()).await
        {
            let _ = m; // the cancellations of a and b, then c's request
        }
        peer.handle_incoming(server_request());
        assert!(matches!(
            rx_c.recv().await,
            Some(CallEvent::ServerRequest { .. })
        ));
        c.abort();
    }
}
