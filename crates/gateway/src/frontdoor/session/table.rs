//! The live sessions of this process and the ids it has ended, with the caps applied on every
//! insert. Plain data under the store's one lock: no I/O, no clock of its own.

use std::borrow::Borrow;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gatehouse_telemetry::Metrics;

use super::{EndReason, Session};

/// How many of the sessions idle the longest one scan remembers: evictions at the total cap
/// cost one scan of the table per this many, not one each.
const EVICTION_CANDIDATES: usize = 64;

/// Ended ids are remembered by this much of their digest: a collision would need 2^64 ids.
type EndedKey = [u8; 16];

/// What [`Table::insert`] and [`Table::trim`] enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Caps {
    pub max_per_principal: usize,
    pub max: usize,
}

/// A live session keyed by its id without a second copy of the id.
#[derive(Debug)]
struct ById(Arc<Session>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.as_str().hash(state)
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

/// A session that was idle the longest when the candidates were collected, with the
/// `last_seen` it had then (ordered by it alone).
#[derive(Debug)]
struct Candidate(u64, Arc<Session>);

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

#[derive(Debug)]
pub(super) struct Table {
    live: HashSet<ById>,
    by_owner: HashMap<Arc<str>, Vec<Arc<Session>>>,
    /// Ended ids, with when they would have expired anyway (unix seconds, shifted left by 8)
    /// and why they ended (the low byte): a sealed id still opens after its session ended
    /// here, and must stay refused.
    ended: HashMap<EndedKey, u64>,
    /// Sessions ended by the gateway (or revoked elsewhere) whose resources are not released
    /// yet: [`Table::drain_released`] hands them over.
    released: Vec<Arc<Session>>,
    /// Oldest last. Valid while a candidate's `last_seen` is unchanged: every session not in
    /// the list was seen later than every candidate when they were collected, and `last_seen`
    /// only grows.
    candidates: Vec<Candidate>,
    metrics: Arc<Metrics>,
}

fn ended_key(digest: &[u8; 32]) -> EndedKey {
    let mut k = [0; 16];
    k.copy_from_slice(&digest[..16]);
    k
}

impl Table {
    pub(super) fn new(metrics: Arc<Metrics>) -> Table {
        Table {
            live: HashSet::new(),
            by_owner: HashMap::new(),
            ended: HashMap::new(),
            released: Vec::new(),
            candidates: Vec::new(),
            metrics,
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<&Arc<Session>> {
        self.live.get(id).map(|s| &s.0)
    }

    pub(super) fn len(&self) -> usize {
        self.live.len()
    }

    /// Why the id with `digest` ended, if this process ended it.
    pub(super) fn ended(&self, digest: &[u8; 32]) -> Option<EndReason> {
        let packed = self.ended.get(&ended_key(digest))?;
        EndReason::from_code(*packed as u8)
    }

    /// Remembers an id as ended for `reason` until `expires_at` (unix seconds), without a live
    /// session (revoked before this process served it).
    pub(super) fn mark_ended(&mut self, digest: &[u8; 32], reason: EndReason, expires_at: u64) {
        self.ended.insert(
            ended_key(digest),
            expires_at << 8 | u64::from(reason.code()),
        );
    }

    /// The owner key as held by the table, so sessions of one owner share one allocation.
    pub(super) fn owner(&self, key: &str) -> Arc<str> {
        match self.by_owner.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        }
    }

    /// Adds a live session, first ending its owner's session idle the longest while the owner
    /// is at `max_per_principal`, then the process's while it is at `max`.
    pub(super) fn insert(&mut self, session: Arc<Session>, caps: Caps, ttl_secs: u64) {
        while let Some(oldest) = self.by_owner.get(&session.owner).and_then(|list| {
            (list.len() >= caps.max_per_principal)
                .then(|| list.iter().min_by_key(|s| s.last_seen()).cloned())
                .flatten()
        }) {
            self.end(&oldest.id, EndReason::CapPrincipal, true, ttl_secs);
        }
        while self.live.len() >= caps.max {
            let Some(oldest) = self.oldest_idle() else {
                break;
            };
            self.end(&oldest.id, EndReason::CapTotal, true, ttl_secs);
        }
        self.by_owner
            .entry(session.owner.clone())
            .or_default()
            .push(session.clone());
        self.live.insert(ById(session));
    }

    /// Ends sessions until every owner and the process are within `caps` (after the caps were
    /// lowered by a reload).
    pub(super) fn trim(&mut self, caps: Caps, ttl_secs: u64) {
        let over: Vec<Arc<str>> = self
            .by_owner
            .iter()
            .filter(|(_, list)| list.len() > caps.max_per_principal)
            .map(|(k, _)| k.clone())
            .collect();
        for owner in over {
            while let Some(oldest) = self.by_owner.get(&owner).and_then(|list| {
                (list.len() > caps.max_per_principal)
                    .then(|| list.iter().min_by_key(|s| s.last_seen()).cloned())
                    .flatten()
            }) {
                self.end(&oldest.id, EndReason::CapPrincipal, true, ttl_secs);
            }
        }
        while self.live.len() > caps.max {
            let Some(oldest) = self.oldest_idle() else {
                break;
            };
            self.end(&oldest.id, EndReason::CapTotal, true, ttl_secs);
        }
    }

    /// The live session idle the longest.
    fn oldest_idle(&mut self) -> Option<Arc<Session>> {
        loop {
            if self.candidates.is_empty() {
                self.collect_candidates();
            }
            let Candidate(seen, s) = self.candidates.pop()?;
            // Seen again since (no longer known to be the oldest), or already ended.
            if s.last_seen() == seen && s.end_reason().is_none() {
                return Some(s);
            }
        }
    }

    fn collect_candidates(&mut self) {
        // A max-heap of the oldest ones found so far: its top is the youngest of them.
        let mut heap = BinaryHeap::with_capacity(EVICTION_CANDIDATES + 1);
        for ById(s) in &self.live {
            let seen = s.last_seen();
            if heap.len() < EVICTION_CANDIDATES {
                heap.push(Candidate(seen, s.clone()));
            } else if heap.peek().is_some_and(|top| seen < top.0) {
                heap.pop();
                heap.push(Candidate(seen, s.clone()));
            }
        }
        let mut v = heap.into_sorted_vec();
        v.reverse();
        self.candidates = v;
    }

    /// Ends a live session for `reason`: its id is refused from now on, its in-flight calls
    /// are aborted, and with `release` it is handed to [`Table::drain_released`]. An id that
    /// is not live is remembered as ended for `ttl_secs`.
    pub(super) fn end(
        &mut self,
        id: &str,
        reason: EndReason,
        release: bool,
        ttl_secs: u64,
    ) -> Option<Arc<Session>> {
        let ById(s) = self.live.take(id)?;
        if let Some(list) = self.by_owner.get_mut(&s.owner) {
            list.retain(|x| !Arc::ptr_eq(x, &s));
            if list.is_empty() {
                self.by_owner.remove(&s.owner);
            }
        }
        s.ended.store(reason.code(), Ordering::Release);
        self.mark_ended(&s.digest, reason, s.claims.iat.saturating_add(ttl_secs));
        for (_, h) in s.inflight.lock().expect("inflight lock").drain() {
            h.abort();
        }
        self.metrics.session_ended(reason.as_str());
        if release {
            self.released.push(s.clone());
        }
        Some(s)
    }

    /// Ends the live sessions `expired` picks a reason for.
    pub(super) fn expire(
        &mut self,
        expired: impl Fn(&Session) -> Option<EndReason>,
        ttl_secs: u64,
    ) {
        let due: Vec<(String, EndReason)> = self
            .live
            .iter()
            .filter_map(|ById(s)| expired(s).map(|r| (s.id.clone(), r)))
            .collect();
        for (id, reason) in due {
            self.end(&id, reason, true, ttl_secs);
        }
    }

    /// Ends the live sessions whose digest is in `revoked` (deleted through another process);
    /// returns how many.
    pub(super) fn end_revoked(&mut self, revoked: &HashSet<[u8; 32]>, ttl_secs: u64) -> usize {
        let due: Vec<String> = self
            .live
            .iter()
            .filter(|ById(s)| revoked.contains(&s.digest))
            .map(|ById(s)| s.id.clone())
            .collect();
        for id in &due {
            self.end(id, EndReason::Deleted, true, ttl_secs);
        }
        due.len()
    }

    /// Forgets ended ids whose sealed id has expired by `now_unix` anyway.
    pub(super) fn prune_ended(&mut self, now_unix: u64) {
        self.ended.retain(|_, packed| *packed >> 8 >= now_unix);
    }

    pub(super) fn drain_released(&mut self) -> Vec<Arc<Session>> {
        std::mem::take(&mut self.released)
    }

    pub(super) fn count_by_virtual_server(&self) -> HashMap<String, usize> {
        // Counted by reference: the gauge is refreshed every second over every session.
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for ById(s) in &self.live {
            *counts.entry(s.claims.vs.as_str()).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(vs, n)| (vs.to_string(), n))
            .collect()
    }
}
