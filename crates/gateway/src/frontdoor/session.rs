//! Handshake-era sessions: sealed ids that any replica can open, plus the in-process state a
//! live session needs (its stream, pending server→client requests, in-flight calls).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse_wire::{Id, Message, ProtocolVersion};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::backend::{ClientContext, UpstreamSession};
use crate::seal::Keyring;

/// Purpose string bound into sealed session ids.
const PURPOSE: &str = "gatehouse/session/v1";

/// What a sealed session id carries: enough to serve the session on any replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Path of the virtual server the session belongs to.
    pub vs: String,
    /// Negotiated protocol version.
    pub v: String,
    /// Client capabilities from `initialize`.
    pub caps: Value,
    /// Client info from `initialize`.
    pub info: Value,
    /// Upstream session ids by server name.
    #[serde(default)]
    pub up: HashMap<String, UpstreamSession>,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// The principal that opened the session (issuer and subject); only it may use the id.
    #[serde(default)]
    pub sub: String,
}

/// A live session on this process.
#[derive(Debug)]
pub struct Session {
    /// The sealed id the client echoes.
    pub id: String,
    /// What the id carries.
    pub claims: SessionClaims,
    /// Negotiated version.
    pub version: ProtocolVersion,
    /// Server→client requests waiting for the client's answer, by the id the gateway gave them.
    pub pending: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    /// The level set by `logging/setLevel` (held by this process only).
    pub log_level: Mutex<Option<String>>,
    /// Resources this client subscribed to (updates for others are not relayed to it).
    pub subscriptions: Arc<crate::subscriptions::Subscriptions>,
    /// Resumable response streams (`Last-Event-ID`).
    pub streams: Arc<super::resume::Streams>,
    /// In-flight client requests, for `notifications/cancelled`.
    pub inflight: Mutex<HashMap<Id, AbortHandle>>,
    next_request: AtomicU64,
}

impl Session {
    /// The context of a request on this session by `caller`.
    pub fn call_ctx(&self, caller: &gatehouse_identity::Caller) -> crate::context::CallCtx {
        crate::context::CallCtx {
            client: self.client(caller),
            upstream: self.claims.up.clone(),
            era: gatehouse_wire::Era::Handshake,
            protocol_version: self.version.as_str().to_string(),
            events: None,
            param_headers: Vec::new(),
        }
    }

    /// The client context for backend calls made for `caller` (who presented this request's
    /// token: tokens are refreshed while a session lives).
    pub fn client(&self, caller: &gatehouse_identity::Caller) -> ClientContext {
        ClientContext {
            caller: caller.clone(),
            capabilities: Arc::new(self.claims.caps.clone()),
            client_info: Arc::new(self.claims.info.clone()),
            log_level: self.log_level.lock().expect("log level lock").clone(),
            ..Default::default()
        }
    }

    /// Prepares a server→client request for this session's client: gives it an id unique in
    /// the session and registers where the client's answer goes.
    pub fn register_request(
        &self,
        mut request: Message,
        reply: oneshot::Sender<Message>,
    ) -> Message {
        let id = format!(
            "gatehouse-{}",
            self.next_request.fetch_add(1, Ordering::Relaxed)
        );
        let mut pending = self.pending.lock().expect("pending lock");
        // Requests whose waiter gave up (timed out, call ended) will never be answered usefully.
        pending.retain(|_, waiter| !waiter.is_closed());
        pending.insert(id.clone(), reply);
        drop(pending);
        request.id = Some(Id::String(id));
        request
    }
}

/// Why a session id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLookup {
    /// The id does not open, or belongs to another virtual server.
    Unknown,
    /// The id was valid but has expired or was deleted.
    Gone,
}

/// All sessions this process serves.
#[derive(Debug)]
pub struct SessionStore {
    live: Mutex<HashMap<String, Arc<Session>>>,
    /// Ended session ids with when they were issued: kept until they would have expired anyway.
    ended: Mutex<HashMap<String, u64>>,
    ttl: Duration,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SessionStore {
    /// A store whose sessions live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        SessionStore {
            live: Mutex::default(),
            ended: Mutex::default(),
            ttl,
        }
    }

    /// Creates a session and its sealed id.
    pub fn create(
        &self,
        keys: &Keyring,
        mut claims: SessionClaims,
        version: ProtocolVersion,
    ) -> Arc<Session> {
        claims.iat = now();
        let plaintext = serde_json::to_vec(&claims).expect("claims serialise");
        let id = keys.seal(PURPOSE, &plaintext);
        let s = Arc::new(Session::from_claims(id.clone(), claims, version));
        let mut live = self.live.lock().expect("sessions lock");
        // Expired sessions would be refused anyway; dropping them here keeps memory bounded.
        // (An evicted live session re-opens from its sealed id on its next request.)
        if live.len() % 1024 == 1023 {
            let ttl = self.ttl.as_secs();
            let t = now();
            live.retain(|_, s| t.saturating_sub(s.claims.iat) <= ttl);
            self.ended
                .lock()
                .expect("sessions lock")
                .retain(|_, iat| t.saturating_sub(*iat) <= ttl);
        }
        live.insert(id, s.clone());
        drop(live);
        s
    }

    /// Finds a session by id: live here, or re-opened from its sealed id (another replica, or
    /// a restart, minted it). A session opened by another principal is unknown to this one.
    pub fn get(
        &self,
        keys: &Keyring,
        id: &str,
        vs_path: &str,
        principal: &str,
    ) -> Result<Arc<Session>, SessionLookup> {
        let s = self.find(keys, id, vs_path)?;
        if s.claims.sub != principal {
            return Err(SessionLookup::Unknown);
        }
        Ok(s)
    }

    fn find(&self, keys: &Keyring, id: &str, vs_path: &str) -> Result<Arc<Session>, SessionLookup> {
        if self.ended.lock().expect("sessions lock").contains_key(id) {
            return Err(SessionLookup::Gone);
        }
        if let Some(s) = self.live.lock().expect("sessions lock").get(id).cloned() {
            if s.claims.vs != vs_path {
                return Err(SessionLookup::Unknown);
            }
            if now().saturating_sub(s.claims.iat) > self.ttl.as_secs() {
                return Err(SessionLookup::Gone);
            }
            return Ok(s);
        }
        let plaintext = keys.open(PURPOSE, id).map_err(|_| SessionLookup::Unknown)?;
        let claims: SessionClaims =
            serde_json::from_slice(&plaintext).map_err(|_| SessionLookup::Unknown)?;
        if claims.vs != vs_path {
            return Err(SessionLookup::Unknown);
        }
        if now().saturating_sub(claims.iat) > self.ttl.as_secs() {
            return Err(SessionLookup::Gone);
        }
        let version = claims.v.parse().map_err(|_| SessionLookup::Unknown)?;
        let s = Arc::new(Session::from_claims(id.to_string(), claims, version));
        Ok(self
            .live
            .lock()
            .expect("sessions lock")
            .entry(id.to_string())
            .or_insert(s)
            .clone())
    }

    /// Live (unexpired) sessions on this process by virtual server path.
    pub fn count_by_virtual_server(&self) -> HashMap<String, usize> {
        let t = now();
        let mut out = HashMap::new();
        for s in self.live.lock().expect("sessions lock").values() {
            if t.saturating_sub(s.claims.iat) <= self.ttl.as_secs() {
                *out.entry(s.claims.vs.clone()).or_default() += 1;
            }
        }
        out
    }

    /// Ends a session (DELETE): later requests with its id get 404 on this process.
    pub fn end(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.live.lock().expect("sessions lock").remove(id);
        let iat = s.as_ref().map(|s| s.claims.iat).unwrap_or_else(now);
        self.ended
            .lock()
            .expect("sessions lock")
            .insert(id.to_string(), iat);
        if let Some(s) = &s {
            for (_, h) in s.inflight.lock().expect("inflight lock").drain() {
                h.abort();
            }
        }
        s
    }
}

impl Session {
    fn from_claims(id: String, claims: SessionClaims, version: ProtocolVersion) -> Session {
        Session {
            id,
            claims,
            version,
            pending: Mutex::default(),
            log_level: Mutex::new(None),
            streams: Arc::default(),
            subscriptions: Arc::default(),
            inflight: Mutex::default(),
            next_request: AtomicU64::new(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> SessionClaims {
        SessionClaims {
            vs: "/mcp".into(),
            v: "2025-06-18".into(),
            caps: json!({}),
            info: json!({"name": "t"}),
            up: HashMap::from([(
                "echo".into(),
                UpstreamSession {
                    id: "up-1".into(),
                    version: "2025-06-18".into(),
                },
            )]),
            iat: 0,
            sub: "https://idp#alice".into(),
        }
    }

    #[test]
    fn another_replica_with_the_same_key_serves_the_session() {
        let keys = Keyring::ephemeral();
        let a = SessionStore::new(Duration::from_secs(60));
        let s = a.create(&keys, claims(), ProtocolVersion::V2025_06_18);
        let b = SessionStore::new(Duration::from_secs(60));
        let again = b.get(&keys, &s.id, "/mcp", "https://idp#alice").unwrap();
        assert_eq!(
            b.get(&keys, &s.id, "/mcp", "https://idp#mallory")
                .unwrap_err(),
            SessionLookup::Unknown,
            "another principal cannot use the session"
        );
        assert_eq!(again.claims.up["echo"].id, "up-1");
        assert_eq!(again.version, ProtocolVersion::V2025_06_18);
        assert_eq!(
            b.get(&keys, &s.id, "/other", "https://idp#alice")
                .unwrap_err(),
            SessionLookup::Unknown
        );
        assert_eq!(
            b.get(
                &Keyring::ephemeral(),
                &s.id.replace('.', "x."),
                "/mcp",
                "https://idp#alice"
            )
            .unwrap_err(),
            SessionLookup::Unknown
        );
        b.end(&s.id);
        assert_eq!(
            b.get(&keys, &s.id, "/mcp", "https://idp#alice")
                .unwrap_err(),
            SessionLookup::Gone
        );
    }
}
