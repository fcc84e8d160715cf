//! ArcSight Common Event Format lines:
//! `CEF:0|Gatehouse|Gatehouse|<version>|<type>/<outcome>|<name>|<severity>|<extensions>`.
//!
//! Standard extension keys hold what they are made for (`rt`, `suser`, `suid`, `src`,
//! `act`, `outcome`, `requestMethod`, `requestClientApplication`, `externalId`, `cnt`,
//! `start`, `end`, …); the rest uses the labeled custom slots `cs1`…`cs6`, `cn1`…`cn2` and
//! `flexString1`. Header values escape `\` and `|`; extension values escape `\`, `=` and
//! line breaks, so a hostile tool name or reason cannot forge a field.

use std::fmt::Write;
use std::net::IpAddr;

use super::{Severity, coalesced_window, epoch_ms, severity, truncated_fields, user_name};
use crate::reader::StoredEvent;

/// The CEF line of one event.
pub fn line(s: &StoredEvent) -> String {
    let e = &s.event;
    let signature = format!("{}/{}", e.kind.as_str(), e.outcome.as_str());
    let sev = match severity(e) {
        Severity::Info => 3,
        Severity::Low => 5,
        Severity::Medium => 7,
        Severity::High => 9,
    };
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "CEF:0|Gatehouse|Gatehouse|{}|{}|{}|{sev}|",
        header(env!("CARGO_PKG_VERSION")),
        header(&signature),
        header(&name(s)),
    );
    let mut ext = Extensions {
        out: &mut out,
        first: true,
    };
    if let Some(ms) = epoch_ms(&e.time) {
        ext.put("rt", &ms.to_string());
    }
    ext.put("externalId", &s.id);
    ext.put("deviceExternalId", &s.instance);
    ext.put("cat", e.kind.as_str());
    ext.put("outcome", e.outcome.as_str());
    if let Some(p) = &e.principal {
        if let Some(n) = user_name(e) {
            ext.put("suser", n);
        }
        if !p.subject.is_empty() {
            ext.put("suid", &p.subject);
        }
        if !p.groups.is_empty() {
            ext.put("spriv", &p.groups.join(","));
        }
    }
    if let Some(c) = &e.client {
        // CEF's src must be an address; anything else would break strict parsers.
        if let Some(ip) = c.ip.as_deref().filter(|ip| ip.parse::<IpAddr>().is_ok()) {
            ext.put("src", ip);
        }
        if let Some(ua) = &c.user_agent {
            ext.put("requestClientApplication", ua);
        }
    }
    if let Some(p) = &e.policy {
        ext.put("act", &p.decision);
    }
    if let Some(m) = &e.method {
        ext.put("requestMethod", m);
    }
    if let Some(server) = &e.server {
        ext.put("destinationServiceName", server);
    }
    if let Some(b) = e.request_bytes {
        ext.put("in", &b.to_string());
    }
    if let Some(r) = &e.result {
        ext.put("out", &r.bytes.to_string());
        if let Some(m) = &r.error_message {
            ext.put("msg", m);
        }
    }
    if let Some(r) = e
        .reason
        .as_deref()
        .or(e.policy.as_ref().and_then(|p| p.reason.as_deref()))
    {
        ext.put("reason", r);
    }
    if let Some(c) = e.count {
        ext.put("cnt", &c.to_string());
    }
    if let Some((first, last)) = coalesced_window(e)
        && let (Some(first), Some(last)) = (epoch_ms(first), epoch_ms(last))
    {
        ext.put("start", &first.to_string());
        ext.put("end", &last.to_string());
    }
    ext.labeled("cs1", "virtualServer", e.virtual_server.as_deref());
    let target = e.target.as_ref().map(|t| match &t.operation {
        Some(op) => format!("{}:{} ({op})", t.kind, t.name),
        None => format!("{}:{}", t.kind, t.name),
    });
    ext.labeled("cs2", "target", target.as_deref());
    let policies = e
        .policy
        .as_ref()
        .map(|p| format!("{} {} {}", p.engine, p.version, p.policies.join(",")));
    ext.labeled("cs3", "policy", policies.as_deref().map(str::trim_end));
    ext.labeled("cs4", "traceId", e.trace_id.as_deref());
    ext.labeled("cs5", "requestId", e.request_id.as_deref());
    let tenant = e.principal.as_ref().and_then(|p| p.tenant.as_deref());
    ext.labeled("cs6", "tenant", tenant);
    let latency = e.latency_us.map(|v| v.to_string());
    ext.labeled("cn1", "latencyMicros", latency.as_deref());
    let status = e
        .result
        .as_ref()
        .and_then(|r| r.http_status.map(i64::from).or(r.error_code))
        .map(|c| c.to_string());
    ext.labeled("cn2", "statusCode", status.as_deref());
    // The lengths and digests of cut strings are in the journal line; CEF names the fields.
    let truncated = truncated_fields(e);
    ext.labeled("flexString1", "truncatedFields", truncated.as_deref());
    out
}

/// The human-readable name: what happened, to what, how it ended.
fn name(s: &StoredEvent) -> String {
    let e = &s.event;
    let mut n = e.kind.as_str().to_string();
    if let Some(m) = &e.method {
        n.push(' ');
        n.push_str(m);
    }
    if let Some(t) = &e.target {
        n.push(' ');
        n.push_str(&t.name);
    }
    n.push(' ');
    n.push_str(e.outcome.as_str());
    n
}

/// Escapes a header value: `\` and `|`; line breaks become spaces (a header cannot hold
/// one).
pub fn header(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an extension value: `\`, `=`, and line breaks as `\n` / `\r`.
pub fn extension(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

struct Extensions<'a> {
    out: &'a mut String,
    first: bool,
}

impl Extensions<'_> {
    fn put(&mut self, key: &str, value: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(' ');
        }
        self.out.push_str(key);
        self.out.push('=');
        self.out.push_str(&extension(value));
    }

    fn labeled(&mut self, key: &str, label: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.put(key, v);
            self.put(&format!("{key}Label"), label);
        }
    }
}
