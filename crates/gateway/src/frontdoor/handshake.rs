//! The handshake era (2024-11-05 … 2025-11-25) independent of its HTTP transport: opening a
//! sealed session on `initialize`, and handling a session's requests, responses and
//! notifications. Streamable HTTP (`post.rs`) and the legacy HTTP+SSE transport (`sse.rs`)
//! differ only in how the results travel back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_wire::{ErrorObject, Id, Message, MessageKind, codes};
use serde_json::{Value, json};

use super::call::{self, CallStream};
use super::session::{Session, SessionClaims};
use crate::Gateway;
use crate::backend::{ClientContext, UpstreamSession};
use crate::dispatch;
use crate::snapshot::{Snapshot, VirtualServer};

/// Most bytes of client capabilities and info a session id may carry.
const MAX_CARRIED_CLIENT_BYTES: usize = 4096;

/// Opens a session for an `initialize` request: negotiates the version, opens the client's own
/// upstream sessions at handshake-era HTTP members, seals them into the session id. Returns the
/// session and the `initialize` response.
pub(super) async fn open_session(
    gw: &Gateway,
    vs: &VirtualServer,
    msg: Message,
    caller: &gatehouse_identity::Caller,
    request_id: &str,
) -> Result<(Arc<Session>, Message), (Id, ErrorObject)> {
    let id = msg.id.clone().unwrap_or(Id::Null);
    if msg.kind() != MessageKind::Request {
        return Err((
            id,
            ErrorObject::new(codes::INVALID_REQUEST, "initialize must be a request"),
        ));
    }
    let params = msg.params.clone().unwrap_or(Value::Null);
    let version = call::negotiate(params.get("protocolVersion").and_then(Value::as_str));
    let client = ClientContext {
        caller: caller.clone(),
        capabilities: Arc::new(
            params
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
        ),
        client_info: Arc::new(
            params
                .get("clientInfo")
                .cloned()
                .unwrap_or_else(|| json!({})),
        ),
        ..Default::default()
    };
    // Capabilities and client info travel inside the sealed session id, a header on every
    // request: keep them to a size any proxy accepts.
    let carried = client.capabilities.to_string().len() + client.client_info.to_string().len();
    if carried > MAX_CARRIED_CLIENT_BYTES {
        return Err((
            id,
            ErrorObject::new(
                codes::INVALID_PARAMS,
                format!(
                    "capabilities and clientInfo together exceed {MAX_CARRIED_CLIENT_BYTES} bytes"
                ),
            ),
        ));
    }
    let opens = vs.members.iter().map(|m| {
        let client = client.clone();
        async move {
            let sid = tokio::time::timeout(
                Duration::from_secs(10),
                m.server.backend.open_session(&client),
            )
            .await
            .ok()
            .flatten();
            sid.map(|s| (m.server.config.name.clone(), s))
        }
    });
    let up: HashMap<String, UpstreamSession> = futures::future::join_all(opens)
        .await
        .into_iter()
        .flatten()
        .collect();
    let claims = SessionClaims {
        vs: vs.path.clone(),
        v: version.as_str().into(),
        caps: (*client.capabilities).clone(),
        info: (*client.client_info).clone(),
        up,
        iat: 0,
        sub: caller.principal.key().to_string(),
    };
    let session = gw.sessions.create(&gw.keys, claims, version, caller);
    tracing::info!(request_id, virtual_server = %vs.name, version = %version, client = %session.claims.info, "session started");
    let reply = Message::result(id, &dispatch::initialize_result(vs, version, &client).await);
    Ok((session, reply))
}

/// What became of a message on an open session.
pub(super) enum Handled {
    /// A response or notification: nothing to send back but 202.
    Accepted,
    /// The message is refused.
    Rejected(Id, ErrorObject),
    /// A request now running.
    Call(CallStream),
    /// A request the session layer answered itself.
    Reply(Message),
}

/// Handles one message of an open session.
pub(super) async fn handle(
    snapshot: Arc<Snapshot>,
    vs: Arc<VirtualServer>,
    msg: Message,
    session: Arc<Session>,
    caller: &gatehouse_identity::Caller,
    can_stream: bool,
    request_id: &str,
) -> Handled {
    match msg.kind() {
        MessageKind::Result | MessageKind::Error => {
            let key = match &msg.id {
                Some(Id::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let waiter = session.pending.lock().expect("pending lock").remove(&key);
            match waiter {
                Some(tx) => {
                    let _ = tx.send(msg);
                }
                None => {
                    tracing::debug!(request_id, id = %key, "response to an unknown server request")
                }
            }
            Handled::Accepted
        }
        MessageKind::Notification => {
            match msg.method() {
                "notifications/cancelled" => {
                    let target = msg
                        .params
                        .as_ref()
                        .and_then(|p| p.get("requestId"))
                        .and_then(Id::from_value);
                    if let Some(target) = target
                        && let Some(h) = session
                            .inflight
                            .lock()
                            .expect("inflight lock")
                            .remove(&target)
                    {
                        tracing::info!(request_id, %target, "client cancelled a request");
                        h.abort();
                    }
                }
                "notifications/initialized" => {}
                other => {
                    let client = session.client(caller);
                    for m in &vs.members {
                        let mut c = client.clone();
                        c.upstream_session = session.claims.up.get(&m.server.config.name).cloned();
                        // A member that does not take the notification must not hold up the client.
                        let notify = m.server.backend.notify(other, msg.params.clone(), &c);
                        let _ = tokio::time::timeout(m.server.backend.timeout(), notify).await;
                    }
                }
            }
            Handled::Accepted
        }
        MessageKind::Request => {
            if msg.method() == "initialize" {
                let id = msg.id.clone().unwrap_or(Id::Null);
                return Handled::Rejected(
                    id,
                    ErrorObject::new(codes::INVALID_REQUEST, "session is already initialized"),
                );
            }
            if let ("resources/subscribe" | "resources/unsubscribe", Some(uri)) = (
                msg.method(),
                msg.params
                    .as_ref()
                    .and_then(|p| p.get("uri"))
                    .and_then(Value::as_str),
            ) {
                let mut subs = session.subscriptions.lock().expect("subscriptions lock");
                let changed = if msg.method() == "resources/subscribe" {
                    subs.insert(uri.to_string())
                } else {
                    subs.remove(uri)
                };
                if !changed {
                    // Already (un)subscribed: nothing to tell the member, nothing to count twice.
                    let id = msg.id.clone().unwrap_or(Id::Null);
                    return Handled::Reply(Message::result(id, &json!({})));
                }
            }
            if msg.method() == "logging/setLevel"
                && let Some(level) = msg
                    .params
                    .as_ref()
                    .and_then(|p| p.get("level"))
                    .and_then(Value::as_str)
            {
                *session.log_level.lock().expect("log level lock") = Some(level.to_string());
            }
            let ctx = session.call_ctx(caller);
            Handled::Call(call::start(
                snapshot,
                vs,
                msg,
                ctx,
                Some(session),
                can_stream,
            ))
        }
    }
}
