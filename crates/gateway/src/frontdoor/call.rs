//! One client request in flight: the spawned dispatch task, the events it produces, and how
//! they reach the client in its era — on an SSE stream for handshake-era clients, as an MRTR
//! `input_required` result (with the backend call parked) for stateless clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_wire::jsonrpc::insert_first;
use gatehouse_wire::{Era, ErrorObject, Id, Message, ProtocolVersion, capability, codes};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::session::Session;
use crate::backend::CallEvent;
use crate::dispatch::{self, CallCtx};
use crate::seal::Keyring;
use crate::snapshot::{Snapshot, VirtualServer};

/// Aborts the dispatch task when the last holder goes away (client disconnected).
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running client request.
#[derive(Debug)]
pub struct CallStream {
    client_id: Id,
    method: String,
    era: Era,
    session: Option<Arc<Session>>,
    can_stream: bool,
    /// What the client declared it can answer (elicitation, sampling, roots).
    client_caps: Arc<Value>,
    /// What a retry must match to resume this call after MRTR: virtual server, method, target
    /// and a digest of the arguments.
    scope: String,
    /// Results are for this caller only (`cacheScope: private`): the caller is authenticated,
    /// or policies decide what it sees.
    private: bool,
    events: mpsc::Receiver<CallEvent>,
    done: oneshot::Receiver<Message>,
    task: AbortOnDrop,
    finished: bool,
}

/// The binding of a request for MRTR: a retry resumes a parked call only if the same principal
/// asks for the same thing on the same virtual server.
fn request_scope(vs_path: &str, principal: &str, msg: &Message) -> String {
    use sha2::Digest;
    let arguments = msg
        .params
        .as_ref()
        .and_then(|p| p.get("arguments"))
        .map(|a| a.to_string())
        .unwrap_or_default();
    let digest = hex::encode(sha2::Sha256::digest(arguments.as_bytes()));
    format!(
        "{vs_path} {principal} {} {} {digest}",
        msg.method(),
        msg.target_name().unwrap_or("")
    )
}

/// Starts dispatching `msg` on a task of its own; the task holds `snapshot` so a reload never
/// pulls the configuration out from under an in-flight call.
pub fn start(
    snapshot: Arc<Snapshot>,
    vs: Arc<VirtualServer>,
    msg: Message,
    mut ctx: CallCtx,
    session: Option<Arc<Session>>,
    can_stream: bool,
) -> CallStream {
    let (ev_tx, ev_rx) = mpsc::channel(64);
    let (done_tx, done_rx) = oneshot::channel();
    let client_id = msg.id.clone().unwrap_or(Id::Null);
    let method = msg.method().to_string();
    let era = ctx.era;
    let client_caps = ctx.client.capabilities.clone();
    let principal = &ctx.client.caller.principal;
    let scope = request_scope(&vs.path, principal.key(), &msg);
    // Results are per caller when the caller is authenticated or policies filter what it
    // sees (a policy may look at the address or the time, even for anonymous callers).
    let private =
        principal.kind != gatehouse_identity::PrincipalKind::Anonymous || vs.authz.is_some();
    ctx.events = Some(ev_tx);
    // The call's task writes the audit event (before the response can be released) — or, if
    // the task is dropped first, records the call as cancelled.
    let note = crate::observe::current();
    if let Some(n) = &note {
        n.claim();
        let info = &ctx.client.client_info;
        let text = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_string);
        crate::observe::note(|f| {
            f.client.name = text("name");
            f.client.version = text("version");
        });
    }
    let guard = note.clone().map(crate::observe::CallGuard);
    let task = tokio::spawn(crate::observe::scope(note, async move {
        let mut reply = dispatch::dispatch(&vs, msg, &ctx).await;
        drop(snapshot);
        if let Some(g) = &guard {
            g.0.finish_call(&mut reply).await;
        }
        let _ = done_tx.send(reply);
    }));
    if let Some(s) = &session {
        s.inflight
            .lock()
            .expect("inflight lock")
            .insert(client_id.clone(), task.abort_handle());
    }
    CallStream {
        client_id,
        method,
        era,
        session,
        can_stream,
        client_caps,
        scope,
        private,
        events: ev_rx,
        done: done_rx,
        task: AbortOnDrop(task),
        finished: false,
    }
}

/// What the front door sends next.
#[derive(Debug)]
pub enum Step {
    /// A notification or server→client request for the client's stream.
    Message(Message),
    /// The response; nothing follows.
    Final(Message),
}

impl CallStream {
    /// The handshake-era session this call belongs to, if any.
    pub fn session(&self) -> Option<&Arc<Session>> {
        self.session.as_ref()
    }

    /// The next thing to send to the client, or `None` after the final response.
    pub async fn next(&mut self, keys: &Keyring, parked: &Parked) -> Option<Step> {
        if self.finished {
            return None;
        }
        loop {
            let ev = tokio::select! {
                biased;
                Some(ev) = self.events.recv() => ev,
                r = &mut self.done => {
                    let reply = r.unwrap_or_else(|_| internal(&self.client_id));
                    // Events sent before the response are already queued: deliver them first.
                    if let Ok(ev) = self.events.try_recv() {
                        self.done = { let (tx, rx) = oneshot::channel(); let _ = tx.send(reply); rx };
                        match self.deliver(ev, keys, parked).await { Some(step) => return Some(step), None => continue }
                    }
                    self.finished = true;
                    if let Some(round) = self.authorize_round(&reply, keys) {
                        return Some(Step::Final(round));
                    }
                    return Some(Step::Final(self.finish(reply)));
                }
            };
            if let Some(step) = self.deliver(ev, keys, parked).await {
                return Some(step);
            }
        }
    }

    /// Refuses a server→client request the client did not declare the capability for; the
    /// backend gets -32021 and decides what to do. Returns the request when it may proceed.
    fn screen(
        &self,
        request: Message,
        reply: oneshot::Sender<Message>,
    ) -> Option<(Message, oneshot::Sender<Message>)> {
        match capability::required_by(request.method(), request.params.as_ref()) {
            Some(required) if !capability::declared(&self.client_caps, required) => {
                let message = format!("the client did not declare the {} capability", required.0);
                let e = ErrorObject::with_data(
                    codes::MISSING_CLIENT_CAPABILITY,
                    message,
                    capability::missing_error_data(required),
                );
                let _ = reply.send(Message::error(Id::Null, e));
                None
            }
            _ => Some((request, reply)),
        }
    }

    async fn deliver(&mut self, ev: CallEvent, keys: &Keyring, parked: &Parked) -> Option<Step> {
        let (request, reply) = match ev {
            CallEvent::Notification(m) => return self.can_stream.then_some(Step::Message(m)),
            CallEvent::ServerRequest { request, reply } => self.screen(request, reply)?,
        };
        match (self.era, &self.session) {
            (Era::Handshake, Some(session)) if self.can_stream => {
                Some(Step::Message(session.register_request(request, reply)))
            }
            (Era::Stateless, _) => {
                let mut requests = vec![(request, reply)];
                // A server may send several requests at once; gather them into one round.
                while let Ok(Some(ev)) =
                    tokio::time::timeout(GATHER_WINDOW, self.events.recv()).await
                {
                    if let CallEvent::ServerRequest { request, reply } = ev
                        && let Some(r) = self.screen(request, reply)
                    {
                        requests.push(r);
                    }
                }
                self.finished = true;
                Some(Step::Final(self.park(requests, keys, parked)))
            }
            _ => {
                let e = ErrorObject::new(
                    codes::METHOD_NOT_FOUND,
                    "the client cannot receive server requests on this request",
                );
                let _ = reply.send(Message::error(Id::Null, e));
                None
            }
        }
    }

    /// Turns a server→client request into an MRTR `input_required` result for a stateless
    /// client, parking the backend call until the client retries.
    fn park(
        &mut self,
        requests: Vec<(Message, oneshot::Sender<Message>)>,
        keys: &Keyring,
        parked: &Parked,
    ) -> Message {
        let mut input_requests = Map::new();
        let mut replies = HashMap::new();
        for (i, (req, reply)) in requests.into_iter().enumerate() {
            let key = format!("input-{}", i + 1);
            input_requests.insert(
                key.clone(),
                json!({"method": req.method(), "params": req.params.clone().unwrap_or(json!({}))}),
            );
            replies.insert(key, reply);
        }
        let handle = parked.insert(ParkedCall {
            stream: CallStream {
                client_id: Id::Null,
                method: std::mem::take(&mut self.method),
                era: self.era,
                session: None,
                can_stream: self.can_stream,
                client_caps: self.client_caps.clone(),
                scope: self.scope.clone(),
                private: self.private,
                events: std::mem::replace(&mut self.events, mpsc::channel(1).1),
                done: std::mem::replace(&mut self.done, oneshot::channel().1),
                task: std::mem::replace(&mut self.task, AbortOnDrop(tokio::spawn(async {}))),
                finished: false,
            },
            replies,
            created: Instant::now(),
        });
        let token = RequestState {
            call: Some(handle),
            scope: self.scope.clone(),
        }
        .seal(keys);
        Message::result(
            self.client_id.clone(),
            &json!({"resultType": "input_required", "inputRequests": input_requests, "requestState": token}),
        )
    }

    /// A stateless client that can open URLs is asked to authorize Gatehouse at a server (a
    /// `user_oauth` credential) with an MRTR URL elicitation instead of the `-32042` error;
    /// its retry runs the request again.
    fn authorize_round(&self, reply: &Message, keys: &Keyring) -> Option<Message> {
        if self.era != Era::Stateless
            || !capability::declared(&self.client_caps, ("elicitation", Some("url")))
        {
            return None;
        }
        let error = reply
            .error
            .as_ref()
            .filter(|e| e.code == crate::backend::URL_ELICITATION_REQUIRED)?;
        let elicitation = error.data.as_ref()?.get("elicitations")?.get(0)?;
        let token = RequestState {
            call: None,
            scope: self.scope.clone(),
        }
        .seal(keys);
        let request = json!({"method": "elicitation/create", "params": {
            "mode": "url", "url": elicitation.get("url")?, "message": elicitation.get("message")?}});
        Some(Message::result(
            self.client_id.clone(),
            &json!({"resultType": "input_required", "inputRequests": {"authorize": request}, "requestState": token}),
        ))
    }

    fn finish(&self, mut reply: Message) -> Message {
        reply.id = Some(self.client_id.clone());
        if let Some(s) = &self.session {
            s.inflight
                .lock()
                .expect("inflight lock")
                .remove(&self.client_id);
        }
        if self.era == Era::Stateless {
            stamp_stateless_result(&mut reply, &self.method, self.private);
        }
        reply
    }
}

fn internal(id: &Id) -> Message {
    Message::error(
        id.clone(),
        ErrorObject::new(codes::INTERNAL_ERROR, "the request was aborted"),
    )
}

/// Methods whose 2026-07-28 results must carry cache hints.
fn cacheable(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    )
}

/// Adds what a 2026-07-28 client requires on results: `resultType`, and `ttlMs`/`cacheScope` on
/// cacheable results: `private` when results depend on the caller (authenticated, or lists
/// filtered by policy), else `public`.
pub fn stamp_stateless_result(reply: &mut Message, method: &str, private: bool) {
    if let Some(e) = reply.error.as_mut()
        && e.code == codes::RESOURCE_NOT_FOUND_LEGACY
    {
        // SEP-2164: "resource not found" is -32602 since 2026-07-28.
        e.code = codes::INVALID_PARAMS;
    }
    let Some(raw) = reply.result.take() else {
        return;
    };
    let text = raw.get();
    let (has_scope, has_ttl, has_type) = (
        text.contains("\"cacheScope\""),
        text.contains("\"ttlMs\""),
        text.contains("\"resultType\""),
    );
    let mut out = raw;
    if cacheable(method) && !has_scope {
        let scope = if private { "private" } else { "public" };
        out = insert_first(&out, "cacheScope", &Value::from(scope));
    }
    if cacheable(method) && !has_ttl {
        out = insert_first(&out, "ttlMs", &Value::from(CACHE_TTL_MS));
    }
    if !has_type {
        out = insert_first(&out, "resultType", &Value::from("complete"));
    }
    reply.result = Some(out);
}

/// How long to wait for more server→client requests before answering `input_required`.
const GATHER_WINDOW: Duration = Duration::from_millis(25);
/// How long clients may cache lists; `list_changed` tells them sooner.
const CACHE_TTL_MS: u64 = 30_000;
/// Purpose bound into sealed request states.
const STATE_PURPOSE: &str = "gatehouse/request-state/v1";
/// Marks request states the gateway minted (others belong to a backend and are relayed).
pub const STATE_PREFIX: &str = "gatehouse:";
/// Most calls parked at once on this process.
const MAX_PARKED: usize = 10_000;
/// How long a parked call waits for the client's retry.
const PARK_TTL: Duration = Duration::from_secs(600);

#[derive(Serialize, Deserialize)]
struct RequestState {
    /// The parked call; `None` when nothing is parked and the retry runs the request again
    /// (the gateway's own input requests, such as "authorize at this URL").
    call: Option<u64>,
    scope: String,
}

impl RequestState {
    fn seal(&self, keys: &Keyring) -> String {
        let plaintext = serde_json::to_vec(self).expect("state serialises");
        format!("{STATE_PREFIX}{}", keys.seal(STATE_PURPOSE, &plaintext))
    }
}

/// What a retry carrying a gateway `requestState` resumes.
pub enum Resumed {
    /// The parked backend call, now answering to the retry.
    Parked(CallStream),
    /// Nothing was parked: run the request again (without `requestState`/`inputResponses`).
    /// `declined` when the user declined the gateway's input request.
    Again {
        /// The user answered `decline` or `cancel`.
        declined: bool,
    },
}

/// A backend call waiting for a stateless client's `inputResponses`.
#[derive(Debug)]
pub struct ParkedCall {
    stream: CallStream,
    replies: HashMap<String, oneshot::Sender<Message>>,
    created: Instant,
}

/// Calls parked by MRTR, held by the process that serves them.
#[derive(Debug, Default)]
pub struct Parked {
    calls: Mutex<HashMap<u64, ParkedCall>>,
}

impl Parked {
    /// Drops parked calls whose client never came back.
    pub fn sweep(&self) {
        self.calls
            .lock()
            .expect("parked lock")
            .retain(|_, c| c.created.elapsed() < PARK_TTL);
    }

    fn insert(&self, call: ParkedCall) -> u64 {
        // Random, so a parked call cannot be guessed even apart from the sealed state.
        let id = rand::random::<u64>();
        let mut calls = self.calls.lock().expect("parked lock");
        calls.retain(|_, c| c.created.elapsed() < PARK_TTL);
        if calls.len() >= MAX_PARKED {
            // Refuse rather than grow: the oldest parked call is dropped (its backend call ends).
            if let Some(oldest) = calls.iter().min_by_key(|(_, c)| c.created).map(|(k, _)| *k) {
                calls.remove(&oldest);
            }
        }
        calls.insert(id, call);
        id
    }

    /// Resumes a parked call with the client's retry: delivers `inputResponses` to the waiting
    /// backend requests and returns the call, now answering to the retry's id.
    pub fn resume(
        &self,
        keys: &Keyring,
        token: &str,
        retry: &Message,
        vs_path: &str,
        principal: &str,
    ) -> Result<Resumed, ErrorObject> {
        let invalid =
            || ErrorObject::new(codes::INVALID_PARAMS, "requestState is invalid or expired");
        let sealed = token.strip_prefix(STATE_PREFIX).ok_or_else(invalid)?;
        let state: RequestState = keys
            .open(STATE_PURPOSE, sealed)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(invalid)?;
        if state.scope != request_scope(vs_path, principal, retry) {
            return Err(ErrorObject::new(
                codes::INVALID_PARAMS,
                "requestState belongs to a different request",
            ));
        }
        let responses = retry
            .params
            .as_ref()
            .and_then(|p| p.get("inputResponses"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let Some(parked) = state.call else {
            let action = responses
                .values()
                .next()
                .and_then(|r| r.get("action"))
                .and_then(Value::as_str);
            return Ok(Resumed::Again {
                declined: matches!(action, Some("decline" | "cancel")),
            });
        };
        let mut call = self
            .calls
            .lock()
            .expect("parked lock")
            .remove(&parked)
            .ok_or_else(invalid)?;
        if call.created.elapsed() > PARK_TTL {
            return Err(invalid());
        }
        for (key, reply) in call.replies.drain() {
            let answer = match responses.get(&key) {
                Some(v) => Message::result(Id::Null, v),
                None => Message::error(
                    Id::Null,
                    ErrorObject::new(
                        codes::INVALID_PARAMS,
                        format!("no input response for {key}"),
                    ),
                ),
            };
            let _ = reply.send(answer);
        }
        call.stream.client_id = retry.id.clone().unwrap_or(Id::Null);
        Ok(Resumed::Parked(call.stream))
    }
}

/// The negotiated version for a handshake-era `initialize`.
pub fn negotiate(requested: Option<&str>) -> ProtocolVersion {
    match requested.and_then(|r| r.parse::<ProtocolVersion>().ok()) {
        Some(v) if v.era() == Era::Handshake => v,
        _ => ProtocolVersion::LATEST_HANDSHAKE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Value) -> Message {
        Message::request(
            Id::Number(1),
            "tools/call",
            Some(json!({"name": name, "arguments": args})),
        )
    }

    #[test]
    fn request_scope_binds_server_target_and_arguments() {
        let base = request_scope("/mcp", "anonymous", &call("delete", json!({"id": 1})));
        let mut retry = call("delete", json!({"id": 1}));
        retry.params.as_mut().unwrap()["inputResponses"] = json!({"k": {}});
        assert_eq!(
            request_scope("/mcp", "anonymous", &retry),
            base,
            "a retry with answers matches"
        );
        assert_ne!(
            request_scope("/mcp", "anonymous", &call("delete", json!({"id": 2}))),
            base
        );
        assert_ne!(
            request_scope("/mcp", "anonymous", &call("harmless", json!({"id": 1}))),
            base
        );
        assert_ne!(
            request_scope("/other", "anonymous", &call("delete", json!({"id": 1}))),
            base
        );
    }
}
