//! The usage rollups the index writes from a real journal: exact counts, bytes, latency,
//! tokens, groups and tenants, counted once however often the index catches up.

use std::time::Duration;

use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::index::{catch_up, unix_micros};
use gatehouse_audit::usage::{estimated_tokens, hour_of};
use gatehouse_audit::{
    AuditEvent, EventKind, Journal, JournalOptions, Outcome, PrincipalRecord, ResultRecord,
    TargetRecord,
};
use gatehouse_config::{Durability, OnFailure};
use gatehouse_store::{Store, UsageBy, UsageRow};

const T0: &str = "2026-01-12T09:15:00Z";

fn at(minutes: i64) -> String {
    let us = unix_micros(T0).unwrap() + minutes * 60_000_000;
    humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + Duration::from_micros(us as u64))
        .to_string()
}

struct Req<'a> {
    user: Option<(&'a str, Option<&'a str>, &'a [&'a str])>,
    method: &'a str,
    tool: Option<&'a str>,
    server: &'a str,
    outcome: Outcome,
    status: &'a str,
    bytes: u64,
    latency_us: u64,
    minutes: i64,
}

fn req(r: &Req) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, r.outcome);
    e.time = at(r.minutes);
    e.principal = r.user.map(|(sub, tenant, groups)| PrincipalRecord {
        kind: "user".into(),
        subject: sub.into(),
        issuer: "https://idp".into(),
        email: Some(format!("{sub}@example.com")),
        tenant: tenant.map(str::to_string),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        client_id: None,
    });
    e.virtual_server = Some("tools".into());
    e.server = Some(r.server.into());
    e.method = Some(r.method.into());
    e.target = r.tool.map(|t| TargetRecord {
        kind: "tool".into(),
        name: t.into(),
        operation: None,
    });
    e.request_bytes = Some(120);
    e.result = Some(ResultRecord {
        status: r.status.into(),
        error_code: None,
        error_message: None,
        bytes: r.bytes,
        http_status: None,
    });
    e.latency_us = Some(r.latency_us);
    e
}

const ALICE: Option<(&str, Option<&str>, &[&str])> = Some(("alice", Some("acme"), &["eng", "ops"]));
const BOB: Option<(&str, Option<&str>, &[&str])> = Some(("bob", Some("globex"), &["eng"]));

fn base() -> Req<'static> {
    Req {
        user: ALICE,
        method: "tools/call",
        tool: Some("search"),
        server: "jira",
        outcome: Outcome::Ok,
        status: "ok",
        bytes: 4001,
        latency_us: 2_000,
        minutes: 0,
    }
}

fn row<'a>(rows: &'a [UsageRow], key: &str) -> &'a UsageRow {
    rows.iter()
        .find(|r| r.key == key)
        .unwrap_or_else(|| panic!("no {key:?} in {rows:?}"))
}

#[tokio::test]
async fn rollups_are_exact_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    let journal = Journal::open(JournalOptions {
        dir: audit.clone(),
        durability: Durability::Process,
        on_failure: OnFailure::Refuse,
        segment_bytes: 4096,
        signer: CheckpointSigner::load_or_create(&dir.path().join("k"), true).unwrap(),
        sync_interval: Duration::from_millis(100),
        max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
    })
    .unwrap();
    let store = Store::open_sqlite_in(dir.path()).await.unwrap();
    let index = store.audit_index();
    let events = [
        base(),
        Req {
            latency_us: 40_000,
            minutes: 5,
            ..base()
        },
        Req {
            latency_us: 700_000,
            outcome: Outcome::Error,
            status: "error",
            bytes: 99,
            minutes: 10,
            ..base()
        },
        Req {
            status: "tool_error",
            bytes: 401,
            minutes: 20,
            ..base()
        },
        // The next hour.
        Req {
            user: BOB,
            method: "tools/list",
            tool: None,
            server: "github",
            bytes: 8000,
            minutes: 50,
            ..base()
        },
        Req {
            user: BOB,
            method: "resources/read",
            tool: Some("file:///a"),
            server: "github",
            bytes: 10,
            minutes: 55,
            ..base()
        },
        Req {
            user: BOB,
            method: "initialize",
            tool: None,
            server: "github",
            bytes: 500,
            minutes: 56,
            ..base()
        },
        Req {
            user: BOB,
            tool: Some("delete_repo"),
            server: "github",
            outcome: Outcome::Denied,
            status: "error",
            bytes: 80,
            minutes: 57,
            ..base()
        },
        Req {
            user: None,
            method: "tools/call",
            server: "jira",
            minutes: 58,
            ..base()
        },
    ];
    for e in &events {
        journal.append(&req(e)).await.unwrap();
    }
    // Not calls: an authentication failure and an anomaly event.
    let mut failure = AuditEvent::new(EventKind::AuthFailure, Outcome::Unauthenticated);
    failure.time = at(1);
    journal.append(&failure).await.unwrap();
    let mut anomaly = req(&base());
    anomaly.kind = EventKind::Anomaly;
    journal.append(&anomaly).await.unwrap();
    journal.flush().await.unwrap();
    catch_up(&index, &audit).await.unwrap();
    assert_eq!(catch_up(&index, &audit).await.unwrap(), 0);

    let usage = store.usage();
    let h0 = hour_of(unix_micros(T0).unwrap());
    let report = |by| {
        let usage = usage.clone();
        async move { usage.report(by, h0, h0 + 7200, 100).await.unwrap() }
    };
    let users = report(UsageBy::User).await;
    assert_eq!(users.len(), 3, "{users:?}");
    let a = row(&users, "alice").counts;
    assert_eq!((a.calls, a.errors, a.tool_errors, a.denied), (4, 1, 1, 0));
    assert_eq!(
        (a.request_bytes, a.response_bytes),
        (480, 4001 * 2 + 99 + 401)
    );
    // ceil(4001/4) = 1001, ceil(99/4) = 25, ceil(401/4) = 101.
    assert_eq!(a.tokens, 1001 * 2 + 25 + 101);
    assert_eq!(
        (a.timed, a.latency_sum_us, a.latency_max_us),
        (4, 744_000, 700_000)
    );
    assert_eq!(a.mean_latency_us(), Some(186_000));
    assert_eq!(
        a.p95_us(),
        Some(700_000),
        "the slowest of four is the 95th percentile"
    );
    assert_eq!(
        row(&users, "alice").email.as_deref(),
        Some("alice@example.com")
    );
    let b = row(&users, "bob").counts;
    assert_eq!((b.calls, b.denied), (4, 1));
    // tools/list and resources/read enter the context; initialize does not; the denied
    // tools/call's error does (80 bytes → 20).
    assert_eq!(b.tokens, 2000 + 3 + 20);
    assert_eq!(row(&users, "").counts.calls, 1, "the anonymous call");

    let groups = report(UsageBy::Group).await;
    assert_eq!(row(&groups, "eng").counts.calls, 8, "alice and bob");
    assert_eq!(row(&groups, "ops").counts.calls, 4);
    assert_eq!(groups.len(), 2);
    let tenants = report(UsageBy::Tenant).await;
    assert_eq!(row(&tenants, "acme").counts.calls, 4);
    assert_eq!(row(&tenants, "globex").counts.calls, 4);
    assert_eq!(row(&tenants, "").counts.calls, 1);
    let tools = report(UsageBy::Tool).await;
    assert_eq!(row(&tools, "search").counts.calls, 5);
    assert_eq!(tools.len(), 3, "search, file:///a, delete_repo: {tools:?}");
    let servers = report(UsageBy::Server).await;
    assert_eq!(
        servers
            .iter()
            .map(|r| (r.key.as_str(), r.counts.calls))
            .collect::<Vec<_>>(),
        [("jira", 5), ("github", 4)]
    );
    // Only the first hour.
    let first = usage
        .report(UsageBy::User, h0, h0 + 3600, 100)
        .await
        .unwrap();
    assert_eq!(first.iter().map(|r| r.counts.calls).sum::<i64>(), 4);

    // More lines later: added to the same hours, the earlier ones not again.
    journal
        .append(&req(&Req {
            minutes: 30,
            ..base()
        }))
        .await
        .unwrap();
    journal.flush().await.unwrap();
    assert_eq!(catch_up(&index, &audit).await.unwrap(), 1);
    catch_up(&index, &audit).await.unwrap();
    let users = report(UsageBy::User).await;
    assert_eq!(row(&users, "alice").counts.calls, 5);
    assert_eq!(row(&users, "bob").counts.calls, 4);
    journal.close().await.unwrap();
    store.close().await;
}

#[test]
fn tokens_are_estimated_for_what_enters_the_context() {
    assert_eq!(estimated_tokens("tools/call", 4000), 1000);
    assert_eq!(estimated_tokens("tools/call", 4001), 1001);
    assert_eq!(estimated_tokens("tools/list", 10), 3);
    assert_eq!(estimated_tokens("resources/read", 0), 0);
    assert_eq!(estimated_tokens("prompts/get", 8), 2);
    assert_eq!(estimated_tokens("initialize", 4000), 0);
    assert_eq!(estimated_tokens("ping", 4000), 0);
    assert_eq!(hour_of(7_199_999_999), 3600);
    assert_eq!(hour_of(7_200_000_000), 7200);
}

/// Two indexers (the gateway's and `gatehouse usage report`'s, or two replicas) catching up
/// the same journal at once, while it grows: every call is counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_indexers_count_each_line_once() {
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
    let a = Store::open_sqlite_in(dir.path()).await.unwrap();
    let b = Store::open_sqlite_in(dir.path()).await.unwrap();
    let n = 6000;
    let writer = {
        let journal = journal.clone();
        tokio::spawn(async move {
            for i in 0..n {
                journal
                    .append(&req(&Req {
                        minutes: i % 50,
                        ..base()
                    }))
                    .await
                    .unwrap();
            }
        })
    };
    let indexer = |store: Store| {
        let audit = audit.clone();
        tokio::spawn(async move {
            let mut added = 0;
            for _ in 0..40 {
                added += catch_up(&store.audit_index(), &audit).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            added
        })
    };
    let (ia, ib) = (indexer(a.clone()), indexer(b.clone()));
    writer.await.unwrap();
    journal.flush().await.unwrap();
    let added = ia.await.unwrap() + ib.await.unwrap();
    let added = added + catch_up(&a.audit_index(), &audit).await.unwrap();
    assert_eq!(
        added,
        n as u64 + 1,
        "every line indexed once, journal.start included"
    );
    let h0 = hour_of(unix_micros(T0).unwrap());
    let users = a
        .usage()
        .report(UsageBy::User, h0, h0 + 7200, 10)
        .await
        .unwrap();
    assert_eq!(row(&users, "alice").counts.calls, n);
    assert_eq!(row(&users, "alice").counts.response_bytes, 4001 * n);
    journal.close().await.unwrap();
    a.close().await;
    b.close().await;
}
