//! Rules for the `audit` block and `servers[].audit`.

use crate::audit::{AuditConfig, ServerAudit, parse_redact_path};
use crate::path;

use super::Validator;

impl Validator<'_> {
    pub(super) fn audit(&mut self, a: &AuditConfig) {
        if a.segment_bytes < 64 * 1024 && self.positions.contains("audit.segment_bytes") {
            self.at_value(
                "audit.segment_bytes",
                format!(
                    "found {} bytes, expected at least 65536 (small segments make many files)",
                    a.segment_bytes
                ),
            );
        }
        if a.max_argument_bytes == 0 && self.positions.contains("audit.max_argument_bytes") {
            self.at_value(
                "audit.max_argument_bytes",
                "found 0, expected a size in bytes (use arguments: off to record none)".into(),
            );
        }
        if a.max_field_bytes < 64 && self.positions.contains("audit.max_field_bytes") {
            self.at_value(
                "audit.max_field_bytes",
                format!(
                    "found {}, expected at least 64 bytes (a tool name or URI must stay recognisable)",
                    a.max_field_bytes
                ),
            );
        }
        self.positive("audit.coalesce", a.coalesce.get());
        for (i, key) in a.secret_keys.iter().enumerate() {
            if key.trim().is_empty() {
                self.at_value(
                    &path::index("audit.secret_keys", i),
                    "found an empty key, expected a key name such as ssn".into(),
                );
            }
        }
    }

    pub(super) fn server_audit(&mut self, a: &ServerAudit, p: &str) {
        let redact = path::key(&path::key(p, "audit"), "redact");
        for (i, text) in a.redact.iter().enumerate() {
            if let Err(e) = parse_redact_path(text) {
                self.at_value(&path::index(&redact, i), e);
            }
        }
    }
}
