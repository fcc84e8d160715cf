//! The audit index against real databases (SQLite and PostgreSQL): rows and cursor move
//! together, re-adding is harmless, and every filter narrows the result.

mod common;

use common::TestDb;
use gatehouse_store::{AuditFilter, IndexedEvent, Store};

on_both_dialects!(
    rows_and_cursors_are_added_together_and_idempotently,
    filters_narrow_and_results_are_newest_first,
);

fn row(seq: i64, subject: &str, target: &str, outcome: &str) -> IndexedEvent {
    IndexedEvent {
        instance: "i1".into(),
        seq,
        time_us: 1_000_000 * seq,
        kind: "mcp.request".into(),
        outcome: outcome.into(),
        subject: Some(subject.into()),
        email: Some(format!("{subject}@example.com")),
        issuer: Some("https://idp".into()),
        virtual_server: Some("tools".into()),
        server: Some(if target == "search" { "jira" } else { "github" }.into()),
        method: Some("tools/call".into()),
        target: Some(target.into()),
        latency_us: Some(1500),
        segment: "i1-000001.jsonl".into(),
        byte_offset: seq * 100,
    }
}

async fn rows_and_cursors_are_added_together_and_idempotently(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let index = store.audit_index();
    assert!(index.cursors().await.unwrap().is_empty());
    let rows: Vec<_> = (1..=3).map(|i| row(i, "alice", "search", "ok")).collect();
    index.add("i1-000001.jsonl", 300, &rows).await.unwrap();
    // A second indexer that read the same lines adds nothing, and cannot move the cursor back.
    index.add("i1-000001.jsonl", 200, &rows[..2]).await.unwrap();
    assert_eq!(index.cursors().await.unwrap()["i1-000001.jsonl"], 300);
    let all = index
        .query(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], rows[2]);
    // More rows than one statement takes.
    let many: Vec<_> = (4..=1206).map(|i| row(i, "bob", "search", "ok")).collect();
    index.add("i1-000002.jsonl", 99_999, &many).await.unwrap();
    let all = index
        .query(&AuditFilter {
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1206);
    store.close().await;
}

async fn filters_narrow_and_results_are_newest_first(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let index = store.audit_index();
    let rows = vec![
        row(1, "alice", "search", "ok"),
        row(2, "bob", "search", "denied"),
        row(3, "alice", "create_issue", "denied"),
        row(4, "alice", "search", "ok"),
    ];
    index.add("i1-000001.jsonl", 400, &rows).await.unwrap();
    let q = |f: AuditFilter| {
        let index = index.clone();
        async move {
            index
                .query(&AuditFilter { limit: 10, ..f })
                .await
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        }
    };
    let user = |u: &str| Some(u.to_string());
    assert_eq!(
        q(AuditFilter {
            user: user("alice"),
            ..Default::default()
        })
        .await,
        [4, 3, 1]
    );
    assert_eq!(
        q(AuditFilter {
            user: user("bob@example.com"),
            ..Default::default()
        })
        .await,
        [2]
    );
    assert_eq!(
        q(AuditFilter {
            target: user("search"),
            outcome: user("denied"),
            ..Default::default()
        })
        .await,
        [2]
    );
    assert_eq!(
        q(AuditFilter {
            server: user("github"),
            ..Default::default()
        })
        .await,
        [3]
    );
    assert_eq!(
        q(AuditFilter {
            since_us: Some(2_000_000),
            until_us: Some(4_000_000),
            ..Default::default()
        })
        .await,
        [3, 2]
    );
    assert_eq!(
        q(AuditFilter {
            kind: user("auth.failure"),
            ..Default::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        index
            .query(&AuditFilter {
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        2
    );
    store.close().await;
}
