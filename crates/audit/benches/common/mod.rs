//! What the audit benches share: a realistic tool-call event and a journal to write it to.
// Each bench binary uses its own part of this module.
#![allow(dead_code)]

use std::time::Duration;

use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::{
    AuditEvent, ClientRecord, EventKind, Journal, JournalOptions, Outcome, PrincipalRecord,
    TargetRecord,
};
use gatehouse_config::{Durability, OnFailure};

/// The `i`th event: a tool call with a principal, a client, a target and ~200 bytes of
/// arguments.
pub fn event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
    e.request_id = Some(format!("{i:016x}"));
    e.principal = Some(PrincipalRecord {
        kind: "user".into(),
        subject: "00u1abcd2EFGH3ijk4l5".into(),
        issuer: "https://idp.example.com/oauth2/default".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["engineering".into(), "mcp-users".into()],
        ..Default::default()
    });
    e.client = Some(ClientRecord {
        name: Some("claude-code".into()),
        version: Some("2.1.0".into()),
        ip: Some("10.1.2.3".into()),
        user_agent: Some("node".into()),
    });
    e.virtual_server = Some("engineering".into());
    e.server = Some("jira".into());
    e.method = Some("tools/call".into());
    e.target = Some(TargetRecord {
        kind: "tool".into(),
        name: "search_issues".into(),
        operation: Some("read".into()),
    });
    e.arguments = Some(
        serde_json::json!({"jql": "project = OPS AND status = Open ORDER BY created DESC", "max_results": 50, "fields": ["summary", "status", "assignee"]}),
    );
    e.latency_us = Some(1234);
    e
}

/// A journal in `dir/audit` with `durability`, 64 MiB segments and a key in `dir`.
pub fn open(dir: &std::path::Path, durability: Durability) -> Journal {
    Journal::open(JournalOptions {
        dir: dir.join("audit"),
        durability,
        on_failure: OnFailure::Refuse,
        segment_bytes: 64 * 1024 * 1024,
        signer: CheckpointSigner::load_or_create(&dir.join("k"), true).unwrap(),
        sync_interval: Duration::from_secs(1),
        max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
    })
    .unwrap()
}
