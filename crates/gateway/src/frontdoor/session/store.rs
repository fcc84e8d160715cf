//! [`SessionStore`]: every handshake-era session this process serves, bounded in time and
//! number, and the one place a session id is accepted or refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gatehouse_identity::{Caller, PrincipalKind};
use gatehouse_store::{SessionRevocations, StoreError};
use gatehouse_telemetry::Metrics;
use gatehouse_wire::ProtocolVersion;

use super::clock::Clock;
use super::revocation::Follower;
use super::table::{Caps, Table};
use super::{EndReason, Session, SessionClaims, SessionLookup, digest_of};
use crate::seal::Keyring;

/// Purpose string bound into sealed session ids.
const PURPOSE: &str = "gatehouse/session/v1";

/// What a [`SessionStore`] is built from.
#[derive(Debug, Clone)]
pub struct SessionStoreConfig {
    /// A session expires this long after it opened (`gateway.session_ttl`).
    pub ttl: Duration,
    /// A session expires after this long without a request (`gateway.sessions.idle_timeout`).
    pub idle_timeout: Duration,
    /// Most live sessions per principal (`gateway.sessions.max_per_principal`).
    pub max_per_principal: usize,
    /// Most live sessions on this process (`gateway.sessions.max`).
    pub max: usize,
    /// Where DELETEd sessions are revoked for every process; `None` keeps revocations in this
    /// process only (a restart forgets them).
    pub revocations: Option<SessionRevocations>,
    /// Counts ended sessions (`gatehouse_sessions_ended_total`).
    pub metrics: Arc<Metrics>,
}

impl SessionStoreConfig {
    /// The bounds of `gateway`, with the store's revocations and the gateway's metrics.
    pub fn new(
        gateway: &gatehouse_config::GatewayConfig,
        revocations: Option<SessionRevocations>,
        metrics: Arc<Metrics>,
    ) -> SessionStoreConfig {
        let (ttl, idle_timeout, max_per_principal, max) = bounds(gateway);
        SessionStoreConfig {
            ttl,
            idle_timeout,
            max_per_principal,
            max,
            revocations,
            metrics,
        }
    }

    /// The store.
    pub fn build(self) -> SessionStore {
        self.build_with(Clock::system())
    }

    pub(super) fn build_with(self, clock: Clock) -> SessionStore {
        SessionStore {
            state: Mutex::new(State {
                table: Table::new(self.metrics),
                bounds: Bounds {
                    ttl_secs: self.ttl.as_secs(),
                    idle_ms: u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX),
                    caps: Caps {
                        max_per_principal: self.max_per_principal.max(1),
                        max: self.max.max(1),
                    },
                    trim: false,
                },
            }),
            follower: self.revocations.map(Follower::new),
            clock,
        }
    }
}

fn bounds(g: &gatehouse_config::GatewayConfig) -> (Duration, Duration, usize, usize) {
    let usize_of = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    (
        g.session_ttl.get(),
        g.sessions.idle_timeout.get(),
        usize_of(g.sessions.max_per_principal),
        usize_of(g.sessions.max),
    )
}

#[derive(Debug, Clone, Copy)]
struct Bounds {
    ttl_secs: u64,
    idle_ms: u64,
    caps: Caps,
    /// The caps were lowered: the next sweep ends what is over them.
    trim: bool,
}

/// A session could not be ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The revocation could not be written, so another process (or this one after a restart)
    /// would still accept the id: the session stays open.
    #[error("the session's revocation could not be stored: {0}")]
    Revocation(#[from] StoreError),
}

/// The table and its bounds under one lock: a request takes it once.
#[derive(Debug)]
struct State {
    table: Table,
    bounds: Bounds,
}

/// All sessions this process serves.
#[derive(Debug)]
pub struct SessionStore {
    state: Mutex<State>,
    follower: Option<Follower>,
    clock: Clock,
}

impl SessionStore {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("sessions lock")
    }

    /// Applies the bounds of a reloaded config; lowered caps take effect at the next sweep.
    pub fn reconfigure(&self, gateway: &gatehouse_config::GatewayConfig) {
        let (ttl, idle, max_per_principal, max) = bounds(gateway);
        let caps = Caps {
            max_per_principal: max_per_principal.max(1),
            max: max.max(1),
        };
        let b = &mut self.state().bounds;
        b.trim |= caps.max_per_principal < b.caps.max_per_principal || caps.max < b.caps.max;
        b.ttl_secs = ttl.as_secs();
        b.idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        b.caps = caps;
    }

    /// Why `s` has expired at `now_ms`, if it has.
    fn expired(&self, s: &Session, b: &Bounds, now_ms: u64) -> Option<EndReason> {
        let now_unix = self.clock.unix_secs_at(now_ms);
        if now_unix.saturating_sub(s.claims.iat) > b.ttl_secs {
            Some(EndReason::Ttl)
        } else if now_ms.saturating_sub(s.last_seen()) > b.idle_ms && !s.has_calls_running() {
            Some(EndReason::Idle)
        } else {
            None
        }
    }

    /// Creates a session for `caller` and its sealed id. When the caller's principal (or, for
    /// an anonymous caller, its source address) or the process is at its cap, the session
    /// idle the longest is ended first.
    pub fn create(
        &self,
        keys: &Keyring,
        mut claims: SessionClaims,
        version: ProtocolVersion,
        caller: &Caller,
    ) -> Arc<Session> {
        let now = self.clock.now_ms();
        claims.iat = self.clock.unix_secs_at(now);
        let plaintext = serde_json::to_vec(&claims).expect("claims serialise");
        let id = keys.seal(PURPOSE, &plaintext);
        let mut st = self.state();
        let State { table, bounds } = &mut *st;
        let owner = table.owner(&owner_key(caller));
        let s = Arc::new(Session::new(id, claims, version, caller, owner, now));
        table.insert(s.clone(), bounds.caps, bounds.ttl_secs);
        s
    }

    /// Finds a session by id for `caller`: live here, or re-opened from its sealed id (another
    /// replica, or this process before a restart, minted it) unless it was revoked. A session
    /// opened by another principal is unknown to this one. Marks the session as seen now.
    ///
    /// Only the first sight of an id on this process asks the store; later requests find it
    /// in memory.
    pub async fn get(
        &self,
        keys: &Keyring,
        id: &str,
        vs_path: &str,
        caller: &Caller,
    ) -> Result<Arc<Session>, SessionLookup> {
        let principal = caller.principal.key();
        let ttl_secs = {
            let mut st = self.state();
            let State { table, bounds } = &mut *st;
            if let Some(s) = table.get(id) {
                if s.claims.vs != vs_path || s.claims.sub != principal {
                    return Err(SessionLookup::Unknown);
                }
                let now = self.clock.now_ms();
                if let Some(reason) = self.expired(s, bounds, now) {
                    table.end(id, reason, true, bounds.ttl_secs);
                    return Err(SessionLookup::Gone(reason));
                }
                s.last_seen.store(now, Ordering::Relaxed);
                return Ok(s.clone());
            }
            bounds.ttl_secs
        };
        // Opened before anything else: whatever this process knows of the id is told only to
        // the principal it belongs to.
        let plaintext = keys.open(PURPOSE, id).map_err(|_| SessionLookup::Unknown)?;
        let claims: SessionClaims =
            serde_json::from_slice(&plaintext).map_err(|_| SessionLookup::Unknown)?;
        if claims.vs != vs_path || claims.sub != principal {
            return Err(SessionLookup::Unknown);
        }
        let version = claims.v.parse().map_err(|_| SessionLookup::Unknown)?;
        let digest = digest_of(id);
        if let Some(reason) = self.state().table.ended(&digest) {
            return Err(SessionLookup::Gone(reason));
        }
        let now_unix = self.clock.unix_secs_at(self.clock.now_ms());
        if now_unix.saturating_sub(claims.iat) > ttl_secs {
            return Err(SessionLookup::Gone(EndReason::Ttl));
        }
        if let Some(follower) = &self.follower {
            match follower.is_revoked(&digest).await {
                Ok(false) => {}
                Ok(true) => {
                    let expires_at = claims.iat.saturating_add(ttl_secs);
                    let mut st = self.state();
                    st.table.mark_ended(&digest, EndReason::Deleted, expires_at);
                    return Err(SessionLookup::Gone(EndReason::Deleted));
                }
                Err(e) => {
                    // Refused (deny by default): the client re-initializes, which needs no store.
                    // The outage itself is logged once, by the revocation follower.
                    tracing::debug!(error = %e, "a session id could not be checked against the store's revocations; refused");
                    return Err(SessionLookup::Unverifiable);
                }
            }
        }
        let now = self.clock.now_ms();
        let mut st = self.state();
        let State { table, bounds } = &mut *st;
        // A concurrent request may have ended or re-opened it while the store answered.
        if let Some(reason) = table.ended(&digest) {
            return Err(SessionLookup::Gone(reason));
        }
        if let Some(s) = table.get(id) {
            s.last_seen.store(now, Ordering::Relaxed);
            return Ok(s.clone());
        }
        // Idle counts from the first sight on this process: the process that minted the
        // session knows when it was last used, this one does not.
        let owner = table.owner(&owner_key(caller));
        let s = Arc::new(Session::new(
            id.to_string(),
            claims,
            version,
            caller,
            owner,
            now,
        ));
        table.insert(s.clone(), bounds.caps, bounds.ttl_secs);
        Ok(s)
    }

    /// Marks a session held outside the id lookup (the legacy HTTP+SSE transport) as seen now.
    /// False when it has ended or expired: the caller must not use it.
    pub fn touch(&self, session: &Session) -> bool {
        if session.end_reason().is_some() {
            return false;
        }
        let now = self.clock.now_ms();
        let mut st = self.state();
        let State { table, bounds } = &mut *st;
        if let Some(reason) = self.expired(session, bounds, now) {
            table.end(&session.id, reason, true, bounds.ttl_secs);
            return false;
        }
        session.last_seen.store(now, Ordering::Relaxed);
        true
    }

    /// Ends a session its client DELETEd: records the revocation in the store (returning only
    /// once it is durable), then ends it here. When the store fails, the session stays open.
    pub async fn delete(&self, session: &Session) -> Result<(), SessionError> {
        if let Some(follower) = &self.follower {
            let ttl_secs = self.state().bounds.ttl_secs;
            let expires_at = session.claims.iat.saturating_add(ttl_secs);
            follower.revoke(&session.digest, expires_at).await?;
        }
        self.end(&session.id);
        Ok(())
    }

    /// Ends a session in this process only (its in-flight calls are aborted and its id refused
    /// here); [`SessionStore::delete`] also revokes it for every process.
    pub fn end(&self, id: &str) -> Option<Arc<Session>> {
        let now_unix = self.clock.unix_secs_at(self.clock.now_ms());
        let mut st = self.state();
        let ttl_secs = st.bounds.ttl_secs;
        let ended = st.table.end(id, EndReason::Deleted, false, ttl_secs);
        if ended.is_none() {
            st.table
                .mark_ended(&digest_of(id), EndReason::Deleted, now_unix + ttl_secs);
        }
        ended
    }

    /// Ends the sessions that expired (idle or TTL) and, after a reload lowered them, those
    /// over the caps; forgets ended ids past their TTL. Returns every session ended by the
    /// gateway (expiry, eviction at a cap) or revoked through another process since the last
    /// call: their subscriptions and upstream sessions are still to be released.
    pub fn sweep(&self) -> Vec<Arc<Session>> {
        let now = self.clock.now_ms();
        let mut st = self.state();
        let State { table, bounds } = &mut *st;
        table.expire(|s| self.expired(s, bounds, now), bounds.ttl_secs);
        if std::mem::take(&mut bounds.trim) {
            table.trim(bounds.caps, bounds.ttl_secs);
        }
        table.prune_ended(self.clock.unix_secs_at(now));
        table.drain_released()
    }

    /// Follows the store's revocations (DELETEs served by other processes) and ends the live
    /// sessions they name; prunes expired revocations now and then. Call about once a second.
    pub async fn follow_revocations(&self) -> Result<(), StoreError> {
        let Some(follower) = &self.follower else {
            return Ok(());
        };
        let now_unix = self.clock.unix_secs_at(self.clock.now_ms());
        let revoked = follower.poll(now_unix).await?;
        if !revoked.is_empty() {
            let mut st = self.state();
            let ttl_secs = st.bounds.ttl_secs;
            let n = st.table.end_revoked(&revoked, ttl_secs);
            drop(st);
            if n > 0 {
                tracing::info!(
                    sessions = n,
                    "sessions deleted through another process ended here"
                );
            }
        }
        Ok(())
    }

    /// Live sessions on this process by virtual server path.
    pub fn count_by_virtual_server(&self) -> std::collections::HashMap<String, usize> {
        self.state().table.count_by_virtual_server()
    }

    /// Live sessions on this process.
    pub fn len(&self) -> usize {
        self.state().table.len()
    }

    /// True when no session is live on this process.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a caller's sessions count against for `max_per_principal`: its principal or, when
/// anonymous, its source address (every anonymous caller shares one principal).
fn owner_key(caller: &Caller) -> std::borrow::Cow<'_, str> {
    match (caller.principal.kind, caller.source_ip) {
        (PrincipalKind::Anonymous, Some(ip)) => format!("anonymous@{ip}").into(),
        _ => caller.principal.key().into(),
    }
}

impl Session {
    fn new(
        id: String,
        claims: SessionClaims,
        version: ProtocolVersion,
        caller: &Caller,
        owner: Arc<str>,
        now_ms: u64,
    ) -> Session {
        Session {
            digest: digest_of(&id),
            id,
            claims,
            version,
            principal: caller.principal.clone(),
            pending: Default::default(),
            log_level: Default::default(),
            streams: Default::default(),
            subscriptions: Default::default(),
            inflight: Default::default(),
            next_request: AtomicU64::new(1),
            owner,
            last_seen: AtomicU64::new(now_ms),
            ended: Default::default(),
        }
    }
}
