//! Rules for `audit.sinks`, `audit.retention` and `audit.anomalies`.

use std::collections::HashSet;

use crate::audit_sinks::{AnomalyConfig, RetentionConfig, SinkConfig, SinkKind};
use crate::path;

use super::Validator;

/// Event types a sink's `events` filter may name.
pub const EVENT_TYPES: &[&str] = &[
    "mcp.request",
    "auth.failure",
    "session.start",
    "session.end",
    "config.change",
    "policy.change",
    "journal.start",
    "anomaly",
    "retention",
];

/// Syslog facility names (RFC 5424, section 6.2.1) in code order.
pub const SYSLOG_FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

impl Validator<'_> {
    pub(super) fn audit_sinks(&mut self, sinks: &[SinkConfig]) {
        let mut names = HashSet::new();
        for (i, s) in sinks.iter().enumerate() {
            let p = path::index("audit.sinks", i);
            let field = |f: &str| path::key(&p, f);
            if !names.insert(s.name.as_str()) {
                self.at_value(
                    &field("name"),
                    format!("sink name {:?} is used twice; each sink keeps its own cursor under its name", s.name),
                );
            }
            let needs: &[&str] = match s.kind {
                SinkKind::File => &["path"],
                SinkKind::Syslog
                | SinkKind::SplunkHec
                | SinkKind::Elasticsearch
                | SinkKind::OtlpLogs => &["url"],
                SinkKind::Sentinel => &["url", "tenant_id", "client_id", "client_secret", "dcr_id"],
            };
            let set = |f: &str| match f {
                "path" => s.path.is_some(),
                "url" => s.url.is_some(),
                "tenant_id" => s.tenant_id.is_some(),
                "client_id" => s.client_id.is_some(),
                "client_secret" => s.client_secret.is_some(),
                "dcr_id" => s.dcr_id.is_some(),
                _ => true,
            };
            for f in needs.iter().filter(|f| !set(f)) {
                self.at_key(
                    &field("type"),
                    format!("a {} sink needs {f}", s.kind.as_str()),
                );
            }
            if s.kind == SinkKind::SplunkHec && s.token.is_none() {
                self.at_key(
                    &field("type"),
                    "a splunk_hec sink needs token (env:NAME or file:PATH)".into(),
                );
            }
            if s.kind == SinkKind::Elasticsearch {
                // An API key or basic auth, not both: which one wins would be a guess.
                match (&s.token, &s.username, &s.password) {
                    (Some(_), Some(_), _) | (Some(_), _, Some(_)) => self.at_key(
                        &field("token"),
                        "an elasticsearch sink takes either token (API key) or username and password, not both".into(),
                    ),
                    (None, Some(_), None) => self.at_key(
                        &field("username"),
                        "username needs password (env:NAME or file:PATH)".into(),
                    ),
                    (None, None, Some(_)) => self.at_key(
                        &field("password"),
                        "password needs username".into(),
                    ),
                    _ => {}
                }
            }
            for (name, secret) in [
                ("token", &s.token),
                ("password", &s.password),
                ("client_secret", &s.client_secret),
            ] {
                if let Some(secret) = secret {
                    self.secret(&field(name), secret);
                }
            }
            if let Some(url) = &s.url {
                let schemes: &[&str] = match s.kind {
                    SinkKind::Syslog => &["udp", "tcp", "tls"],
                    _ => &["http", "https"],
                };
                match url::Url::parse(url) {
                    Ok(u) if schemes.contains(&u.scheme()) && u.host_str().is_some() => {}
                    _ => self.at_value(
                        &field("url"),
                        format!(
                            "found {url:?}, expected a URL starting with {}",
                            schemes
                                .iter()
                                .map(|s| format!("{s}://"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
            }
            if s.format.is_some() && !matches!(s.kind, SinkKind::File | SinkKind::Syslog) {
                self.at_key(
                    &field("format"),
                    format!(
                        "a {} sink has its own format; format applies to file and syslog sinks",
                        s.kind.as_str()
                    ),
                );
            }
            if let Some(f) = &s.facility
                && !SYSLOG_FACILITIES.contains(&f.as_str())
            {
                self.at_value(
                    &field("facility"),
                    format!("found {f:?}, expected a syslog facility such as local0 or authpriv"),
                );
            }
            for (j, e) in s.events.iter().enumerate() {
                if !EVENT_TYPES.contains(&e.as_str()) {
                    self.at_value(
                        &path::index(&field("events"), j),
                        format!("found {e:?}, expected one of {}", EVENT_TYPES.join(", ")),
                    );
                }
            }
            if s.batch_size == 0 {
                self.at_value(&field("batch_size"), "found 0, expected at least 1".into());
            }
            self.positive(&field("timeout"), s.timeout.get());
            self.positive(&field("flush_interval"), s.flush_interval.get());
            self.positive(&field("max_backoff"), s.max_backoff.get());
        }
    }

    pub(super) fn audit_retention(&mut self, r: &RetentionConfig) {
        for (name, d) in [
            ("default", r.default),
            ("tool_call", r.tool_call),
            ("request", r.request),
            ("auth_failure", r.auth_failure),
            ("session", r.session),
            ("change", r.change),
            ("anomaly", r.anomaly),
            ("usage", r.usage),
        ] {
            if let Some(d) = d
                && d.get().as_secs() < 3600
            {
                self.at_value(
                    &path::key("audit.retention", name),
                    format!(
                        "found {d}, expected at least 1h (retention removes whole segment files)"
                    ),
                );
            }
        }
    }

    pub(super) fn audit_anomalies(&mut self, a: &AnomalyConfig) {
        if a.factor.is_nan() || a.factor <= 1.0 {
            self.at_value(
                "audit.anomalies.factor",
                format!("found {}, expected a factor above 1, such as 3", a.factor),
            );
        }
        if a.ipv4_prefix == 0 || a.ipv4_prefix > 32 {
            self.at_value(
                "audit.anomalies.ipv4_prefix",
                format!("found {}, expected 1 to 32", a.ipv4_prefix),
            );
        }
        if a.ipv6_prefix == 0 || a.ipv6_prefix > 128 {
            self.at_value(
                "audit.anomalies.ipv6_prefix",
                format!("found {}, expected 1 to 128", a.ipv6_prefix),
            );
        }
        if a.failures == 0 {
            self.at_value(
                "audit.anomalies.failures",
                "found 0, expected at least 1".into(),
            );
        }
        self.positive("audit.anomalies.window", a.window.get());
        self.positive("audit.anomalies.failure_window", a.failure_window.get());
    }
}
