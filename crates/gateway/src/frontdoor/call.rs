//! One client request in flight: the task that runs its decided route, and the events it
//! produces, turned into what the client's era expects — messages for an SSE stream
//! (handshake era, or a stateless response stream), or an MRTR `input_required` result with
//! the backend call parked (stateless era, see [`super::mrtr`]).

use std::sync::Arc;

use gatehouse_wire::{Era, ErrorObject, Id, Message, capability, codes};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::mrtr;
use super::request::RequestCtx;
use super::session::Session;
use crate::Gateway;
use crate::backend::CallEvent;
use crate::context::CallCtx;
use crate::methods::{Route, Target};
use crate::tasks::{self, TaskScope};

/// Aborts the call's task when the last holder goes away (the client disconnected).
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request ready to run: its decided route and what the client's era needs of it.
#[derive(Debug)]
pub struct Call {
    /// The client's JSON-RPC id.
    pub client_id: Id,
    /// The client's method.
    pub method: String,
    /// What the table decided.
    pub route: Route,
    /// The caller's view.
    pub ctx: CallCtx,
    /// The handshake-era session it runs on, if any.
    pub session: Option<Arc<Session>>,
    /// The client accepts an SSE response.
    pub can_stream: bool,
    /// What a retry must match to resume this call after MRTR ([`mrtr::request_scope`]).
    pub scope: String,
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
    scope: String,
    /// Results are for this caller only (`cacheScope: private`): the caller is authenticated,
    /// or policies decide what it sees.
    private: bool,
    /// Whose task ids the call's notifications carry, and from which member.
    task_owner: Option<(Arc<Gateway>, TaskScope, String)>,
    events: mpsc::Receiver<CallEvent>,
    done: oneshot::Receiver<Message>,
    task: AbortOnDrop,
    finished: bool,
}

/// Starts running `call` on a task of its own; the task holds the snapshot so a reload never
/// pulls the configuration out from under an in-flight call.
pub fn start(cx: &RequestCtx, call: Call) -> CallStream {
    let Call {
        client_id,
        method,
        route,
        mut ctx,
        session,
        can_stream,
        scope,
    } = call;
    let (ev_tx, ev_rx) = mpsc::channel(64);
    let (done_tx, done_rx) = oneshot::channel();
    let era = ctx.era;
    let client_caps = ctx.client.capabilities.clone();
    let principal = &ctx.client.caller.principal;
    // Results are per caller when the caller is authenticated or policies filter what it
    // sees (a policy may look at the address or the time, even for anonymous callers).
    let private =
        principal.kind != gatehouse_identity::PrincipalKind::Anonymous || cx.vs.authz.is_some();
    let task_owner = match &route {
        Route::Member { decided, .. } => match decided.target() {
            Target::Member(i) => Some((
                cx.gw.clone(),
                TaskScope::of(&cx.vs, &ctx),
                cx.vs.members[i].server.config.name.clone(),
            )),
            _ => None,
        },
        _ => None,
    };
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
    let (gw, snapshot, vs) = (cx.gw.clone(), cx.snapshot.clone(), cx.vs.clone());
    let task = tokio::spawn(crate::observe::scope(note, async move {
        // Boxed: dispatch's future is several KiB; inline, the task would copy it into the
        // task cell and again when the task finishes.
        let mut reply = Box::pin(crate::dispatch::run(&gw, &vs, route, &ctx)).await;
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
        task_owner,
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
    pub async fn next(&mut self, gw: &Gateway) -> Option<Step> {
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
                        match self.deliver(ev, gw).await { Some(step) => return Some(step), None => continue }
                    }
                    self.finished = true;
                    if let Some(round) = mrtr::authorize_round(self.round(), self.era, &self.client_caps, &reply, &gw.keys) {
                        return Some(Step::Final(round));
                    }
                    return Some(Step::Final(self.finish(reply)));
                }
            };
            if let Some(step) = self.deliver(ev, gw).await {
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

    async fn deliver(&mut self, ev: CallEvent, gw: &Gateway) -> Option<Step> {
        let (request, reply) = match ev {
            CallEvent::Notification(mut m) => {
                if !self.can_stream {
                    return None;
                }
                // A task this call created is reported under the caller's own handle.
                if let Some((gw, scope, server)) = &self.task_owner
                    && tasks::notified_task(&m).is_some()
                {
                    tasks::seal_notification(&gw.keys, scope, server, &mut m);
                }
                return Some(Step::Message(m));
            }
            CallEvent::ServerRequest { request, reply } => self.screen(request, reply)?,
        };
        match (self.era, &self.session) {
            (Era::Handshake, Some(session)) if self.can_stream => {
                Some(Step::Message(session.register_request(request, reply)))
            }
            (Era::Stateless, _) => {
                let requests = self.gather(request, reply).await;
                self.finished = true;
                let parked = self.detach();
                Some(Step::Final(mrtr::park(
                    self.round(),
                    parked,
                    requests,
                    &gw.keys,
                    &gw.parked,
                )))
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

    fn finish(&self, mut reply: Message) -> Message {
        reply.id = Some(self.client_id.clone());
        if let Some(s) = &self.session {
            s.inflight
                .lock()
                .expect("inflight lock")
                .remove(&self.client_id);
        }
        if self.era == Era::Stateless {
            super::stateless::stamp_result(&mut reply, &self.method, self.private);
        }
        reply
    }

    fn round(&self) -> mrtr::Round<'_> {
        mrtr::Round {
            client_id: &self.client_id,
            scope: &self.scope,
        }
    }

    /// A server may send several requests at once: gathers those arriving shortly after the
    /// first into one MRTR round.
    async fn gather(
        &mut self,
        request: Message,
        reply: oneshot::Sender<Message>,
    ) -> Vec<(Message, oneshot::Sender<Message>)> {
        let mut requests = vec![(request, reply)];
        while let Ok(Some(ev)) = tokio::time::timeout(GATHER_WINDOW, self.events.recv()).await {
            if let CallEvent::ServerRequest { request, reply } = ev
                && let Some(r) = self.screen(request, reply)
            {
                requests.push(r);
            }
        }
        requests
    }

    /// Moves the running call out of `self` (which is finished), answering to `client_id`.
    fn detach(&mut self) -> CallStream {
        CallStream {
            client_id: Id::Null,
            method: std::mem::take(&mut self.method),
            era: self.era,
            session: None,
            can_stream: self.can_stream,
            client_caps: self.client_caps.clone(),
            scope: self.scope.clone(),
            private: self.private,
            task_owner: self.task_owner.clone(),
            events: std::mem::replace(&mut self.events, mpsc::channel(1).1),
            done: std::mem::replace(&mut self.done, oneshot::channel().1),
            task: std::mem::replace(&mut self.task, AbortOnDrop(tokio::spawn(async {}))),
            finished: false,
        }
    }
}

impl mrtr::Resumable for CallStream {
    fn answer_to(&mut self, id: Id) {
        self.client_id = id;
    }
}

/// How long to wait for more server→client requests before answering `input_required`.
const GATHER_WINDOW: std::time::Duration = std::time::Duration::from_millis(25);

fn internal(id: &Id) -> Message {
    Message::error(
        id.clone(),
        ErrorObject::new(codes::INTERNAL_ERROR, "the request was aborted"),
    )
}
