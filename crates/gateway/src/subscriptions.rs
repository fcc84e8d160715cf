//! Resource subscriptions a caller holds: a handshake-era session's (`resources/subscribe`)
//! or one `subscriptions/listen` stream's. Each was decided as `read_resource` when made
//! ([`crate::methods::decide_read`]) and is decided again when policies change; a caller
//! hears `resources/updated` only for URIs in its set.
//!
//! Where the member speaks the stateless era (it has no `resources/subscribe`), the gateway
//! holds the subscription itself on the member's change feed; otherwise the subscription is
//! relayed to the member, and released there when the caller lets go of it.

use std::collections::HashMap;
use std::sync::Mutex;

use gatehouse_wire::{Id, Message};
use serde_json::json;

use crate::context::CallCtx;
use crate::methods::{self, Decided, Route};
use crate::snapshot::VirtualServer;
use crate::upstream;

/// One subscription: where it is held.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    /// The member server serving the resource.
    server: String,
    /// True when the gateway holds it on the server's change feed (stateless member).
    by_gateway: bool,
}

/// A caller's subscriptions, by URI.
#[derive(Debug, Default)]
pub struct Subscriptions {
    held: Mutex<HashMap<String, Held>>,
}

impl Subscriptions {
    /// True when the caller subscribed to `uri` (and may still read it).
    pub fn contains(&self, uri: &str) -> bool {
        self.held
            .lock()
            .expect("subscriptions lock")
            .contains_key(uri)
    }

    /// The subscribed URIs.
    pub fn uris(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .held
            .lock()
            .expect("subscriptions lock")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    fn take(&self, uri: &str) -> Option<Held> {
        self.held.lock().expect("subscriptions lock").remove(uri)
    }

    fn insert(&self, uri: &str, held: Held) -> bool {
        use std::collections::hash_map::Entry;
        match self
            .held
            .lock()
            .expect("subscriptions lock")
            .entry(uri.to_string())
        {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(held);
                true
            }
        }
    }
}

fn empty_result(msg: &Message) -> Route {
    Route::Answer(Message::result(
        msg.id.clone().unwrap_or(Id::Null),
        &json!({}),
    ))
}

/// Takes a decided `resources/subscribe` for `subs`: records it, and either holds it at a
/// stateless member (answered `{}` by the gateway) or returns the route that relays it.
pub async fn subscribe(
    vs: &VirtualServer,
    ctx: &CallCtx,
    subs: &Subscriptions,
    uri: String,
    decided: Decided,
    msg: Message,
) -> Route {
    let member = upstream::member(vs, &decided);
    let server = member.server.config.name.clone();
    let by_gateway = !ctx.has_own_session(member)
        && crate::dispatch::member_is_stateless(member, &ctx.client).await;
    if !subs.insert(
        &uri,
        Held {
            server: server.clone(),
            by_gateway,
        },
    ) {
        // Already subscribed: nothing to tell the member, nothing to count twice.
        return empty_result(&msg);
    }
    if by_gateway {
        if member.server.resources.add(&uri) {
            tracing::info!(server = %server, uri = %crate::observe::shown(&uri), "watching a resource for subscribed clients");
        }
        return empty_result(&msg);
    }
    Route::Member {
        decided,
        msg,
        item: None,
        task: false,
    }
}

/// `resources/unsubscribe`: releases the caller's own subscription to `uri`, if it holds one
/// (otherwise there is nothing to release and the member hears nothing).
pub fn unsubscribe(vs: &VirtualServer, subs: &Subscriptions, uri: &str, msg: Message) -> Route {
    let Some(held) = subs.take(uri) else {
        return empty_result(&msg);
    };
    match release_decision(vs, uri, &held) {
        Some(decided) => Route::Member {
            decided,
            msg,
            item: None,
            task: false,
        },
        None => empty_result(&msg),
    }
}

/// Lets go of one subscription at its member: the gateway's own hold is dropped here; a
/// relayed one needs `resources/unsubscribe`, returned as a decision.
fn release_decision(vs: &VirtualServer, uri: &str, held: &Held) -> Option<Decided> {
    let index = vs
        .members
        .iter()
        .position(|m| m.server.config.name == held.server)?;
    if held.by_gateway {
        let server = &vs.members[index].server;
        if server.resources.remove(uri) {
            tracing::info!(server = %held.server, uri = %crate::observe::shown(uri), "no client subscribes to this resource any more");
        }
        return None;
    }
    Some(methods::unsubscribe(index))
}

/// Releases every subscription in `subs` (a session ended or expired, a listen stream closed).
pub async fn release_all(vs: &VirtualServer, ctx: &CallCtx, subs: &Subscriptions) {
    let all: Vec<(String, Held)> = subs
        .held
        .lock()
        .expect("subscriptions lock")
        .drain()
        .collect();
    for (uri, held) in all {
        release(vs, ctx, &uri, &held).await;
    }
}

async fn release(vs: &VirtualServer, ctx: &CallCtx, uri: &str, held: &Held) {
    let Some(decided) = release_decision(vs, uri, held) else {
        return;
    };
    let member = upstream::member(vs, &decided);
    let client = ctx.for_member(member);
    if let Err(e) =
        upstream::call_detached(vs, &decided, Some(json!({ "uri": uri })), &client).await
    {
        tracing::debug!(server = %held.server, error = %e, "releasing a subscription failed");
    }
}

/// Holds `uri` for a `subscriptions/listen` stream after [`methods::decide_read`] allowed it
/// at `member`: on the member's change feed (stateless member) or by subscribing there.
pub async fn hold_for_listen(
    vs: &VirtualServer,
    ctx: &CallCtx,
    subs: &Subscriptions,
    uri: &str,
    member: usize,
) {
    let m = &vs.members[member];
    let by_gateway = crate::dispatch::member_is_stateless(m, &ctx.client).await;
    let held = Held {
        server: m.server.config.name.clone(),
        by_gateway,
    };
    if !subs.insert(uri, held) {
        return;
    }
    if by_gateway {
        m.server.resources.add(uri);
        return;
    }
    let decided = methods::listen_subscribe(member);
    let client = ctx.for_member(m);
    if let Err(e) =
        upstream::call_detached(vs, &decided, Some(json!({ "uri": uri })), &client).await
    {
        tracing::debug!(server = %m.server.config.name, error = %e, "subscribing for a listen stream failed");
    }
}

/// Decides every subscription in `subs` again under `vs`'s current policies and releases the
/// ones the caller may no longer read. Returns the URIs released.
pub async fn redecide(vs: &VirtualServer, ctx: &CallCtx, subs: &Subscriptions) -> Vec<String> {
    let mut revoked = Vec::new();
    for uri in subs.uris() {
        if methods::decide_read(vs, ctx, &uri).await.is_none()
            && let Some(held) = subs.take(&uri)
        {
            release(vs, ctx, &uri, &held).await;
            revoked.push(uri);
        }
    }
    if !revoked.is_empty() {
        tracing::info!(virtual_server = %vs.name, principal = %ctx.client.caller.principal.key(), released = revoked.len(), "subscriptions released: the caller may no longer read them");
    }
    revoked
}
