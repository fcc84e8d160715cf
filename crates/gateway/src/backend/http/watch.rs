//! Long-lived streams from a remote server: the server-initiated messages of one upstream
//! session (its GET stream) or, for a stateless server, a `subscriptions/listen` stream.
//! The gateway keeps one open per server to learn of `list_changed`, and relays a client's own
//! session stream while that client has its GET stream open.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use gatehouse_wire::{Era, Id, Message, MessageKind, ProtocolVersion, headers as h, sse};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::HttpBackend;
use crate::backend::{BackendError, CallEvent, ClientContext, UpstreamSession, adapt};

/// What a change feed needs of the server it watches (the snapshot's server handle, seen
/// from below: the backend layer does not know snapshots).
pub trait Watched: Send + Sync {
    /// The server's HTTP backend, if it is a remote Streamable HTTP server.
    fn http(&self) -> Option<&HttpBackend>;
    /// The resources the gateway holds subscriptions to at this server.
    fn resources(&self) -> &ResourceSubscriptions;
}

/// Reference-counted resource subscriptions the gateway holds at one server for its clients.
#[derive(Debug, Default)]
pub struct ResourceSubscriptions {
    counts: std::sync::Mutex<HashMap<String, usize>>,
    /// Signalled when the set of URIs changes.
    pub changed: Arc<tokio::sync::Notify>,
}

impl ResourceSubscriptions {
    /// Adds one subscriber to `uri`; true when it is the first.
    pub fn add(&self, uri: &str) -> bool {
        let first = {
            let mut c = self.counts.lock().expect("subscriptions lock");
            let n = c.entry(uri.to_string()).or_default();
            *n += 1;
            *n == 1
        };
        if first {
            self.changed.notify_one();
        }
        first
    }

    /// Removes one subscriber from `uri`; true when it was the last.
    pub fn remove(&self, uri: &str) -> bool {
        let last = {
            let mut c = self.counts.lock().expect("subscriptions lock");
            match c.get_mut(uri) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => c.remove(uri).is_some(),
                None => false,
            }
        };
        if last {
            self.changed.notify_one();
        }
        last
    }

    /// The URIs with at least one subscriber.
    pub fn uris(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .counts
            .lock()
            .expect("subscriptions lock")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

impl HttpBackend {
    /// Opens the server's stream of server-initiated messages. With `session`, the GET stream of
    /// that handshake-era session; without, the gateway's own view: `subscriptions/listen` at a
    /// stateless server, the shared session's GET stream at a handshake-era one.
    /// `client` is who the stream is for (its credential goes upstream); the gateway's own
    /// stream is anonymous, so servers with per-user credentials have none.
    pub async fn open_stream(
        &self,
        session: Option<&UpstreamSession>,
        resources: &[String],
        client: &ClientContext,
    ) -> Result<mpsc::Receiver<CallEvent>, BackendError> {
        let auth = self.authorize(client).await?;
        let (req, session_id, version) = match session {
            Some(s) => {
                let version = s
                    .version
                    .parse()
                    .unwrap_or(ProtocolVersion::LATEST_HANDSHAKE);
                (
                    self.get_request(&s.id, version),
                    Some(s.id.clone()),
                    version,
                )
            }
            None => {
                let info = self.info(client).await?;
                match info.era() {
                    Era::Stateless => {
                        let mut filter = json!({"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true});
                        if !resources.is_empty() {
                            filter["resourceSubscriptions"] = json!(resources);
                        }
                        let params = adapt::for_era(
                            Era::Stateless,
                            Some(json!({ "notifications": filter })),
                            &Default::default(),
                        );
                        let msg = Message::request(
                            Id::String("gatehouse-watch".into()),
                            "subscriptions/listen",
                            params,
                        );
                        let req = self
                            .client
                            .post(self.url.clone())
                            .header(ACCEPT, "application/json, text/event-stream")
                            .header(CONTENT_TYPE, "application/json")
                            .header(h::PROTOCOL_VERSION, info.version.as_str())
                            .header(h::METHOD, "subscriptions/listen")
                            .body(msg.to_bytes());
                        (req, None, info.version)
                    }
                    Era::Handshake => {
                        let sid = self
                            .shared(false, &auth, &self.session_owner(client))
                            .await?
                            .ok_or_else(|| self.unavailable("server gave no session id"))?;
                        (
                            self.get_request(&sid, info.version),
                            Some(sid),
                            info.version,
                        )
                    }
                }
            }
        };
        let req = match &auth {
            Some((name, value)) => req.header(name, value),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| self.unavailable(super::describe_reqwest(&e)))?;
        if !resp.status().is_success() {
            return Err(self.unavailable(format!("stream refused: HTTP {}", resp.status())));
        }
        let (tx, rx) = mpsc::channel(64);
        let relay = self.relay.clone();
        tokio::spawn(async move {
            let auth = auth;
            let mut decoder = sse::Decoder::new();
            let mut body = resp.bytes_stream();
            loop {
                let chunk = tokio::select! {
                    c = body.next() => c,
                    _ = tx.closed() => return,
                };
                let Some(Ok(chunk)) = chunk else { return };
                let decoded = decoder.feed(&chunk);
                if decoder.buffered() > crate::backend::MAX_MESSAGE_BYTES {
                    tracing::error!(server = %relay.name, "server stream sent an oversized event; closing it");
                    return;
                }
                for ev in decoded {
                    let Ok(m) = Message::parse(ev.data.as_bytes()) else {
                        continue;
                    };
                    match m.kind() {
                        MessageKind::Notification => relay.on_notification(m, Some(&tx)),
                        MessageKind::Request => relay.on_server_request(
                            m,
                            session_id.as_deref(),
                            version,
                            Some(&tx),
                            &auth,
                        ),
                        _ => {}
                    }
                }
            }
        });
        Ok(rx)
    }

    fn get_request(&self, session: &str, version: ProtocolVersion) -> reqwest::RequestBuilder {
        self.client
            .get(self.url.clone())
            .header(ACCEPT, "text/event-stream")
            .header(h::SESSION_ID, session)
            .header(h::PROTOCOL_VERSION, version.as_str())
    }
}

/// Keeps a change feed open to a remote server for as long as its handle lives, reconnecting
/// with backoff, so `list_changed` from the server reaches the caches and the clients.
pub fn spawn_watch(handle: Weak<dyn Watched>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let Some(h) = handle.upgrade() else { return };
            let Some(b) = h.http() else {
                return;
            };
            let changed = h.resources().changed.clone();
            let opened = b
                .open_stream(None, &h.resources().uris(), &Default::default())
                .await;
            drop(h);
            match opened {
                Ok(mut rx) => {
                    backoff = Duration::from_millis(500);
                    loop {
                        tokio::select! {
                            ev = rx.recv() => if ev.is_none() { break },
                            // The set of watched resources changed: listen again with the new set.
                            _ = changed.notified() => { backoff = Duration::ZERO; break }
                            _ = stop.cancelled() => return,
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %crate::observe::shown(&e), "change feed unavailable; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
            backoff = (backoff * 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
        }
    });
}
