//! Recorded strings are bounded where the journal writes them, so the journal, the index and
//! every SIEM layout hold the same short strings, each cut one described by its original
//! length and SHA-256; the chain still verifies.

mod support;

use std::sync::{Arc, Mutex};

use gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES as MAX;
use gatehouse_audit::format::{cef, ecs, ocsf};
use gatehouse_audit::index::catch_up;
use gatehouse_audit::reader::{StoredEvent, read_lines, segment_files};
use gatehouse_audit::{
    AuditEvent, ClientRecord, EventKind, Outcome, PrincipalRecord, ResultRecord, TargetRecord,
    verify,
};
use gatehouse_store::AuditFilter;
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::Fixture;

const HUGE: usize = 3 * 1024 * 1024;

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A request whose method, resource URI, client name and version, user agent, group and
/// error message are each far over the bound.
fn hostile() -> (AuditEvent, String) {
    let method = format!("tools/{}", "m".repeat(HUGE));
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Error);
    e.method = Some(method.clone());
    e.target = Some(TargetRecord {
        kind: "resource".into(),
        name: format!("file:///{}", "é".repeat(HUGE / 2)),
        operation: None,
    });
    e.client = Some(ClientRecord {
        name: Some("n".repeat(HUGE)),
        version: Some("v".repeat(2 * MAX)),
        ip: Some("127.0.0.1".into()),
        user_agent: Some("u".repeat(MAX + 1)),
    });
    e.principal = Some(PrincipalRecord {
        kind: "user".into(),
        subject: "alice".into(),
        groups: vec!["eng".into(), "g".repeat(5 * MAX)],
        ..Default::default()
    });
    e.result = Some(ResultRecord {
        status: "error".into(),
        error_code: Some(-32601),
        error_message: Some(format!("Method not found: {method}")),
        bytes: 90,
        http_status: None,
    });
    (e, method)
}

#[tokio::test]
async fn long_strings_are_cut_alike_in_the_journal_the_index_and_every_layout() {
    let f = Fixture::new().await;
    let journal = &f.journal;
    let cut: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let seen = cut.clone();
    journal.on_truncated(move |field| seen.lock().unwrap().push(field));
    let (event, method) = hostile();
    journal.append(&event).await.unwrap();
    journal.close().await.unwrap();

    // The journal line.
    let audit = f.journal_dir();
    let segment = &segment_files(&audit).unwrap()[0];
    let (lines, _) = read_lines(&segment.path, 0, 10).unwrap();
    let line = &lines[1].bytes;
    assert!(
        line.len() < 16 * 1024,
        "journal line of {} bytes",
        line.len()
    );
    let v: Value = serde_json::from_slice(line).unwrap();
    let recorded = v["method"].as_str().unwrap();
    assert!(recorded.len() <= MAX, "{}", recorded.len());
    assert!(recorded.ends_with('…'));
    assert!(method.starts_with(recorded.trim_end_matches('…')));
    let t = &v["truncated"];
    assert_eq!(t["method"]["bytes"], method.len());
    assert_eq!(t["method"]["sha256"], sha256(&method));
    for field in [
        "target.name",
        "client.name",
        "client.version",
        "client.user_agent",
        "principal.groups[1]",
        "result.error_message",
    ] {
        assert!(
            t[field]["bytes"].as_u64().unwrap() > MAX as u64,
            "{field}: {t}"
        );
        assert_eq!(t[field]["sha256"].as_str().unwrap().len(), 64, "{field}");
    }
    let name = v["target"]["name"].as_str().unwrap();
    assert!(name.len() <= MAX && name.starts_with("file:///é"), "{name}");
    assert_eq!(v["principal"]["groups"][0], "eng");
    assert_eq!(v["client"]["ip"], "127.0.0.1");
    assert_eq!(v["principal"]["subject"], "alice");
    let mut fields = cut.lock().unwrap().clone();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "client.name",
            "client.user_agent",
            "client.version",
            "method",
            "principal.groups",
            "result.error_message",
            "target.name"
        ],
        "the metric hears of every cut, by field"
    );
    let report = verify(&audit, None).unwrap();
    assert!(report.damages.is_empty(), "{report:?}");

    // The index.
    let index = f.store.audit_index();
    catch_up(&index, &audit).await.unwrap();
    let rows = index
        .query(&AuditFilter {
            kind: Some("mcp.request".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].method.as_deref(), Some(recorded));
    assert!(rows[0].target.as_ref().unwrap().len() <= MAX);

    // The SIEM layouts: valid, small, and saying what was cut.
    let stored = StoredEvent::parse(line).unwrap();
    let ecs = ecs::document(&stored);
    let ocsf = ocsf::document(&stored);
    let cef = cef::line(&stored);
    for (name, text) in [
        ("ecs", ecs.to_string()),
        ("ocsf", ocsf.to_string()),
        ("cef", cef.clone()),
    ] {
        assert!(text.len() < 32 * 1024, "{name}: {} bytes", text.len());
    }
    assert_eq!(
        ecs["gatehouse"]["truncated"]["method"]["sha256"],
        sha256(&method)
    );
    assert_eq!(
        ocsf["unmapped"]["truncated"]["method"]["bytes"],
        method.len()
    );
    assert!(
        cef.contains("flexString1Label=truncatedFields")
            && cef.contains("flexString1=client.name,client.user_agent,client.version,method,"),
        "{cef}"
    );
}

#[tokio::test]
async fn events_within_the_bound_are_written_unchanged() {
    let f = Fixture::new().await;
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
    e.method = Some("m".repeat(MAX));
    e.detail = Some(serde_json::json!({"note": "x".repeat(MAX)}));
    f.journal.append(&e).await.unwrap();
    let stored = &f.events()[1];
    assert_eq!(stored.event.method, e.method, "exactly the bound fits");
    assert_eq!(stored.event.detail, e.detail);
    assert_eq!(stored.event.truncated, None);
}
