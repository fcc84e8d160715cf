//! Coalescing of identical failures before authentication: a client (or attacker) hammering an
//! endpoint with bad tokens produces one event per source, endpoint and reason per interval,
//! with a count, instead of one per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::AuditEvent;

/// Most distinct failure keys tracked at once; beyond it, failures share one key per endpoint
/// so memory stays bounded under a spray from many addresses.
const MAX_KEYS: usize = 10_000;

/// What makes two failures identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FailureKey {
    /// Source address.
    pub source: String,
    /// Endpoint (virtual server path).
    pub endpoint: String,
    /// Reason (stable code or HTTP status).
    pub reason: String,
}

struct Slot {
    started: Instant,
    suppressed: u64,
    sample: AuditEvent,
}

/// Tracks recent failures.
pub struct Coalescer {
    interval: Duration,
    slots: Mutex<HashMap<FailureKey, Slot>>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Coalescer {
    /// A coalescer with one event per key per `interval`.
    pub fn new(interval: Duration) -> Coalescer {
        Coalescer {
            interval,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a failure: returns the events to write now — the failure itself when it is
    /// the first of its kind in the interval (with `count: 1`), plus the count of an earlier
    /// interval that had not been flushed yet.
    pub fn admit(&self, key: FailureKey, event: AuditEvent, now: Instant) -> Vec<AuditEvent> {
        let mut slots = self.slots.lock().expect("coalescer lock");
        let key = if slots.len() >= MAX_KEYS && !slots.contains_key(&key) {
            FailureKey {
                source: "*".into(),
                endpoint: key.endpoint,
                reason: "(many distinct failures)".into(),
            }
        } else {
            key
        };
        let mut out = Vec::new();
        if let Some(slot) = slots.get_mut(&key) {
            if now.duration_since(slot.started) < self.interval {
                slot.suppressed += 1;
                return out;
            }
            if slot.suppressed > 0 {
                out.push(summary(slot));
            }
            slots.remove(&key);
        }
        let mut first = event;
        first.count = Some(1);
        slots.insert(
            key,
            Slot {
                started: now,
                suppressed: 0,
                sample: first.clone(),
            },
        );
        out.push(first);
        out
    }

    /// Summaries of intervals that ended: one event per key with the number of failures it
    /// stood for beyond the first.
    pub fn due(&self, now: Instant) -> Vec<AuditEvent> {
        let mut slots = self.slots.lock().expect("coalescer lock");
        let mut out = Vec::new();
        slots.retain(|_, slot| {
            if now.duration_since(slot.started) < self.interval {
                return true;
            }
            if slot.suppressed > 0 {
                out.push(summary(slot));
            }
            false
        });
        out
    }

    /// Summaries of every open interval (at shutdown).
    pub fn drain(&self) -> Vec<AuditEvent> {
        let mut slots = self.slots.lock().expect("coalescer lock");
        slots
            .drain()
            .filter(|(_, s)| s.suppressed > 0)
            .map(|(_, s)| summary(&s))
            .collect()
    }
}

fn summary(slot: &Slot) -> AuditEvent {
    let mut e = slot.sample.clone();
    e.time = crate::event::now_rfc3339();
    e.count = Some(slot.suppressed);
    e.request_id = None;
    e.reason = Some(format!(
        "{} (repeated; first at {})",
        e.reason.as_deref().unwrap_or("refused"),
        slot.sample.time
    ));
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Outcome};

    fn key(source: &str) -> FailureKey {
        FailureKey {
            source: source.into(),
            endpoint: "/mcp".into(),
            reason: "invalid_token".into(),
        }
    }

    #[test]
    fn a_flood_becomes_one_event_and_one_count_per_interval() {
        let c = Coalescer::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let ev = || AuditEvent::new(EventKind::AuthFailure, Outcome::Unauthenticated);
        let first = c.admit(key("10.0.0.1"), ev(), t0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].count, Some(1));
        for i in 0..999 {
            assert!(
                c.admit(key("10.0.0.1"), ev(), t0 + Duration::from_millis(i))
                    .is_empty()
            );
        }
        // Another source is not coalesced with the first.
        assert_eq!(c.admit(key("10.0.0.2"), ev(), t0).len(), 1);
        assert!(c.due(t0 + Duration::from_secs(5)).is_empty());
        let due = c.due(t0 + Duration::from_secs(10));
        assert_eq!(due.len(), 1, "only the flooding source has a count");
        assert_eq!(due[0].count, Some(999));
        // The next interval starts afresh.
        assert_eq!(
            c.admit(key("10.0.0.1"), ev(), t0 + Duration::from_secs(11))[0].count,
            Some(1)
        );
        assert!(c.drain().is_empty());
    }

    #[test]
    fn memory_is_bounded_under_a_spray_of_sources() {
        let c = Coalescer::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut written = 0;
        for i in 0..(MAX_KEYS + 5000) {
            written += c
                .admit(
                    key(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)),
                    AuditEvent::new(EventKind::AuthFailure, Outcome::Unauthenticated),
                    t0,
                )
                .len();
        }
        assert_eq!(written, MAX_KEYS + 1);
        assert!(c.slots.lock().unwrap().len() <= MAX_KEYS + 1);
        assert_eq!(c.drain()[0].count, Some(4999));
    }
}
