//! Usage rollups and the anomaly state against real databases (SQLite and PostgreSQL):
//! increments add up, are written only with a cursor that moves, reports group and sort, and
//! the detectors' state answers "first time?" exactly once.

mod common;

use common::TestDb;
use gatehouse_store::{
    Baseline, HourTotals, IndexedEvent, Scope, Store, UsageBy, UsageCounts, UsageIncrement,
    UsageKey,
};

on_both_dialects!(
    increments_add_up_and_only_with_a_moving_cursor,
    reports_group_sort_limit_and_window,
    baselines_and_detector_state_round_trip,
);

const H: i64 = 1_700_000_000 / 3600 * 3600;

fn inc(hour: i64, group: &str, user: &str, server: &str, tool: &str, calls: i64) -> UsageIncrement {
    let mut counts = UsageCounts {
        calls,
        errors: 1,
        tool_errors: 2,
        denied: 3,
        request_bytes: 100 * calls,
        response_bytes: 1000 * calls,
        tokens: 250 * calls,
        ..Default::default()
    };
    counts.record_latency(4_000);
    counts.record_latency(300_000);
    UsageIncrement {
        key: UsageKey {
            hour,
            group: group.into(),
            principal: user.into(),
            issuer: "https://idp".into(),
            tenant: "acme".into(),
            virtual_server: "tools".into(),
            server: server.into(),
            method: "tools/call".into(),
            target: tool.into(),
        },
        email: format!("{user}@example.com"),
        counts,
    }
}

fn row(seq: i64) -> IndexedEvent {
    IndexedEvent {
        instance: "i1".into(),
        seq,
        time_us: H * 1_000_000,
        kind: "mcp.request".into(),
        outcome: "ok".into(),
        segment: "i1-000001.jsonl".into(),
        byte_offset: seq * 10,
        ..Default::default()
    }
}

async fn increments_add_up_and_only_with_a_moving_cursor(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let index = store.audit_index();
    let usage = store.usage();
    let batch = vec![inc(H, "", "alice", "jira", "search", 2)];
    let seg = "i1-000001.jsonl";
    let add = |from, to, rows: Vec<IndexedEvent>| {
        let (index, batch) = (index.clone(), batch.clone());
        async move {
            index
                .add_with_usage(seg, from, to, &rows, &batch)
                .await
                .unwrap()
        }
    };
    assert!(add(0, 100, vec![row(1)]).await);
    assert!(add(100, 200, vec![row(2)]).await);
    // A second indexer that read the same range (the cursor is already past it) counts
    // nothing…
    assert!(!add(100, 200, vec![row(2)]).await);
    assert!(!add(0, 150, vec![row(2)]).await);
    // …nor one that read further into a growing segment from where the cursor was: part of
    // its range is counted already; the next catch-up reads on from 200.
    assert!(!add(100, 300, vec![row(2), row(3)]).await);
    assert_eq!(index.cursors().await.unwrap()[seg], 200);
    let rows = usage.report(UsageBy::User, H, H + 3600, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let c = rows[0].counts;
    assert_eq!(rows[0].key, "alice");
    assert_eq!(rows[0].email.as_deref(), Some("alice@example.com"));
    assert_eq!(
        (c.calls, c.errors, c.tool_errors, c.denied),
        (4, 2, 4, 6),
        "two increments, not four"
    );
    assert_eq!(
        (c.request_bytes, c.response_bytes, c.tokens),
        (400, 4000, 1000)
    );
    assert_eq!(
        (c.timed, c.latency_sum_us, c.latency_max_us),
        (4, 608_000, 300_000)
    );
    assert_eq!(c.latency[0], 2, "4 ms falls in the ≤5 ms bucket");
    assert_eq!(c.latency[6], 2, "300 ms falls in the ≤500 ms bucket");
    assert_eq!(c.p95_us(), Some(300_000), "capped by the maximum");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM usage_rollup").await, 1);
    store.close().await;
}

async fn reports_group_sort_limit_and_window(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let batch = vec![
        inc(H, "", "alice", "jira", "search", 5),
        inc(H, "eng", "alice", "jira", "search", 5),
        inc(H, "ops", "alice", "jira", "search", 5),
        inc(H, "", "bob", "github", "create_issue", 7),
        inc(H, "eng", "bob", "github", "create_issue", 7),
        inc(H + 3600, "", "carol", "github", "", 1),
        inc(H - 3600, "", "dave", "jira", "search", 50),
    ];
    store
        .audit_index()
        .add_with_usage("s", 0, 1, &[], &batch)
        .await
        .unwrap();
    let usage = store.usage();
    let keys = |rows: Vec<gatehouse_store::UsageRow>| {
        rows.into_iter()
            .map(|r| (r.key, r.counts.calls))
            .collect::<Vec<_>>()
    };
    let by = |b, since, until, limit| {
        let usage = usage.clone();
        async move { keys(usage.report(b, since, until, limit).await.unwrap()) }
    };
    assert_eq!(
        by(UsageBy::User, H, H + 7200, 10).await,
        [("bob".into(), 7), ("alice".into(), 5), ("carol".into(), 1)]
    );
    assert_eq!(
        by(UsageBy::Group, H, H + 7200, 10).await,
        [("eng".into(), 12), ("ops".into(), 5)]
    );
    assert_eq!(
        by(UsageBy::Tenant, H, H + 7200, 10).await,
        [("acme".into(), 13)]
    );
    assert_eq!(
        by(UsageBy::Server, H - 3600, H + 7200, 10).await,
        [("jira".into(), 55), ("github".into(), 8)]
    );
    assert_eq!(
        by(UsageBy::Tool, H, H + 7200, 10).await,
        [("create_issue".into(), 7), ("search".into(), 5)],
        "calls without a target are not a tool"
    );
    assert_eq!(
        by(UsageBy::VirtualServer, H, H + 3600, 10).await,
        [("tools".into(), 12)]
    );
    assert_eq!(by(UsageBy::User, H, H + 7200, 1).await, [("bob".into(), 7)]);
    store.close().await;
}

async fn baselines_and_detector_state_round_trip(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    store
        .audit_index()
        .add_with_usage(
            "s",
            0,
            1,
            &[],
            &[
                inc(H, "", "alice", "jira", "search", 3),
                inc(H, "", "alice", "jira", "get_issue", 4),
                inc(H + 7200, "", "alice", "github", "search", 1),
            ],
        )
        .await
        .unwrap();
    let usage = store.usage();
    assert_eq!(
        usage
            .hours(Scope::User, "alice", H, H + 86_400)
            .await
            .unwrap(),
        [
            HourTotals {
                hour: H,
                calls: 7,
                tools: 2,
                errors: 6
            },
            HourTotals {
                hour: H + 7200,
                calls: 1,
                tools: 1,
                errors: 3
            }
        ]
    );
    assert_eq!(
        usage
            .hours(Scope::Server, "jira", H + 1, H + 86_400)
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        usage.first_seen(Scope::Server, "github").await.unwrap(),
        Some(H + 7200)
    );
    assert_eq!(usage.first_seen(Scope::User, "nobody").await.unwrap(), None);

    let state = store.anomalies();
    assert_eq!(state.baseline(Scope::User, "alice").await.unwrap(), None);
    let mut profile = [0.0; 24];
    profile[9] = 0.75;
    profile[10] = 0.25;
    let mut b = Baseline {
        scope: Scope::User,
        name: "alice".into(),
        as_of_hour: H,
        first_seen: H - 86_400,
        hours_observed: 12,
        mean_calls: 4.5,
        stddev_calls: 1.25,
        mean_tools: 2.0,
        error_rate: 0.125,
        profile,
    };
    state.put_baseline(&b).await.unwrap();
    assert_eq!(
        state.baseline(Scope::User, "alice").await.unwrap(),
        Some(b.clone())
    );
    b.as_of_hour += 3600;
    b.mean_calls = 5.0;
    state.put_baseline(&b).await.unwrap();
    assert_eq!(state.baseline(Scope::User, "alice").await.unwrap(), Some(b));
    assert_eq!(state.baseline(Scope::Server, "alice").await.unwrap(), None);

    assert!(
        state
            .remember("alice", "network", "10.0.0.0/24", 5)
            .await
            .unwrap()
    );
    assert!(
        !state
            .remember("alice", "network", "10.0.0.0/24", 9)
            .await
            .unwrap()
    );
    assert!(
        state
            .remember("alice", "network", "10.9.0.0/24", 7)
            .await
            .unwrap()
    );
    assert_eq!(
        state
            .first_seen_other("alice", "network", "10.9.0.0/24")
            .await
            .unwrap(),
        Some(5)
    );
    assert_eq!(
        state
            .first_seen_other("bob", "network", "10.9.0.0/24")
            .await
            .unwrap(),
        None
    );
    // Authorization failures come from the index: requests only, denied or forbidden.
    let failures: Vec<IndexedEvent> = [
        (10, "mcp.request", "denied", "mallory"),
        (11, "mcp.request", "forbidden", "mallory"),
        (12, "mcp.request", "ok", "mallory"),
        (13, "anomaly", "denied", "mallory"),
        (14, "mcp.request", "denied", "alice"),
        (15, "mcp.request", "denied", "mallory"),
    ]
    .into_iter()
    .map(|(seq, kind, outcome, who)| IndexedEvent {
        kind: kind.into(),
        outcome: outcome.into(),
        subject: Some(who.into()),
        time_us: seq * 1_000_000,
        ..row(seq)
    })
    .collect();
    store.audit_index().add("f", 1, &failures).await.unwrap();
    assert_eq!(
        state
            .authorization_failures("mallory", 10_000_000, 15_000_000)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        state
            .authorization_failures("mallory", 11_000_000, 14_000_000)
            .await
            .unwrap(),
        1
    );
    assert!(state.fire_once("volume", "user:alice", H).await.unwrap());
    assert!(!state.fire_once("volume", "user:alice", H).await.unwrap());
    assert!(
        state
            .fire_once("volume", "user:alice", H + 3600)
            .await
            .unwrap()
    );
    assert!(state.fire_once("off_hours", "user:alice", H).await.unwrap());
    store.close().await;
}
