//! Event layouts for receivers and exports: the journal's own line (`jsonl`), Elastic
//! Common Schema ([`ecs`]), OCSF API Activity ([`ocsf`]) and ArcSight CEF ([`cef`]).
//! Sinks and `gatehouse audit export` both lay events out through [`render`].

pub mod cef;
pub mod ecs;
pub mod ocsf;

use gatehouse_config::EventFormat;

use crate::event::{AuditEvent, Outcome};
use crate::reader::StoredEvent;

/// One event laid out as `format`, on one line (no newline). `raw` is the journal line the
/// event was read from (what `jsonl` writes, byte for byte).
pub fn render(format: EventFormat, event: &StoredEvent, raw: &[u8]) -> String {
    match format {
        EventFormat::Jsonl => String::from_utf8_lossy(raw).into_owned(),
        EventFormat::Ecs => ecs::document(event).to_string(),
        EventFormat::Ocsf => ocsf::document(event).to_string(),
        EventFormat::Cef => cef::line(event),
    }
}

/// The file name extension of `format`'s files (`jsonl`, `ecs.jsonl`, `ocsf.jsonl`, `cef`).
pub fn extension(format: EventFormat) -> &'static str {
    match format {
        EventFormat::Jsonl => "jsonl",
        EventFormat::Ecs => "ecs.jsonl",
        EventFormat::Ocsf => "ocsf.jsonl",
        EventFormat::Cef => "cef",
    }
}

/// The event's time as milliseconds since the Unix epoch (what OCSF `time` and CEF `rt`
/// hold); `None` for a time the journal would never write.
pub fn epoch_ms(time: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(time).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// Whether the outcome is a failure of the caller's attempt (every outcome but `ok` and
/// `cancelled`: a cancelled call neither succeeded nor was refused).
pub fn failed(outcome: Outcome) -> bool {
    !matches!(outcome, Outcome::Ok | Outcome::Cancelled)
}

/// The name an analyst knows the caller by: e-mail when the token had one, else the
/// subject.
pub fn user_name(e: &AuditEvent) -> Option<&str> {
    let p = e.principal.as_ref()?;
    p.email
        .as_deref()
        .or((!p.subject.is_empty()).then_some(p.subject.as_str()))
}

/// The times of the first and the last failure a coalesced summary counts
/// (`detail.first_at`, `detail.last_at`; see [`Coalescer`](crate::Coalescer)).
pub fn coalesced_window(e: &AuditEvent) -> Option<(&str, &str)> {
    let d = e.detail.as_ref()?;
    Some((d.get("first_at")?.as_str()?, d.get("last_at")?.as_str()?))
}

/// The fields whose strings the journal cut (see [`bound`](crate::bound)), comma-separated.
pub fn truncated_fields(e: &AuditEvent) -> Option<String> {
    let t = e.truncated.as_ref().filter(|t| !t.is_empty())?;
    Some(t.keys().map(String::as_str).collect::<Vec<_>>().join(","))
}

/// How severe the event is on the 0–10 scale CEF uses; syslog and OCSF derive theirs from
/// the same buckets so the three agree.
pub fn severity(e: &AuditEvent) -> Severity {
    use crate::event::EventKind;
    if e.kind == EventKind::Anomaly {
        return Severity::High;
    }
    match e.outcome {
        Outcome::Ok | Outcome::Cancelled => Severity::Info,
        Outcome::Rejected | Outcome::Error => Severity::Low,
        Outcome::Denied | Outcome::Unauthenticated | Outcome::Forbidden => Severity::Medium,
    }
}

/// Severity buckets shared by the layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Normal operation.
    Info,
    /// A failed or malformed call.
    Low,
    /// A refused call (policy, authentication, authorization).
    Medium,
    /// A detector's finding.
    High,
}
