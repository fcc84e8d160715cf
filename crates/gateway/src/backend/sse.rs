//! Remote servers on the legacy HTTP+SSE transport (2024-11-05, `transport: sse`): one GET
//! event stream carries every server message; the first event names the endpoint the client
//! POSTs its messages to. Over that pair the server is an ordinary JSON-RPC peer, so the
//! multiplexing of [`Peer`] (ids, progress tokens, server→client requests) applies unchanged.
//!
//! The connection is shared by every caller, so its credential can only be Gatehouse's own
//! (`static_secret`, `client_credentials`); configuration validation refuses per-user kinds.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gatehouse_config::{ProtocolSetting, ServerConfig};
use gatehouse_wire::{Era, Message, ProtocolVersion, sse};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};

use gatehouse_identity::{Caller, OutboundCredential};

use super::peer::Peer;
use super::{BackendError, BackendInfo, CallEvent, ClientContext, adapt, handshake_version};
use crate::notify::ChangeHub;

/// A remote server on the HTTP+SSE transport.
#[derive(Debug)]
pub struct SseBackend {
    name: String,
    url: reqwest::Url,
    client: reqwest::Client,
    timeout: Duration,
    setting: ProtocolSetting,
    hub: Arc<ChangeHub>,
    conn: Mutex<Option<Arc<Connection>>>,
    credentials: Option<Arc<OutboundCredential>>,
}

/// The connection's credential header, fetched for each request (a client-credentials token
/// is renewed before it expires; the credential caches it).
async fn authorize(
    credentials: &Option<Arc<OutboundCredential>>,
) -> Result<super::http::Auth, BackendError> {
    match credentials {
        None => Ok(None),
        Some(c) => c
            .header(&Caller::anonymous())
            .await
            .map(Some)
            .map_err(BackendError::Credential),
    }
}

#[derive(Debug)]
struct Connection {
    peer: Arc<Peer>,
    info: Arc<BackendInfo>,
    /// Ends the reader and writer tasks when the connection is replaced or dropped.
    _stop: tokio_util::sync::DropGuard,
}

impl SseBackend {
    /// A backend for a `transport: sse` server entry. Nothing is contacted until the first call.
    pub fn new(
        config: &ServerConfig,
        timeout: Duration,
        hub: Arc<ChangeHub>,
        credentials: Option<Arc<OutboundCredential>>,
    ) -> Result<Self, BackendError> {
        let (url, client) = super::http::build_client(config)?;
        Ok(SseBackend {
            name: config.name.clone(),
            url,
            client,
            timeout,
            setting: config.protocol,
            hub,
            conn: Mutex::new(None),
            credentials,
        })
    }

    /// Server name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn unavailable(&self, reason: impl Into<String>) -> BackendError {
        BackendError::Unavailable {
            server: self.name.clone(),
            reason: reason.into(),
        }
    }

    async fn connection(&self) -> Result<Arc<Connection>, BackendError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = &*guard
            && !c.peer.is_closed()
        {
            return Ok(c.clone());
        }
        let c = Arc::new(self.connect().await?);
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn connect(&self) -> Result<Connection, BackendError> {
        let mut get = self
            .client
            .get(self.url.clone())
            .header(ACCEPT, "text/event-stream");
        if let Some((name, value)) = authorize(&self.credentials).await? {
            get = get.header(name, value);
        }
        let resp = get
            .send()
            .await
            .map_err(|e| self.unavailable(format!("cannot open the event stream: {e}")))?;
        if !resp.status().is_success() {
            return Err(self.unavailable(format!("event stream refused: HTTP {}", resp.status())));
        }
        let mut body = resp.bytes_stream();
        let mut decoder = sse::Decoder::new();
        let mut pending = Vec::new();
        let endpoint = loop {
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .map_err(|_| self.unavailable("no endpoint event within 10 s"))?
                .ok_or_else(|| self.unavailable("event stream ended before the endpoint event"))?
                .map_err(|e| self.unavailable(e.to_string()))?;
            let mut events = decoder.feed(&chunk).into_iter();
            if decoder.buffered() > super::MAX_MESSAGE_BYTES {
                return Err(self.unavailable("event stream sent an oversized event"));
            }
            if let Some(ev) = events
                .by_ref()
                .find(|e| e.event.as_deref() == Some("endpoint"))
            {
                pending.extend(events);
                let endpoint = self
                    .url
                    .join(ev.data.trim())
                    .map_err(|e| self.unavailable(format!("bad endpoint {:?}: {e}", ev.data)))?;
                // The endpoint gets the configured headers and client certificate: it must be
                // the same origin as the configured URL.
                if endpoint.origin() != self.url.origin() {
                    return Err(self.unavailable(format!(
                        "endpoint {endpoint} is not on the server's origin"
                    )));
                }
                break endpoint;
            }
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(super::OUTGOING_QUEUE);
        let peer = Peer::new(self.name.clone(), out_tx, self.hub.clone());
        // Writer: POST each message in order.
        let client = self.client.clone();
        let name = self.name.clone();
        let writer_stop = stop.clone();
        let credentials = self.credentials.clone();
        tokio::spawn(async move {
            loop {
                let bytes = tokio::select! {
                    b = out_rx.recv() => match b { Some(b) => b, None => return },
                    _ = writer_stop.cancelled() => return,
                };
                let mut post = client
                    .post(endpoint.clone())
                    .header(CONTENT_TYPE, "application/json");
                match authorize(&credentials).await {
                    Ok(Some((name, value))) => post = post.header(name, value),
                    Ok(None) => {}
                    Err(e) => {
                        // Nothing is sent without its credential; the call times out.
                        tracing::warn!(server = %name, error = %e, "no credential for an HTTP+SSE message; not sent");
                        continue;
                    }
                }
                let r = post.body(bytes).send().await;
                match r {
                    Ok(resp) if resp.status().is_success() => {}
                    Ok(resp) => {
                        tracing::warn!(server = %name, status = %resp.status(), "HTTP+SSE server refused a message")
                    }
                    Err(e) => {
                        tracing::warn!(server = %name, error = %e, "HTTP+SSE server unreachable")
                    }
                }
            }
        });
        // Reader: every `message` event goes to the peer.
        let reader_peer = peer.clone();
        let reader_stop = stop.clone();
        let name = self.name.clone();
        tokio::spawn(async move {
            let deliver = |ev: sse::Event| {
                if matches!(ev.event.as_deref(), None | Some("message")) && !ev.data.is_empty() {
                    match Message::parse(ev.data.as_bytes()) {
                        Ok(m) => reader_peer.handle_incoming(m),
                        Err(e) => {
                            tracing::warn!(server = %name, error = %crate::observe::shown(&e), "HTTP+SSE server sent an event that is not JSON-RPC")
                        }
                    }
                }
            };
            for ev in pending {
                deliver(ev);
            }
            loop {
                let chunk = tokio::select! {
                    c = body.next() => c,
                    _ = reader_stop.cancelled() => break,
                };
                match chunk {
                    Some(Ok(chunk)) => {
                        decoder.feed(&chunk).into_iter().for_each(&deliver);
                        if decoder.buffered() > super::MAX_MESSAGE_BYTES {
                            tracing::error!(server = %name, "HTTP+SSE server sent an oversized event; disconnecting");
                            break;
                        }
                    }
                    _ => break,
                }
            }
            reader_peer.close("the HTTP+SSE event stream ended");
        });
        let info = self.handshake(&peer).await?;
        Ok(Connection {
            peer,
            info: Arc::new(info),
            _stop: stop.drop_guard(),
        })
    }

    async fn handshake(&self, peer: &Arc<Peer>) -> Result<BackendInfo, BackendError> {
        let version = match self.setting {
            ProtocolSetting::Auto => ProtocolVersion::V2024_11_05,
            other => handshake_version(other),
        };
        let limit = self.timeout.min(Duration::from_secs(60));
        let reply = tokio::time::timeout(
            limit,
            peer.request("initialize", Some(adapt::initialize_params(version)), None),
        )
        .await
        .map_err(|_| self.unavailable("no answer to initialize"))??;
        if let Some(e) = reply.error {
            return Err(self.unavailable(format!("initialize failed: {}", e.message)));
        }
        let v = reply.result_value().unwrap_or(Value::Null);
        peer.notify("notifications/initialized", None);
        Ok(BackendInfo::from_result(version, &v))
    }

    /// Calls a method over the connection, opening it first if needed.
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        client: &ClientContext,
        events: Option<mpsc::Sender<CallEvent>>,
    ) -> Result<Message, BackendError> {
        let conn = self.connection().await?;
        conn.peer
            .request(
                method,
                adapt::for_era(Era::Handshake, params, client),
                events,
            )
            .await
    }

    /// Sends a notification if connected.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), BackendError> {
        if let Some(c) = &*self.conn.lock().await {
            c.peer.notify(
                method,
                adapt::for_era(Era::Handshake, params, &ClientContext::default()),
            );
        }
        Ok(())
    }

    /// Connects if needed and reports what the server said about itself.
    pub async fn info(&self) -> Result<Arc<BackendInfo>, BackendError> {
        Ok(self.connection().await?.info.clone())
    }

    /// Closes the connection.
    pub async fn shutdown(&self) {
        self.conn.lock().await.take();
    }
}
