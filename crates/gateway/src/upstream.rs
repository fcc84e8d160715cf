//! Sending decided requests to members: the one place client traffic leaves the gateway.
//!
//! Every function here takes the [`Decided`] the table made for the request and sends exactly
//! the method it names to exactly the member(s) it names. Per member, the steps are: the
//! outbound credential ([`crate::backend::Backend::credential`]), then the call. For handshake-era clients of
//! stateless members it also drives MRTR rounds: a member's `input_required` becomes
//! server→client requests on the client's stream, and the gateway retries with the answers.

use gatehouse_wire::{Era, ErrorObject, Id, Message, codes};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::backend::{BackendError, CallEvent};
use crate::context::CallCtx;
use crate::methods::{Decided, Target};
use crate::snapshot::{Member, VirtualServer};

/// Bound on MRTR rounds the gateway drives for one handshake-era client call.
const MAX_INPUT_ROUNDS: usize = 16;

fn err(id: &Id, code: i64, message: impl Into<String>) -> Message {
    Message::error(id.clone(), ErrorObject::new(code, message))
}

/// The backend's own name of what `params` call (tool or prompt name, resource URI).
fn target_of(params: &Option<Value>) -> Option<&str> {
    let p = params.as_ref()?;
    p.get("name")
        .or_else(|| p.get("uri"))
        .and_then(Value::as_str)
}

/// The member a decision for one member names.
pub fn member<'a>(vs: &'a VirtualServer, decided: &Decided) -> &'a Member {
    match decided.target() {
        Target::Member(i) => &vs.members[i],
        other => unreachable!("a request to one member was decided for {other:?}"),
    }
}

/// What the client sees of a backend failure: a stable message with the request id; the
/// details (which may hold upstream URLs or error bodies) go to the log under that id.
pub fn failure(server: &str, e: &BackendError) -> ErrorObject {
    let request_id = crate::observe::request_id();
    tracing::warn!(
        request_id = request_id.as_deref().unwrap_or(""),
        server,
        error = %crate::observe::shown(&e.to_string()),
        "call to member failed"
    );
    e.to_client_error(request_id.as_deref())
}

/// Sends `msg` to the one member `decided` names and returns its reply (id restored).
pub async fn call(vs: &VirtualServer, decided: &Decided, msg: Message, ctx: &CallCtx) -> Message {
    let member = member(vs, decided);
    crate::observe::server(&member.server.config.name);
    let id = msg.id.clone().unwrap_or(Id::Null);
    let client = ctx.for_member(member);
    let mut params = msg.params;
    // Only a handshake-era client can need another round with the same params (a stateless
    // client retries MRTR itself): keep a copy only then, so relaying stays copy-free.
    let rounds = if ctx.era == Era::Handshake {
        MAX_INPUT_ROUNDS
    } else {
        1
    };
    for _ in 0..rounds {
        let mut sent = if rounds > 1 {
            params.clone()
        } else {
            params.take()
        };
        let span = crate::observe::backend_call(&member.server, decided.method(), target_of(&sent));
        let traced = span
            .as_ref()
            .and_then(|s| crate::observe::trace_upstream(s, &mut sent, &client));
        let client = traced.as_ref().unwrap_or(&client);
        // Credentials, then (where resilience layers will go) the call itself.
        let called = match member.server.backend.credential(client).await {
            Ok(outbound) => {
                member
                    .server
                    .backend
                    .call(decided, outbound, sent, client, ctx.events.clone())
                    .await
            }
            Err(e) => Err(e),
        };
        crate::observe::backend_result(&member.server.config.name, span, &called);
        let reply = match called {
            Ok(r) => r,
            Err(e) => return Message::error(id, failure(&member.server.config.name, &e)),
        };
        let needs_input = ctx.era == Era::Handshake
            && reply
                .result
                .as_ref()
                .is_some_and(|r| r.get().contains("\"input_required\""));
        let Some(result) = needs_input
            .then(|| reply.result_value())
            .flatten()
            .filter(|v| v.get("resultType").and_then(Value::as_str) == Some("input_required"))
        else {
            let mut reply = reply;
            reply.id = Some(id);
            return reply;
        };
        let responses = match ask_client(&result, ctx).await {
            Ok(r) => r,
            Err(e) => return Message::error(id, e),
        };
        let p = params.get_or_insert_with(|| json!({}));
        p["inputResponses"] = Value::Object(responses);
        match result.get("requestState") {
            Some(s) => p["requestState"] = s.clone(),
            None => {
                if let Some(o) = p.as_object_mut() {
                    o.remove("requestState");
                }
            }
        }
    }
    err(&id, codes::INTERNAL_ERROR, "too many input rounds")
}

/// Puts a stateless member's `inputRequests` to a handshake-era client as server→client
/// requests on its stream and gathers the answers.
async fn ask_client(result: &Value, ctx: &CallCtx) -> Result<Map<String, Value>, ErrorObject> {
    let internal = |m: &str| ErrorObject::new(codes::INTERNAL_ERROR, m.to_string());
    let Some(events) = &ctx.events else {
        return Err(internal(
            "the server needs input but the client cannot be asked on this request",
        ));
    };
    let mut responses = Map::new();
    let Some(requests) = result.get("inputRequests").and_then(Value::as_object) else {
        return Ok(responses);
    };
    for (key, req) in requests {
        let method = req
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (tx, rx) = oneshot::channel();
        let request = Message::request(Id::Null, method, req.get("params").cloned());
        if events
            .send(CallEvent::ServerRequest { request, reply: tx })
            .await
            .is_err()
        {
            return Err(internal("client went away"));
        }
        match tokio::time::timeout(crate::backend::CLIENT_ANSWER_TIMEOUT, rx).await {
            Ok(Ok(answer)) => {
                if let Some(v) = answer.result_value() {
                    responses.insert(key.clone(), v);
                } else if let Some(e) = answer.error {
                    return Err(e);
                }
            }
            _ => return Err(internal("the client did not answer")),
        }
    }
    Ok(responses)
}

/// Sends a decided request to every member and ignores their answers (`logging/setLevel`).
pub async fn call_all(vs: &VirtualServer, decided: &Decided, msg: &Message, ctx: &CallCtx) {
    debug_assert_eq!(decided.target(), Target::Members);
    let calls = vs.members.iter().map(|m| {
        let client = ctx.for_member(m);
        let params = msg.params.clone();
        async move {
            if let Ok(outbound) = m.server.backend.credential(&client).await {
                let _ = m
                    .server
                    .backend
                    .call(decided, outbound, params, &client, None)
                    .await;
            }
        }
    });
    futures::future::join_all(calls).await;
}

/// Sends a decided notification to every member (each within its timeout, so one that does
/// not take it cannot hold up the client).
pub async fn notify_all(
    vs: &VirtualServer,
    decided: &Decided,
    params: Option<Value>,
    client_for: impl Fn(&Member) -> crate::backend::ClientContext,
) {
    debug_assert_eq!(decided.target(), Target::Members);
    for m in &vs.members {
        let c = client_for(m);
        let notify = m.server.backend.notify(decided, params.clone(), &c);
        let _ = tokio::time::timeout(m.server.backend.timeout(), notify).await;
    }
}

/// Sends a decided request to one member outside any client call (releasing or holding a
/// subscription for a caller); the reply is only logged.
pub async fn call_detached(
    vs: &VirtualServer,
    decided: &Decided,
    params: Option<Value>,
    client: &crate::backend::ClientContext,
) -> Result<Message, BackendError> {
    let m = member(vs, decided);
    let outbound = m.server.backend.credential(client).await?;
    m.server
        .backend
        .call(decided, outbound, params, client, None)
        .await
}

/// How long opening or closing one member's upstream session may take.
const SESSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the client's own upstream sessions at the members that keep handshake-era sessions
/// (`initialize`, decided for every member). Members that fail or have none are skipped.
pub async fn open_sessions(
    vs: &VirtualServer,
    decided: &Decided,
    client: &crate::backend::ClientContext,
) -> std::collections::HashMap<String, crate::backend::UpstreamSession> {
    debug_assert_eq!(decided.target(), Target::Members);
    let opens = vs.members.iter().map(|m| async move {
        let sid = tokio::time::timeout(
            SESSION_TIMEOUT,
            m.server.backend.open_session(decided, client),
        )
        .await
        .ok()
        .flatten();
        sid.map(|s| (m.server.config.name.clone(), s))
    });
    futures::future::join_all(opens)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Ends a client's upstream sessions (its session ended).
pub async fn close_sessions(
    vs: &VirtualServer,
    up: &std::collections::HashMap<String, crate::backend::UpstreamSession>,
) {
    for m in &vs.members {
        if let Some(s) = up.get(&m.server.config.name) {
            let _ = tokio::time::timeout(SESSION_TIMEOUT, m.server.backend.close_session(s)).await;
        }
    }
}

/// Opens the streams of server-initiated messages of a client's own upstream sessions (for
/// its GET stream): what members send there belongs to that client.
pub async fn open_session_streams(
    vs: &VirtualServer,
    up: &std::collections::HashMap<String, crate::backend::UpstreamSession>,
    client: &crate::backend::ClientContext,
) -> Vec<tokio::sync::mpsc::Receiver<CallEvent>> {
    let mut out = Vec::new();
    for m in &vs.members {
        let (Some(s), crate::backend::Backend::Http(b)) =
            (up.get(&m.server.config.name), &m.server.backend)
        else {
            continue;
        };
        match tokio::time::timeout(b.timeout(), b.open_stream(Some(s), &[], client)).await {
            Ok(Ok(rx)) => out.push(rx),
            Ok(Err(e)) => {
                tracing::debug!(server = %m.server.config.name, error = %e, "member has no session stream")
            }
            Err(_) => {
                tracing::debug!(server = %m.server.config.name, "member's session stream did not open in time")
            }
        }
    }
    out
}
