//! Handshake-era sessions: sealed ids that any replica can open, plus the in-process state a
//! live session needs (its stream, pending server→client requests, in-flight calls).
//!
//! Sessions are bounded ([`SessionStore`]): each expires after `gateway.sessions.idle_timeout`
//! without a request or `gateway.session_ttl` after it opened, whichever comes first; a
//! principal holds at most `max_per_principal` and the process at most `max`, the session idle
//! the longest making room. A session its client DELETEs is revoked in the shared store, so no
//! process accepts its sealed id again (`revocation.rs`).

mod clock;
mod ended;
mod revocation;
mod store;
mod table;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gatehouse_identity::Principal;
use gatehouse_wire::{Id, Message, ProtocolVersion};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::backend::{ClientContext, UpstreamSession};

pub use ended::release_ended;
pub use store::{SessionError, SessionStore, SessionStoreConfig};

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

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// No request for `gateway.sessions.idle_timeout`.
    Idle,
    /// `gateway.session_ttl` passed since it opened.
    Ttl,
    /// Its principal opened one session more than `gateway.sessions.max_per_principal`, and
    /// this one was the principal's session idle the longest.
    CapPrincipal,
    /// The process reached `gateway.sessions.max`, and this one was idle the longest.
    CapTotal,
    /// Its client ended it with DELETE (here, or on another process sharing the store).
    Deleted,
}

impl EndReason {
    const ALL: [EndReason; 5] = [
        EndReason::Idle,
        EndReason::Ttl,
        EndReason::CapPrincipal,
        EndReason::CapTotal,
        EndReason::Deleted,
    ];

    /// The name in the `reason` label of `gatehouse_sessions_ended_total` and in the audit
    /// event.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::Ttl => "ttl",
            EndReason::CapPrincipal => "cap_principal",
            EndReason::CapTotal => "cap_total",
            EndReason::Deleted => "deleted",
        }
    }

    /// True when the gateway ended the session itself (a bound bit), not its client: those
    /// ends are audited as `session.end` events of their own.
    pub fn by_gateway(self) -> bool {
        self != EndReason::Deleted
    }

    /// What the client is told.
    fn explain(self) -> &'static str {
        match self {
            EndReason::Idle => "it saw no request for longer than gateway.sessions.idle_timeout",
            EndReason::Ttl => "it is older than gateway.session_ttl",
            EndReason::CapPrincipal => {
                "it was ended to make room for a newer session of the same caller (gateway.sessions.max_per_principal)"
            }
            EndReason::CapTotal => {
                "it was ended because the gateway holds its maximum of sessions (gateway.sessions.max)"
            }
            EndReason::Deleted => "it was deleted",
        }
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(code: u8) -> Option<EndReason> {
        EndReason::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }
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
    /// Who uses the session on this process (the principal that opened it or, after a restart
    /// or on another replica, the first one seen using it: the same issuer and subject).
    pub principal: Arc<Principal>,
    /// Server→client requests waiting for the client's answer, by the id the gateway gave them.
    pub pending: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    /// The level set by `logging/setLevel` (held by this process only).
    pub log_level: Mutex<Option<String>>,
    /// Resource URIs this client subscribed to (updates for others are not relayed to it).
    pub subscriptions: Arc<crate::subscriptions::Subscriptions>,
    /// Resumable response streams (`Last-Event-ID`).
    pub streams: Arc<super::resume::Streams>,
    /// In-flight client requests, for `notifications/cancelled`.
    pub inflight: Mutex<HashMap<Id, AbortHandle>>,
    next_request: AtomicU64,
    /// SHA-256 of `id`: what the store's revocation and the audit journal know it by.
    digest: [u8; 32],
    /// What the session counts against for `max_per_principal`: the principal's key, or the
    /// source address of an anonymous caller.
    owner: Arc<str>,
    /// When it last saw a request, in milliseconds on the store's clock.
    last_seen: AtomicU64,
    /// 0 while live, else the [`EndReason`] code.
    ended: AtomicU8,
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

    /// Why the session ended, or `None` while it is live.
    pub fn end_reason(&self) -> Option<EndReason> {
        EndReason::from_code(self.ended.load(Ordering::Acquire))
    }

    /// The digest the audit journal records for this session (as `observe::session_digest`).
    pub fn audit_digest(&self) -> String {
        hex::encode(&self.digest[..8])
    }

    /// Whether one of its calls is still running (a long tool call is use, not idleness).
    fn has_calls_running(&self) -> bool {
        let inflight = self.inflight.lock().expect("inflight lock");
        // A call whose stream was dropped before its end leaves its handle behind.
        inflight.values().any(|h| !h.is_finished())
    }

    fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }
}

/// Why a session id was not accepted; the message is what the client reads in its 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionLookup {
    /// The id does not open, or belongs to another virtual server or principal.
    #[error("Session not found: initialize a new session")]
    Unknown,
    /// The id is valid but its session ended.
    #[error("Session not found: {}; initialize a new session", .0.explain())]
    Gone(EndReason),
    /// The id is valid, but whether it was revoked cannot be checked (the store is down).
    #[error(
        "Session not found: it cannot be checked against the gateway's store right now; initialize a new session"
    )]
    Unverifiable,
}

/// SHA-256 of a session id.
fn digest_of(id: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(id.as_bytes()).into()
}
