//! Coalesced refusals keep their stable reason code: a SIEM query on the code (ECS
//! `event.reason`, OCSF `status_detail`, CEF `reason`) and the index find the first event and
//! the summary alike, and their counts add up to the refusals made.

mod support;

use std::time::{Duration, Instant};

use gatehouse_audit::format::{cef, ecs, ocsf};
use gatehouse_audit::index::{catch_up, read_event};
use gatehouse_audit::reader::StoredEvent;
use gatehouse_audit::{AuditEvent, ClientRecord, Coalescer, EventKind, FailureKey, Outcome};
use gatehouse_store::AuditFilter;
use support::Fixture;

const CODE: &str = "missing_kid";

fn refusal(ms: u64) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::AuthFailure, Outcome::Unauthenticated);
    e.time = format!("2026-05-01T10:00:00.{:06}Z", ms * 1000);
    e.reason = Some(CODE.into());
    e.virtual_server = Some("tools".into());
    e.client = Some(ClientRecord {
        ip: Some("192.0.2.7".into()),
        ..Default::default()
    });
    e
}

#[tokio::test]
async fn every_event_of_a_coalesced_flood_carries_the_code_and_the_counts_add_up() {
    let f = Fixture::new().await;
    let journal = &f.journal;
    let coalescer = Coalescer::new(Duration::from_secs(10));
    let key = || FailureKey {
        source: "192.0.2.7".into(),
        endpoint: "/mcp".into(),
        reason: CODE.into(),
    };
    let t0 = Instant::now();
    const REFUSALS: u64 = 25;
    for i in 0..REFUSALS {
        let at = t0 + Duration::from_millis(i * 10);
        for e in coalescer.admit(key(), refusal(i * 10), at) {
            journal.append(&e).await.unwrap();
        }
    }
    for e in coalescer.due(t0 + Duration::from_secs(11)) {
        journal.append(&e).await.unwrap();
    }
    let refusals: Vec<StoredEvent> = f
        .events()
        .into_iter()
        .filter(|s| s.event.kind == EventKind::AuthFailure)
        .collect();
    assert_eq!(refusals.len(), 2, "the first refusal and one summary");
    let total: u64 = refusals.iter().map(|s| s.event.count.unwrap()).sum();
    assert_eq!(total, REFUSALS);
    for s in &refusals {
        assert_eq!(s.event.reason.as_deref(), Some(CODE), "{:?}", s.event);
        assert_eq!(ecs::document(s)["event"]["reason"], CODE);
        assert_eq!(ocsf::document(s)["status_detail"], CODE);
        let line = cef::line(s);
        assert!(line.contains(&format!(" reason={CODE} ")), "{line}");
    }
    let summary = &refusals[1];
    assert_eq!(summary.event.count, Some(REFUSALS - 1));
    let detail = summary.event.detail.as_ref().unwrap();
    assert_eq!(detail["first_at"], "2026-05-01T10:00:00.010000Z");
    assert_eq!(detail["last_at"], "2026-05-01T10:00:00.240000Z");
    let doc = ecs::document(summary);
    assert_eq!(doc["event"]["start"], "2026-05-01T10:00:00.010000Z");
    assert_eq!(doc["event"]["end"], "2026-05-01T10:00:00.240000Z");
    assert_eq!(doc["gatehouse"]["count"], REFUSALS - 1);
    let doc = ocsf::document(summary);
    assert_eq!(doc["count"], REFUSALS - 1);
    assert_eq!(
        doc["end_time"].as_i64().unwrap() - doc["start_time"].as_i64().unwrap(),
        230
    );
    let line = cef::line(summary);
    assert!(line.contains(&format!("cnt={}", REFUSALS - 1)), "{line}");

    // The index finds both by type; each row's event carries the code.
    let audit = f.journal_dir();
    let index = f.store.audit_index();
    catch_up(&index, &audit).await.unwrap();
    let rows = index
        .query(&AuditFilter {
            kind: Some("auth.failure".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(read_event(&audit, r).unwrap()["reason"], CODE);
    }
}
