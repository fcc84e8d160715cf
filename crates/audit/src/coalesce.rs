//! Coalescing of identical failures before authentication: a client (or attacker) hammering an
//! endpoint with bad tokens produces one event per source, endpoint and reason per interval,
//! with a count, instead of one per request.
//!
//! The first failure of an interval is written at once with `count: 1`; the ones after it
//! become one summary event when the interval ends, with `count` the number it stands for and
//! `detail.first_at` / `detail.last_at` the times of the first and last of them. The summary's
//! `reason` is the same stable code as the first event's (SIEM queries match on it), except
//! for the shared key of a spray beyond [`MAX_KEYS`] sources, whose summary counts failures
//! of any reason and says [`MANY_DISTINCT_FAILURES`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bound::prefix;
use crate::event::AuditEvent;

/// Most distinct failure keys tracked at once; beyond it, failures share one key per endpoint
/// so memory stays bounded under a spray from many addresses.
pub const MAX_KEYS: usize = 10_000;

/// Longest source, endpoint or reason a key holds (an endpoint is whatever path a client
/// sent): with [`MAX_KEYS`], what the keys can hold is bounded.
const MAX_KEY_BYTES: usize = 512;

/// The reason code of the summary of failures beyond [`MAX_KEYS`] sources, which share one
/// key per endpoint whatever their reason.
pub const MANY_DISTINCT_FAILURES: &str = "many_distinct_failures";

/// The source of that shared key.
const ANY_SOURCE: &str = "*";

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
    /// Times of the first and the last suppressed failure.
    first_at: Option<String>,
    last_at: String,
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
        let key = FailureKey {
            source: prefix(&key.source, MAX_KEY_BYTES).to_string(),
            endpoint: prefix(&key.endpoint, MAX_KEY_BYTES).to_string(),
            reason: prefix(&key.reason, MAX_KEY_BYTES).to_string(),
        };
        let mut slots = self.slots.lock().expect("coalescer lock");
        let key = if slots.len() >= MAX_KEYS && !slots.contains_key(&key) {
            FailureKey {
                source: ANY_SOURCE.into(),
                endpoint: key.endpoint,
                reason: MANY_DISTINCT_FAILURES.into(),
            }
        } else {
            key
        };
        let mut out = Vec::new();
        if let Some(slot) = slots.get_mut(&key) {
            if now.duration_since(slot.started) < self.interval {
                slot.suppressed += 1;
                if slot.first_at.is_none() {
                    slot.first_at = Some(event.time.clone());
                }
                slot.last_at = event.time;
                return out;
            }
            if slot.suppressed > 0 {
                out.push(summary(&key, slot));
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
                last_at: first.time.clone(),
                first_at: None,
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
        slots.retain(|key, slot| {
            if now.duration_since(slot.started) < self.interval {
                return true;
            }
            if slot.suppressed > 0 {
                out.push(summary(key, slot));
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
            .map(|(k, s)| summary(&k, &s))
            .collect()
    }
}

/// The event standing for the failures suppressed in `slot`'s interval: the first one's
/// event with their count and times. The reason keeps its stable code.
fn summary(key: &FailureKey, slot: &Slot) -> AuditEvent {
    let mut e = slot.sample.clone();
    e.time = crate::event::now_rfc3339();
    e.count = Some(slot.suppressed);
    e.request_id = None;
    let mut detail = match e.detail.take() {
        Some(Value::Object(map)) => map,
        Some(other) => [("sample".to_string(), other)].into_iter().collect(),
        None => Default::default(),
    };
    let first_at = slot.first_at.as_deref().unwrap_or(&slot.last_at);
    detail.insert("first_at".into(), json!(first_at));
    detail.insert("last_at".into(), json!(slot.last_at));
    if key.source == ANY_SOURCE {
        // Many sources and reasons share this count: the sample's would misattribute it.
        e.reason = Some(MANY_DISTINCT_FAILURES.into());
        if let Some(c) = &mut e.client {
            c.ip = None;
        }
        detail.insert("sources".into(), json!("many"));
    }
    e.detail = Some(Value::Object(detail));
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
    fn a_summary_keeps_the_reason_code_and_carries_the_repetition_in_count_and_detail() {
        let c = Coalescer::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let ev = |second: u32| {
            let mut e = AuditEvent::new(EventKind::AuthFailure, Outcome::Unauthenticated);
            e.reason = Some("missing_kid".into());
            e.time = format!("2026-05-01T10:00:0{second}.000000Z");
            e
        };
        let first = c.admit(key("10.0.0.1"), ev(0), t0);
        assert_eq!(first[0].reason.as_deref(), Some("missing_kid"));
        for s in 1..=3 {
            let at = t0 + Duration::from_secs(u64::from(s));
            assert!(c.admit(key("10.0.0.1"), ev(s), at).is_empty());
        }
        let due = c.due(t0 + Duration::from_secs(10));
        assert_eq!(due.len(), 1);
        let summary = &due[0];
        assert_eq!(summary.reason.as_deref(), Some("missing_kid"));
        assert_eq!(summary.count, Some(3));
        let detail = summary.detail.as_ref().unwrap();
        assert_eq!(detail["first_at"], "2026-05-01T10:00:01.000000Z");
        assert_eq!(detail["last_at"], "2026-05-01T10:00:03.000000Z");
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
        let drained = c.drain();
        assert_eq!(drained[0].count, Some(4999));
        assert_eq!(drained[0].reason.as_deref(), Some(MANY_DISTINCT_FAILURES));
    }
}
