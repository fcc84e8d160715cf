//! What a caller's long-lived stream carries, decided per caller: `list_changed` only when
//! the caller's own filtered view of that list changed (a member's change it cannot see, or a
//! policy change that leaves its view alone, stays silent), `resources/updated` only for URIs
//! it subscribed to and may still read, task notifications only for tasks it created (under
//! its own task handle), and what its own upstream sessions send.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_wire::{Id, Message, meta, sse};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::request::RequestCtx;
use super::session::Session;
use super::sse::SseConnection;
use crate::Gateway;
use crate::catalog::{self, ListKind};
use crate::context::CallCtx;
use crate::notify::ServerChange;
use crate::snapshot::VirtualServer;
use crate::subscriptions::{self, Subscriptions};
use crate::tasks::{self, TaskScope};

const KEEPALIVE: Duration = Duration::from_secs(15);

/// Whose stream it is.
pub(super) enum Owner {
    /// A handshake-era session's GET stream.
    Session(Arc<Session>),
    /// A legacy HTTP+SSE connection (its session exists once it initialized).
    Legacy(Arc<SseConnection>),
    /// A `subscriptions/listen` stream and the resources it holds.
    Listen(Arc<Subscriptions>),
}

impl Owner {
    fn subscriptions(&self) -> Option<Arc<Subscriptions>> {
        match self {
            Owner::Session(s) => Some(s.subscriptions.clone()),
            Owner::Legacy(c) => c.session().map(|s| s.subscriptions.clone()),
            Owner::Listen(subs) => Some(subs.clone()),
        }
    }
}

/// Where a stream's frames go.
pub(super) enum Out {
    /// An SSE response body.
    Channel(mpsc::Sender<Bytes>),
    /// A legacy HTTP+SSE connection's bounded queue.
    Legacy(Arc<SseConnection>),
}

impl Out {
    async fn frame(&self, frame: Bytes) -> bool {
        match self {
            Out::Channel(tx) => tx.send(frame).await.is_ok(),
            Out::Legacy(conn) => conn.push(frame),
        }
    }

    /// Sends one message as an SSE event; false when the client is gone.
    pub(super) async fn send(&self, msg: &Message) -> bool {
        self.frame(sse::encode(
            None,
            None,
            &String::from_utf8_lossy(&msg.to_bytes()),
        ))
        .await
    }

    async fn closed(&self) {
        match self {
            Out::Channel(tx) => tx.closed().await,
            Out::Legacy(conn) => conn.closed().await,
        }
    }
}

/// The per-caller state of one stream.
pub(super) struct Listener {
    gw: Arc<Gateway>,
    path: String,
    ctx: CallCtx,
    owner: Owner,
    /// The caller's view of each list it hears about, as a digest of the visible items.
    views: Vec<(ListKind, u64)>,
    /// `subscriptions/listen`: the listen request's id, stamped on every notification.
    subscription_id: Option<Id>,
    scope: TaskScope,
    changes: broadcast::Receiver<ServerChange>,
    policies: broadcast::Receiver<()>,
}

/// A digest of what `ctx`'s caller sees of `kind` (resources: with the templates).
async fn view(vs: &VirtualServer, kind: ListKind, ctx: &CallCtx) -> u64 {
    let kinds: &[ListKind] = match kind {
        ListKind::Resources => &[ListKind::Resources, ListKind::ResourceTemplates],
        _ => std::slice::from_ref(&kind),
    };
    let mut h = DefaultHasher::new();
    for &k in kinds {
        let merged = catalog::merged(vs, k, ctx).await;
        match crate::authz::visible(vs, ctx, k, &merged).await {
            Some(shown) => shown.iter().for_each(|&i| merged.hashes[i].hash(&mut h)),
            None => merged.hashes.hash(&mut h),
        }
    }
    h.finish()
}

fn list_changed(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Tools => "notifications/tools/list_changed",
        ListKind::Prompts => "notifications/prompts/list_changed",
        ListKind::Resources | ListKind::ResourceTemplates => "notifications/resources/list_changed",
    }
}

impl Listener {
    /// Starts listening for `ctx`'s caller: takes the caller's current view of `kinds`, so
    /// later changes are measured against it.
    pub(super) async fn open(
        cx: &RequestCtx,
        ctx: CallCtx,
        owner: Owner,
        kinds: &[ListKind],
        subscription_id: Option<Id>,
    ) -> Listener {
        // Subscribe first: a change while the views are taken is then not missed.
        let changes = cx.gw.changes.subscribe();
        let policies = cx.gw.policy_swaps.subscribe();
        let mut views = Vec::with_capacity(kinds.len());
        for &k in kinds {
            views.push((k, view(&cx.vs, k, &ctx).await));
        }
        Listener {
            gw: cx.gw.clone(),
            path: cx.vs.path.clone(),
            scope: TaskScope::of(&cx.vs, &ctx),
            ctx,
            owner,
            views,
            subscription_id,
            changes,
            policies,
        }
    }

    /// `msg` with the listen stream's subscription id in its `_meta`.
    pub(super) fn stamp(&self, mut msg: Message) -> Message {
        if let Some(id) = &self.subscription_id
            && let Some(p) = msg.params.get_or_insert_with(|| json!({})).as_object_mut()
        {
            let m = p.entry("_meta").or_insert_with(|| json!({}));
            m[meta::SUBSCRIPTION_ID] = id.to_value();
        }
        msg
    }

    /// The virtual server as it is now (a reload may have changed it).
    fn current(&self) -> Option<Arc<VirtualServer>> {
        self.gw.snapshot().virtual_servers.get(&self.path).cloned()
    }

    /// Relays until the client goes away; then releases what the stream held.
    pub(super) async fn run(mut self, out: Out, mut direct: Option<mpsc::Receiver<Message>>) {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            let messages = tokio::select! {
                Some(m) = async { direct.as_mut()?.recv().await } => vec![m],
                r = self.changes.recv() => match r {
                    Ok(change) => self.on_change(&change).await,
                    // Missed changes: measure every view again.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.on_views().await,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                r = self.policies.recv() => match r {
                    Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => self.on_policies().await,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = ticker.tick() => {
                    if !out.frame(sse::comment("keep-alive")).await { break }
                    continue;
                }
                () = out.closed() => break,
            };
            for m in messages {
                if !out.send(&self.stamp(m)).await {
                    return self.end().await;
                }
            }
        }
        self.end().await;
    }

    async fn end(self) {
        if let (Owner::Listen(subs), Some(vs)) = (&self.owner, self.current()) {
            subscriptions::release_all(&vs, &self.ctx, subs).await;
        }
    }

    async fn on_change(&mut self, change: &ServerChange) -> Vec<Message> {
        let Some(vs) = self.current() else {
            return Vec::new();
        };
        if !vs.has_member(&change.server) {
            return Vec::new();
        }
        let method = change.message.method();
        let changed: &[ListKind] = ListKind::from_notification(method);
        if !changed.is_empty() {
            return self.remeasure(&vs, changed).await;
        }
        if method == "notifications/resources/updated" {
            let uri = change
                .message
                .params
                .as_ref()
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let subscribed = self.owner.subscriptions().is_some_and(|s| s.contains(uri));
            return if subscribed {
                vec![change.message.clone()]
            } else {
                Vec::new()
            };
        }
        if tasks::is_task_notification(method)
            && let Some(task_id) = tasks::notified_task(&change.message)
            && self.gw.tasks.owner(&change.server, task_id).as_ref() == Some(&self.scope)
        {
            let mut m = change.message.clone();
            tasks::seal_notification(&self.gw.keys, &self.scope, &change.server, &mut m);
            return vec![m];
        }
        Vec::new()
    }

    /// Measures the views of `kinds` again; a `list_changed` for each that differs.
    async fn remeasure(&mut self, vs: &VirtualServer, kinds: &[ListKind]) -> Vec<Message> {
        let mut out = Vec::new();
        for (kind, digest) in &mut self.views {
            let affected = kinds.contains(kind)
                || (*kind == ListKind::Resources && kinds.contains(&ListKind::ResourceTemplates));
            if !affected {
                continue;
            }
            let now = view(vs, *kind, &self.ctx).await;
            if now != *digest {
                *digest = now;
                out.push(Message::notification(list_changed(*kind), None));
            }
        }
        out
    }

    async fn on_views(&mut self) -> Vec<Message> {
        let Some(vs) = self.current() else {
            return Vec::new();
        };
        let kinds: Vec<ListKind> = self.views.iter().map(|(k, _)| *k).collect();
        self.remeasure(&vs, &kinds).await
    }

    /// The policy set changed: views the new policies alter get `list_changed`, and
    /// subscriptions the caller may no longer read are released.
    async fn on_policies(&mut self) -> Vec<Message> {
        let Some(vs) = self.current() else {
            return Vec::new();
        };
        if let Some(subs) = self.owner.subscriptions() {
            subscriptions::redecide(&vs, &self.ctx, &subs).await;
        }
        let kinds: Vec<ListKind> = self.views.iter().map(|(k, _)| *k).collect();
        self.remeasure(&vs, &kinds).await
    }
}
