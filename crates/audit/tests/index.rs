//! The index follows the journal: catching up is incremental, never indexes a line twice, and
//! leaves a line that is still being written for next time.

use std::time::Duration;

use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::index::{catch_up, read_event};
use gatehouse_audit::{AuditEvent, EventKind, Journal, JournalOptions, Outcome, PrincipalRecord};
use gatehouse_config::{Durability, OnFailure};
use gatehouse_store::{AuditFilter, Store};

fn event(user: &str) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
    e.principal = Some(PrincipalRecord {
        kind: "user".into(),
        subject: user.into(),
        ..Default::default()
    });
    e.arguments = Some(serde_json::json!({"query": format!("secret of {user}")}));
    e
}

#[tokio::test]
async fn catching_up_is_incremental_and_rows_point_at_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    let journal = Journal::open(JournalOptions {
        dir: audit.clone(),
        durability: Durability::Process,
        on_failure: OnFailure::Refuse,
        segment_bytes: 1 << 20,
        signer: CheckpointSigner::load_or_create(&dir.path().join("k"), true).unwrap(),
        sync_interval: Duration::from_millis(100),
        max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
    })
    .unwrap();
    let store = Store::open_sqlite_in(dir.path()).await.unwrap();
    let index = store.audit_index();
    for u in ["alice", "bob", "alice"] {
        journal.append(&event(u)).await.unwrap();
    }
    assert_eq!(
        catch_up(&index, &audit).await.unwrap(),
        4,
        "3 events and journal.start"
    );
    assert_eq!(catch_up(&index, &audit).await.unwrap(), 0, "nothing new");
    journal.append(&event("carol")).await.unwrap();
    assert_eq!(catch_up(&index, &audit).await.unwrap(), 1);

    // A line being written (no newline yet) waits for the next catch-up.
    let segment = std::fs::read_dir(&audit)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    journal.close().await.unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        f.write_all(b"{\"seq\":6,").unwrap();
    }
    assert_eq!(catch_up(&index, &audit).await.unwrap(), 0);

    let rows = index
        .query(&AuditFilter {
            user: Some("alice".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let full = read_event(&audit, r).unwrap();
        assert_eq!(full["seq"], r.seq);
        assert_eq!(full["arguments"]["query"], "secret of alice");
    }
    // The index itself holds no argument values.
    for file in ["gatehouse.db", "gatehouse.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("secret of"),
            "{file}"
        );
    }
    store.close().await;
}
