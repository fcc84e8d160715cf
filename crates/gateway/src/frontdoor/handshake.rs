//! The handshake era (2024-11-05 … 2025-11-25) independent of its HTTP transport: opening a
//! sealed session on `initialize`, and handling a session's requests, responses and
//! notifications. Streamable HTTP (`post.rs`) and the legacy HTTP+SSE transport (`sse.rs`)
//! differ only in how the results travel back.

use std::sync::Arc;

use gatehouse_wire::{Era, ErrorObject, Id, Message, MessageKind, ProtocolVersion, codes};
use serde_json::{Value, json};

use super::call::{self, Call, CallStream};
use super::request::{Refusal, RequestCtx};
use super::session::{Session, SessionClaims};
use crate::backend::ClientContext;
use crate::methods::{self, Route};
use crate::{dispatch, subscriptions, upstream};

/// Most bytes of client capabilities and info a session id may carry.
const MAX_CARRIED_CLIENT_BYTES: usize = 4096;

/// The negotiated version for a handshake-era `initialize`.
pub fn negotiate(requested: Option<&str>) -> ProtocolVersion {
    match requested.and_then(|r| r.parse::<ProtocolVersion>().ok()) {
        Some(v) if v.era() == Era::Handshake => v,
        _ => ProtocolVersion::LATEST_HANDSHAKE,
    }
}

/// Opens a session for an `initialize` request: negotiates the version, opens the client's own
/// upstream sessions at handshake-era HTTP members, seals them into the session id. Returns the
/// session and the `initialize` response, or the JSON-RPC error to answer.
pub(super) async fn open_session(
    cx: &RequestCtx,
    msg: Message,
) -> Result<(Arc<Session>, Message), Message> {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let refuse =
        |code: i64, message: String| Message::error(id.clone(), ErrorObject::new(code, message));
    if msg.kind() != MessageKind::Request {
        return Err(refuse(
            codes::INVALID_REQUEST,
            "initialize must be a request".into(),
        ));
    }
    let params = msg.params.clone().unwrap_or(Value::Null);
    let info = params.get("clientInfo");
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
    let version = negotiate(params.get("protocolVersion").and_then(Value::as_str));
    let client = ClientContext {
        caller: cx.caller.clone(),
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
        return Err(refuse(
            codes::INVALID_PARAMS,
            format!("capabilities and clientInfo together exceed {MAX_CARRIED_CLIENT_BYTES} bytes"),
        ));
    }
    let up = upstream::open_sessions(&cx.vs, &methods::initialize(), &client).await;
    let claims = SessionClaims {
        vs: cx.vs.path.clone(),
        v: version.as_str().into(),
        caps: (*client.capabilities).clone(),
        info: (*client.client_info).clone(),
        up,
        iat: 0,
        sub: cx.caller.principal.key().to_string(),
    };
    let gw = &cx.gw;
    let session = gw.sessions.create(&gw.keys, claims, version, &cx.caller);
    tracing::info!(request_id = %cx.request_id, virtual_server = %cx.vs.name, version = %version, client = %crate::observe::shown(&session.claims.info.to_string()), "session started");
    let reply = Message::result(
        id,
        &dispatch::initialize_result(&cx.vs, version, &client).await,
    );
    Ok((session, reply))
}

/// What became of a message on an open session.
pub(super) enum Handled {
    /// A response or notification: nothing to send back but 202.
    Accepted,
    /// A request now running.
    Call(CallStream),
}

/// Handles one message of an open session.
pub(super) async fn handle(
    cx: &RequestCtx,
    session: Arc<Session>,
    msg: Message,
    can_stream: bool,
) -> Result<Handled, Refusal> {
    match msg.kind() {
        MessageKind::Result | MessageKind::Error => {
            answer(cx, &session, msg);
            Ok(Handled::Accepted)
        }
        MessageKind::Notification => {
            notify(cx, &session, msg).await;
            Ok(Handled::Accepted)
        }
        MessageKind::Request => request(cx, session, msg, can_stream).await,
    }
}

/// A client's answer to a server→client request of this session.
fn answer(cx: &RequestCtx, session: &Session, msg: Message) {
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
            tracing::debug!(request_id = %cx.request_id, id = %crate::observe::shown(&key), "response to an unknown server request")
        }
    }
}

/// A client's notification: cancellation of its own request, or relayed to the members the
/// table lets it reach.
async fn notify(cx: &RequestCtx, session: &Session, msg: Message) {
    if msg.method() == "notifications/cancelled" {
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
            tracing::info!(request_id = %cx.request_id, %target, "client cancelled a request");
            h.abort();
        }
        return;
    }
    let Some(decided) = methods::authorize_notification(&cx.vs, &msg, Era::Handshake) else {
        return;
    };
    let client = session.client(&cx.caller);
    upstream::notify_all(&cx.vs, &decided, msg.params.clone(), |m| {
        let mut c = client.clone();
        c.upstream_session = session.claims.up.get(&m.server.config.name).cloned();
        c
    })
    .await;
}

async fn request(
    cx: &RequestCtx,
    session: Arc<Session>,
    msg: Message,
    can_stream: bool,
) -> Result<Handled, Refusal> {
    if msg.method() == "logging/setLevel"
        && let Some(level) = msg
            .params
            .as_ref()
            .and_then(|p| p.get("level"))
            .and_then(Value::as_str)
    {
        *session.log_level.lock().expect("log level lock") = Some(level.to_string());
    }
    let ctx = session.call_ctx(&cx.caller);
    let client_id = msg.id.clone().unwrap_or(Id::Null);
    let method = msg.method().to_string();
    let scope = super::mrtr::request_scope(&cx.vs.path, cx.caller.principal.key(), &msg);
    let route = match super::authorize::authorize(cx, &ctx, msg).await? {
        Route::Subscribe { uri, decided, msg } => {
            subscriptions::subscribe(&cx.vs, &ctx, &session.subscriptions, uri, decided, msg).await
        }
        Route::Unsubscribe { uri, msg } => {
            subscriptions::unsubscribe(&cx.vs, &session.subscriptions, &uri, msg)
        }
        route => route,
    };
    // Answers run as calls too, so a denial is audited as one (its decision is in the note).
    Ok(Handled::Call(call::start(
        cx,
        Call {
            client_id,
            method,
            route,
            ctx,
            session: Some(session),
            can_stream,
            scope,
        },
    )))
}
