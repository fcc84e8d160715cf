//! Bounds on the strings Gatehouse records. A method name, a resource URI or a client's name
//! can be as long as a request body; the journal, the index and the log must not grow with
//! it (a full disk stops every call under `audit.on_failure: refuse`). A string over the bound
//! keeps a valid UTF-8 prefix and ends with `…`, and the record says what the original was:
//! its length in bytes and its SHA-256, so it can still be matched with the client's or the
//! server's own records.
//!
//! The journal bounds every event it writes ([`bound_event`], with `audit.max_field_bytes`),
//! so the index and every sink, which read the journal, agree with it. Log lines bound what
//! they print through [`shown`].

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::AuditEvent;

/// What ends a cut string.
pub const ELLIPSIS: char = '…';

/// The bound when nothing else is configured (`audit.max_field_bytes`' default).
pub const DEFAULT_MAX_FIELD_BYTES: usize = 1024;

/// What a cut string was before it was cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldCut {
    /// Length of the original, in bytes of UTF-8.
    pub bytes: u64,
    /// SHA-256 of the original, hex.
    pub sha256: String,
}

impl FieldCut {
    fn of(s: &str) -> FieldCut {
        FieldCut {
            bytes: s.len() as u64,
            sha256: hex::encode(Sha256::digest(s.as_bytes())),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Cuts `s` to at most `max` bytes — a prefix followed by [`ELLIPSIS`] — and returns what the
/// original was; `None` (and `s` untouched) when it fits. `max` is expected to be well above
/// the ellipsis' 3 bytes (the config requires at least 64).
pub fn cut(s: &mut String, max: usize) -> Option<FieldCut> {
    if s.len() <= max {
        return None;
    }
    let original = FieldCut::of(s);
    let keep = prefix(s, max.saturating_sub(ELLIPSIS.len_utf8())).len();
    s.truncate(keep);
    s.push(ELLIPSIS);
    Some(original)
}

/// Whether any string `e` records is longer than `max` bytes (what [`bound_event`] would cut).
pub fn exceeds(e: &AuditEvent, max: usize) -> bool {
    let over = |s: &String| s.len() > max;
    let over_opt = |s: &Option<String>| s.as_ref().is_some_and(over);
    let principal = e.principal.as_ref().is_some_and(|p| {
        [&p.kind, &p.subject, &p.issuer].into_iter().any(over)
            || [&p.email, &p.tenant, &p.client_id]
                .into_iter()
                .any(over_opt)
            || p.groups.iter().any(over)
    });
    let client = e.client.as_ref().is_some_and(|c| {
        [&c.name, &c.version, &c.ip, &c.user_agent]
            .into_iter()
            .any(over_opt)
    });
    let target = e
        .target
        .as_ref()
        .is_some_and(|t| over(&t.kind) || over(&t.name) || over_opt(&t.operation));
    let result = e
        .result
        .as_ref()
        .is_some_and(|r| over(&r.status) || over_opt(&r.error_message));
    let policy = e.policy.as_ref().is_some_and(|p| {
        [&p.decision, &p.version, &p.engine].into_iter().any(over)
            || over_opt(&p.reason)
            || p.policies.iter().chain(&p.obligations).any(over)
    });
    principal
        || client
        || target
        || result
        || policy
        || [
            &e.request_id,
            &e.virtual_server,
            &e.server,
            &e.method,
            &e.trace_id,
            &e.session,
            &e.reason,
        ]
        .into_iter()
        .any(over_opt)
        || e.detail.as_ref().is_some_and(|d| value_exceeds(d, max))
}

fn value_exceeds(v: &Value, max: usize) -> bool {
    match v {
        Value::String(s) => s.len() > max,
        Value::Array(items) => items.iter().any(|v| value_exceeds(v, max)),
        Value::Object(map) => map.values().any(|v| value_exceeds(v, max)),
        _ => false,
    }
}

/// Cuts every string `e` records to `max` bytes and notes each cut in `e.truncated` under the
/// field's path (`method`, `client.name`, `principal.groups[2]`, `detail.tool`). Returns the
/// fields cut, named without indexes or `detail` keys (a bounded set: the metric's labels).
///
/// The arguments are not touched: `audit.max_argument_bytes` bounds them as a whole, and
/// `arguments_digest` already describes a document that was too large.
pub fn bound_event(e: &mut AuditEvent, max: usize) -> Vec<&'static str> {
    let mut cuts = Cuts {
        max,
        found: BTreeMap::new(),
        fields: Vec::new(),
    };
    if let Some(p) = &mut e.principal {
        cuts.one("principal.kind", "principal.kind", &mut p.kind);
        cuts.one("principal.subject", "principal.subject", &mut p.subject);
        cuts.one("principal.issuer", "principal.issuer", &mut p.issuer);
        cuts.opt("principal.email", &mut p.email);
        cuts.opt("principal.tenant", &mut p.tenant);
        cuts.opt("principal.client_id", &mut p.client_id);
        cuts.list("principal.groups", &mut p.groups);
    }
    if let Some(c) = &mut e.client {
        cuts.opt("client.name", &mut c.name);
        cuts.opt("client.version", &mut c.version);
        cuts.opt("client.ip", &mut c.ip);
        cuts.opt("client.user_agent", &mut c.user_agent);
    }
    if let Some(t) = &mut e.target {
        cuts.one("target.kind", "target.kind", &mut t.kind);
        cuts.one("target.name", "target.name", &mut t.name);
        cuts.opt("target.operation", &mut t.operation);
    }
    if let Some(r) = &mut e.result {
        cuts.one("result.status", "result.status", &mut r.status);
        cuts.opt("result.error_message", &mut r.error_message);
    }
    if let Some(p) = &mut e.policy {
        cuts.one("policy.decision", "policy.decision", &mut p.decision);
        cuts.one("policy.version", "policy.version", &mut p.version);
        cuts.one("policy.engine", "policy.engine", &mut p.engine);
        cuts.opt("policy.reason", &mut p.reason);
        cuts.list("policy.policies", &mut p.policies);
        cuts.list("policy.obligations", &mut p.obligations);
    }
    cuts.opt("request_id", &mut e.request_id);
    cuts.opt("virtual_server", &mut e.virtual_server);
    cuts.opt("server", &mut e.server);
    cuts.opt("method", &mut e.method);
    cuts.opt("trace_id", &mut e.trace_id);
    cuts.opt("session", &mut e.session);
    cuts.opt("reason", &mut e.reason);
    if let Some(d) = &mut e.detail {
        cuts.value("detail".to_string(), d);
    }
    if !cuts.found.is_empty() {
        e.truncated
            .get_or_insert_with(BTreeMap::new)
            .append(&mut cuts.found);
    }
    cuts.fields
}

struct Cuts {
    max: usize,
    found: BTreeMap<String, FieldCut>,
    fields: Vec<&'static str>,
}

impl Cuts {
    fn one(&mut self, field: &'static str, path: impl Into<String>, s: &mut String) {
        if let Some(c) = cut(s, self.max) {
            self.found.insert(path.into(), c);
            self.fields.push(field);
        }
    }

    fn opt(&mut self, field: &'static str, s: &mut Option<String>) {
        if let Some(s) = s {
            self.one(field, field, s);
        }
    }

    fn list(&mut self, field: &'static str, items: &mut [String]) {
        for (i, s) in items.iter_mut().enumerate() {
            if s.len() > self.max {
                self.one(field, format!("{field}[{i}]"), s);
            }
        }
    }

    /// Strings anywhere in a detail document (its keys are Gatehouse's own).
    fn value(&mut self, path: String, v: &mut Value) {
        match v {
            Value::String(s) => self.one("detail", path, s),
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(format!("{path}[{i}]"), item);
                }
            }
            Value::Object(map) => {
                for (k, inner) in map.iter_mut() {
                    self.value(format!("{path}.{k}"), inner);
                }
            }
            _ => {}
        }
    }
}

static LOG_MAX: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_FIELD_BYTES);
static LOG_CUTS: AtomicU64 = AtomicU64::new(0);

/// Sets the bound [`shown`] applies. The gateway sets it from `audit.max_field_bytes` when it
/// starts and on every reload; it is process-wide because the log is.
pub fn set_log_limit(max: usize) {
    LOG_MAX.store(max.max(ELLIPSIS.len_utf8()), Ordering::Relaxed);
}

/// How many values [`shown`] has cut so far (`gatehouse_log_fields_truncated_total`); a value
/// written to several log outputs counts once per output.
pub fn log_cuts() -> u64 {
    LOG_CUTS.load(Ordering::Relaxed)
}

/// `value` as a log line may print it: whole when its text fits the bound set by
/// [`set_log_limit`], else a prefix, `…` and `[N bytes, sha256 H]` of the whole text. Nothing is
/// formatted unless the line is written, and the whole text is never held in memory.
pub fn shown<T: fmt::Display>(value: T) -> Shown<T> {
    Shown(value)
}

/// See [`shown`].
#[derive(Debug, Clone, Copy)]
pub struct Shown<T>(T);

impl<T: fmt::Display> fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Capped {
            max: LOG_MAX.load(Ordering::Relaxed),
            kept: String::new(),
            bytes: 0,
            hasher: None,
        };
        // Writing into `Capped` cannot fail.
        let _ = write!(w, "{}", self.0);
        match w.hasher {
            None => f.write_str(&w.kept),
            Some(hasher) => {
                LOG_CUTS.fetch_add(1, Ordering::Relaxed);
                let kept = prefix(&w.kept, w.max.saturating_sub(ELLIPSIS.len_utf8()));
                write!(
                    f,
                    "{kept}{ELLIPSIS} [{} bytes, sha256 {}]",
                    w.bytes,
                    hex::encode(hasher.finalize())
                )
            }
        }
    }
}

/// Keeps the first `max` bytes written; past them, only counts and hashes.
struct Capped {
    max: usize,
    kept: String,
    bytes: u64,
    hasher: Option<Sha256>,
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes += s.len() as u64;
        if let Some(h) = &mut self.hasher {
            h.update(s.as_bytes());
        } else if self.kept.len() + s.len() <= self.max {
            self.kept.push_str(s);
        } else {
            let mut h = Sha256::new();
            h.update(self.kept.as_bytes());
            h.update(s.as_bytes());
            self.hasher = Some(h);
            let room = self.max - self.kept.len();
            self.kept.push_str(prefix(s, room));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ClientRecord, EventKind, Outcome, PrincipalRecord};

    #[test]
    fn cuts_keep_a_utf8_prefix_within_the_bound_and_describe_the_original() {
        let original = "é".repeat(600); // 1200 bytes
        let mut s = original.clone();
        let c = cut(&mut s, 100).unwrap();
        assert!(s.len() <= 100, "{}", s.len());
        assert!(s.ends_with(ELLIPSIS));
        assert!(original.starts_with(s.trim_end_matches(ELLIPSIS)));
        assert_eq!(c.bytes, 1200);
        assert_eq!(c.sha256, hex::encode(Sha256::digest(original.as_bytes())));
        let mut short = "fits".to_string();
        assert_eq!(cut(&mut short, 4), None);
        assert_eq!(short, "fits");
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(prefix("héllo", 3), "hé");
    }

    #[test]
    fn an_event_is_cut_field_by_field_with_paths() {
        let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
        e.method = Some("m".repeat(5000));
        e.client = Some(ClientRecord {
            name: Some("n".repeat(70)),
            version: Some("1.0".into()),
            ..Default::default()
        });
        e.principal = Some(PrincipalRecord {
            kind: "user".into(),
            groups: vec!["ok".into(), "g".repeat(65)],
            ..Default::default()
        });
        e.detail = Some(serde_json::json!({"tool": "t".repeat(80), "n": 1}));
        assert!(exceeds(&e, 64));
        let fields = bound_event(&mut e, 64);
        assert_eq!(
            fields,
            ["principal.groups", "client.name", "method", "detail"]
        );
        assert!(!exceeds(&e, 64), "a bounded event has nothing left to cut");
        let t = e.truncated.as_ref().unwrap();
        assert_eq!(
            t.keys().collect::<Vec<_>>(),
            [
                "client.name",
                "detail.tool",
                "method",
                "principal.groups[1]"
            ]
        );
        assert_eq!(t["method"].bytes, 5000);
        assert_eq!(e.client.as_ref().unwrap().version.as_deref(), Some("1.0"));
        assert_eq!(e.principal.as_ref().unwrap().groups[0], "ok");
        assert!(e.method.as_ref().unwrap().len() <= 64);
    }

    #[test]
    fn log_values_are_cut_with_their_length_and_digest() {
        // The process-wide bound is the default here (no test changes it).
        let long = "x".repeat(DEFAULT_MAX_FIELD_BYTES * 3);
        let before = log_cuts();
        let text = shown(&long).to_string();
        assert!(text.len() < DEFAULT_MAX_FIELD_BYTES + 100, "{}", text.len());
        let digest = hex::encode(Sha256::digest(long.as_bytes()));
        assert!(
            text.ends_with(&format!("… [{} bytes, sha256 {digest}]", long.len())),
            "{text}"
        );
        assert!(log_cuts() > before);
        // Display values are bounded as they are formatted.
        let args = format!("{}", shown(format_args!("{long}{long}")));
        assert!(args.contains(&format!("[{} bytes, sha256 ", long.len() * 2)));
        assert_eq!(shown("short").to_string(), "short");
    }
}
