//! Remote MCP servers over Streamable HTTP, in whichever era they speak.
//!
//! Stateless (2026-07-28) servers get one POST per request with the per-request `_meta` and the
//! `Mcp-Method`/`Mcp-Name` headers. Handshake-era servers get an upstream session: the client's
//! own (opened when the client initialized, carried in the sealed gateway session id) or, for
//! stateless clients, one shared session the gateway owns and re-opens when it expires.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use gatehouse_config::{ProtocolSetting, ServerConfig};
use gatehouse_wire::{Era, Id, Message, ProtocolVersion, headers as h};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};

mod client;
mod local;
mod relay;
mod request;
mod watch;

use relay::{CancelGuard, Relay};
use request::{Posted, describe_reqwest};

pub(crate) use client::build_client;
pub use watch::{ResourceSubscriptions, Watched, spawn_watch};

use super::adapt;
use super::{
    BackendError, BackendInfo, CallEvent, ClientContext, UpstreamSession, handshake_version,
};
use crate::notify::ChangeHub;

/// A remote Streamable HTTP server.
#[derive(Debug)]
pub struct HttpBackend {
    name: String,
    url: reqwest::Url,
    client: reqwest::Client,
    timeout: Duration,
    setting: ProtocolSetting,
    relay: Relay,
    /// What the probe learned; read lock-free on every call.
    info: arc_swap::ArcSwapOption<BackendInfo>,
    /// Serialises probes so a burst of first calls probes once.
    probing: Mutex<()>,
    /// Upstream sessions the gateway holds for stateless clients: one, or one per user when the
    /// server gets a per-user credential (a session opened with one user's token is theirs).
    /// `None`: initialized, and the server gave no session id (it needs none: requests go
    /// without one, and no `initialize` is repeated per call).
    shared_sessions: Mutex<HashMap<String, Option<String>>>,
    next_id: AtomicI64,
    /// Where the credential sent upstream comes from (never the caller's own token).
    credentials: Option<Arc<gatehouse_identity::OutboundCredential>>,
    /// The container serving this backend, for a server the gateway runs itself
    /// (`isolation.http`); `None` for a remote server.
    local: Option<Arc<local::LocalServer>>,
}

/// The credential header of one upstream request.
pub(crate) type Auth = Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>;

impl HttpBackend {
    /// A backend for a `url:` server entry: builds the pooled client (TLS, mTLS, static headers).
    pub fn new(
        config: &ServerConfig,
        timeout: Duration,
        hub: Arc<ChangeHub>,
        credentials: Option<Arc<gatehouse_identity::OutboundCredential>>,
    ) -> Result<Self, BackendError> {
        let (url, client) = build_client(config)?;
        Ok(Self::with_client(
            config,
            url,
            client,
            timeout,
            hub,
            credentials,
            None,
        ))
    }

    /// A backend for a local server with `isolation.http`: the gateway runs it in a container
    /// (at the first request) and reaches it through a private socket.
    pub fn local(
        config: &ServerConfig,
        http: &gatehouse_config::LocalHttp,
        timeout: Duration,
        hub: Arc<ChangeHub>,
        credentials: Option<Arc<gatehouse_identity::OutboundCredential>>,
        stderr: Arc<super::stderr::StderrPolicy>,
        runtimes: Arc<gatehouse_runtime::Runtimes>,
    ) -> Result<Self, BackendError> {
        let server = Arc::new(local::LocalServer::new(config, http, runtimes, stderr)?);
        let (url, client) = client::build_local_client(config, http, server.socket())?;
        Ok(Self::with_client(
            config,
            url,
            client,
            timeout,
            hub,
            credentials,
            Some(server),
        ))
    }

    fn with_client(
        config: &ServerConfig,
        url: reqwest::Url,
        client: reqwest::Client,
        timeout: Duration,
        hub: Arc<ChangeHub>,
        credentials: Option<Arc<gatehouse_identity::OutboundCredential>>,
        local: Option<Arc<local::LocalServer>>,
    ) -> Self {
        HttpBackend {
            name: config.name.clone(),
            relay: Relay {
                name: config.name.clone(),
                client: client.clone(),
                url: url.clone(),
                hub,
            },
            url,
            client,
            timeout,
            setting: config.protocol,
            info: arc_swap::ArcSwapOption::empty(),
            probing: Mutex::new(()),
            shared_sessions: Mutex::default(),
            next_id: AtomicI64::new(1),
            credentials,
            local,
        }
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

    /// The credential header for a request made for `client`'s caller.
    pub(crate) async fn authorize(&self, client: &ClientContext) -> Result<Auth, BackendError> {
        match &self.credentials {
            None => Ok(None),
            Some(c) => c
                .header(&client.caller)
                .await
                .map(Some)
                .map_err(BackendError::Credential),
        }
    }

    /// Probes the era (once) and reports what the server said about itself.
    pub async fn info(&self, client: &ClientContext) -> Result<Arc<BackendInfo>, BackendError> {
        if let Some(i) = self.info.load_full() {
            return Ok(i);
        }
        let _probing = self.probing.lock().await;
        if let Some(i) = self.info.load_full() {
            return Ok(i);
        }
        let auth = self.authorize(client).await?;
        let info = Arc::new(self.probe(&auth, &self.session_owner(client)).await?);
        self.info.store(Some(info.clone()));
        Ok(info)
    }

    /// Whose shared upstream session serves `client`: the caller's with a per-user credential,
    /// else the gateway's (`""`).
    fn session_owner(&self, client: &ClientContext) -> String {
        match &self.credentials {
            Some(c) if c.kind().is_per_user() => client.caller.principal.key().to_string(),
            _ => String::new(),
        }
    }

    async fn probe(&self, auth: &Auth, owner: &str) -> Result<BackendInfo, BackendError> {
        if matches!(
            self.setting,
            ProtocolSetting::Auto | ProtocolSetting::V2026_07_28
        ) {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let msg = Message::request(
                Id::Number(id),
                "server/discover",
                Some(adapt::discover_params()),
            );
            match self
                .post(&msg, None, ProtocolVersion::V2026_07_28, &[], None, auth)
                .await
            {
                Ok(Posted::Reply(m, _)) if m.result.is_some() => {
                    let v = m.result_value().unwrap_or(Value::Null);
                    return Ok(BackendInfo::from_result(ProtocolVersion::V2026_07_28, &v));
                }
                Err(e @ BackendError::Unavailable { .. }) => return Err(e),
                _ if self.setting == ProtocolSetting::V2026_07_28 => {
                    return Err(self.unavailable(
                        "server rejected server/discover but protocol is 2026-07-28",
                    ));
                }
                _ => {}
            }
        }
        let (info, session) = self.initialize(&ClientContext::default(), auth).await?;
        self.shared_sessions
            .lock()
            .await
            .insert(owner.to_string(), session);
        Ok(info)
    }

    async fn initialize(
        &self,
        client: &ClientContext,
        auth: &Auth,
    ) -> Result<(BackendInfo, Option<String>), BackendError> {
        let version = handshake_version(self.setting);
        let mut params = adapt::initialize_params(version);
        if client.capabilities.is_object() {
            params["capabilities"] = (*client.capabilities).clone();
        }
        if client.client_info.is_object() {
            params["clientInfo"] = (*client.client_info).clone();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = Message::request(Id::Number(id), "initialize", Some(params));
        let Posted::Reply(reply, session) = self.post(&msg, None, version, &[], None, auth).await?
        else {
            return Err(self.unavailable("initialize was not answered"));
        };
        if let Some(e) = reply.error {
            return Err(self.unavailable(format!("initialize failed: {}", e.message)));
        }
        let v = reply.result_value().unwrap_or(Value::Null);
        let negotiated = v
            .get("protocolVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(version);
        let initialized = Message::notification("notifications/initialized", None);
        let _ = self
            .post(
                &initialized,
                session.as_deref(),
                negotiated,
                &[],
                None,
                auth,
            )
            .await;
        Ok((BackendInfo::from_result(negotiated, &v), session))
    }

    /// Opens an upstream session for one handshake-era client; `None` when the server does not
    /// speak the handshake era (it is then called statelessly on the client's behalf).
    pub async fn open_session(&self, client: &ClientContext) -> Option<UpstreamSession> {
        self.info(client).await.ok()?;
        if self.setting == ProtocolSetting::V2026_07_28 {
            return None;
        }
        let auth = self.authorize(client).await.ok()?;
        match self.initialize(client, &auth).await {
            Ok((info, Some(id))) => Some(UpstreamSession {
                id,
                version: info.version.as_str().to_string(),
            }),
            Ok((_, None)) => None,
            Err(e) => {
                tracing::debug!(server = %self.name, error = %crate::observe::shown(&e), "no handshake-era session at this server");
                None
            }
        }
    }

    /// Calls a method, retrying once on a fresh shared session if the old one expired.
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        client: &ClientContext,
        events: Option<mpsc::Sender<CallEvent>>,
        auth: Auth,
    ) -> Result<Message, BackendError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(own) = &client.upstream_session {
            let version = own
                .version
                .parse()
                .unwrap_or(ProtocolVersion::LATEST_HANDSHAKE);
            let msg = Message::request(
                Id::Number(id),
                method,
                adapt::for_era(Era::Handshake, params.clone(), client),
            );
            // An abandoned call (client cancelled) is cancelled at the server too.
            let mut guard = CancelGuard {
                backend: self,
                session: Some(own.id.clone()),
                version,
                id,
                armed: true,
                auth: auth.clone(),
            };
            let r = self
                .post(&msg, Some(&own.id), version, &[], events.clone(), &auth)
                .await;
            guard.armed = false;
            match r {
                // The server forgot the client's session (it restarted): serve the call on the
                // gateway's own session rather than fail it.
                Err(BackendError::SessionExpired { .. }) => {
                    tracing::info!(server = %self.name, "client's upstream session expired; using the gateway's");
                }
                r => return self.expect_reply(r?),
            }
        }
        let info = self.info(client).await?;
        let params = adapt::for_era(info.era(), params, client);
        let msg = Message::request(Id::Number(id), method, params);
        if info.era() == Era::Stateless {
            return self.expect_reply(
                self.post(
                    &msg,
                    None,
                    info.version,
                    &client.extra_headers,
                    events,
                    &auth,
                )
                .await?,
            );
        }
        for attempt in 0..2 {
            let session = self
                .shared(attempt > 0, &auth, &self.session_owner(client))
                .await?;
            let guard = CancelGuard {
                backend: self,
                session: session.clone(),
                version: info.version,
                id,
                armed: true,
                auth: auth.clone(),
            };
            match self
                .post(
                    &msg,
                    session.as_deref(),
                    info.version,
                    &[],
                    events.clone(),
                    &auth,
                )
                .await
            {
                Err(BackendError::SessionExpired { .. }) if attempt == 0 => {
                    std::mem::forget(guard);
                    continue;
                }
                r => {
                    let mut guard = guard;
                    guard.armed = false;
                    return self.expect_reply(r?);
                }
            }
        }
        Err(BackendError::SessionExpired {
            server: self.name.clone(),
        })
    }

    async fn shared(
        &self,
        renew: bool,
        auth: &Auth,
        owner: &str,
    ) -> Result<Option<String>, BackendError> {
        let mut sessions = self.shared_sessions.lock().await;
        if renew || !sessions.contains_key(owner) {
            let (_, session) = self.initialize(&ClientContext::default(), auth).await?;
            sessions.insert(owner.to_string(), session);
        }
        Ok(sessions.get(owner).cloned().flatten())
    }

    fn expect_reply(&self, posted: Posted) -> Result<Message, BackendError> {
        match posted {
            Posted::Reply(m, _) => Ok(*m),
            Posted::Accepted => Err(BackendError::Protocol {
                server: self.name.clone(),
                reason: "request answered with 202".into(),
            }),
        }
    }

    /// Sends a notification (on the client's or the shared session).
    pub async fn notify(
        &self,
        method: &str,
        params: Option<Value>,
        client: &ClientContext,
    ) -> Result<(), BackendError> {
        let info = self.info(client).await?;
        let auth = self.authorize(client).await?;
        let params = adapt::for_era(info.era(), params, client);
        let msg = Message::notification(method, params);
        if let Some(own) = &client.upstream_session {
            let version = own
                .version
                .parse()
                .unwrap_or(ProtocolVersion::LATEST_HANDSHAKE);
            let mut msg = msg;
            if let Some(p) = msg.params.as_mut() {
                gatehouse_wire::meta::strip_protocol_keys(p);
            }
            return self
                .post(&msg, Some(&own.id), version, &[], None, &auth)
                .await
                .map(|_| ());
        }
        let session = match info.era() {
            Era::Stateless => None,
            Era::Handshake => self
                .shared_sessions
                .lock()
                .await
                .get(&self.session_owner(client))
                .cloned()
                .flatten(),
        };
        self.post(&msg, session.as_deref(), info.version, &[], None, &auth)
            .await
            .map(|_| ())
    }

    /// Ends one client's upstream session (best effort).
    pub async fn close_session(&self, session: &UpstreamSession) {
        let _ = self
            .client
            .delete(self.url.clone())
            .header(h::SESSION_ID, &session.id)
            .send()
            .await;
    }

    /// Ends the shared upstream sessions, and the container of a server the gateway runs.
    pub async fn shutdown(&self) {
        if let Some(local) = &self.local {
            // The container and its sessions go together.
            self.shared_sessions.lock().await.clear();
            local.shutdown().await;
            return;
        }
        let sessions: Vec<String> = self
            .shared_sessions
            .lock()
            .await
            .drain()
            .filter_map(|(_, s)| s)
            .collect();
        for s in sessions {
            let _ = self
                .client
                .delete(self.url.clone())
                .header(h::SESSION_ID, s)
                .send()
                .await;
        }
    }
}
