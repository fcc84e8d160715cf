//! `gatehouse usage report` through the real binary on a synthetic journal (SQLite and
//! PostgreSQL), and the anomaly detectors on the indexer thread of a running `gatehouse up`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::{
    AuditEvent, EventKind, Journal, JournalOptions, Outcome, PrincipalRecord, ResultRecord,
    TargetRecord,
};
use gatehouse_config::{Durability, OnFailure};
use serde_json::Value;

fn ago(minutes: u64) -> String {
    humantime::format_rfc3339_micros(
        std::time::SystemTime::now() - Duration::from_secs(minutes * 60),
    )
    .to_string()
}

#[allow(clippy::too_many_arguments)]
fn call(
    user: &str,
    tenant: &str,
    groups: &[&str],
    tool: &str,
    operation: &str,
    outcome: Outcome,
    bytes: u64,
    latency_us: u64,
    minutes_ago: u64,
) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, outcome);
    e.time = ago(minutes_ago);
    e.principal = Some(PrincipalRecord {
        kind: "user".into(),
        subject: user.into(),
        issuer: "https://idp".into(),
        email: Some(format!("{user}@example.com")),
        tenant: Some(tenant.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        client_id: None,
    });
    e.virtual_server = Some("tools".into());
    e.server = Some("jira".into());
    e.method = Some("tools/call".into());
    e.target = Some(TargetRecord {
        kind: "tool".into(),
        name: tool.into(),
        operation: Some(operation.into()),
    });
    e.request_bytes = Some(100);
    e.result = Some(ResultRecord {
        status: "ok".into(),
        error_code: None,
        error_message: None,
        bytes,
        http_status: None,
    });
    e.latency_us = Some(latency_us);
    e
}

/// Writes `events` as a journal chain of its own into `<data_dir>/audit`.
async fn write_journal(data_dir: &Path, events: &[AuditEvent]) {
    let journal = Journal::open(JournalOptions {
        dir: data_dir.join("audit"),
        durability: Durability::Process,
        on_failure: OnFailure::Refuse,
        segment_bytes: 1 << 20,
        signer: CheckpointSigner::load_or_create(&data_dir.join("synthetic.key"), true).unwrap(),
        sync_interval: Duration::from_millis(100),
        max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
    })
    .unwrap();
    for e in events {
        journal.append(e).await.unwrap();
    }
    journal.close().await.unwrap();
}

fn synthetic() -> Vec<AuditEvent> {
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(call(
            "alice",
            "Acme, Inc.",
            &["eng", "ops"],
            "search",
            "read",
            Outcome::Ok,
            4000,
            10_000 * (i + 1),
            90,
        ));
    }
    out.push(call(
        "alice",
        "Acme, Inc.",
        &["eng", "ops"],
        "search",
        "read",
        Outcome::Error,
        40,
        1_000,
        80,
    ));
    out.push(call(
        "bob",
        "globex",
        &["eng"],
        "get_issue",
        "read",
        Outcome::Ok,
        800,
        5_000,
        30,
    ));
    out.push(call(
        "bob",
        "globex",
        &["eng"],
        "delete_issue",
        "delete",
        Outcome::Denied,
        80,
        500,
        20,
    ));
    // Older than --since 1d below.
    out.push(call(
        "carol",
        "globex",
        &[],
        "search",
        "read",
        Outcome::Ok,
        10,
        1_000,
        3 * 24 * 60,
    ));
    out
}

/// Runs `usage report` with `args` and the data/database location.
fn report(location: &[&str], args: &[&str]) -> String {
    let mut all = vec!["usage", "report"];
    all.extend(location);
    all.extend(args);
    let (code, out, err) = gatehouse(&all);
    assert_eq!(code, 0, "{all:?}: {err}");
    out
}

fn check_reports(location: &[&str]) {
    // JSON: exact numbers.
    let json: Value = serde_json::from_str(&report(
        location,
        &["--by", "user", "--since", "1d", "--format", "json"],
    ))
    .unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "carol is older than a day: {json}");
    let alice = &rows[0];
    assert_eq!(alice["user"], "alice");
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["calls"], 4);
    assert_eq!(alice["errors"], 1);
    assert_eq!(alice["error_rate"], 0.25);
    assert_eq!(alice["denied"], 0);
    assert_eq!(alice["avg_latency_ms"], 15.25);
    assert_eq!(alice["max_latency_ms"], 30.0);
    assert_eq!(alice["p95_latency_ms"], 30.0);
    assert_eq!(alice["request_bytes"], 400);
    assert_eq!(alice["response_bytes"], 12_040);
    assert_eq!(alice["estimated_tokens"], 3010);
    assert_eq!(rows[1]["user"], "bob");
    assert_eq!(rows[1]["denied"], 1);
    assert_eq!(rows[1]["estimated_tokens"], 220);

    // The default window (30d) includes carol.
    let json: Value =
        serde_json::from_str(&report(location, &["--by", "tool", "--format", "json"])).unwrap();
    let tools: Vec<(String, i64)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tool"].as_str().unwrap().to_string(),
                r["calls"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tools,
        [
            ("search".into(), 5),
            ("delete_issue".into(), 1),
            ("get_issue".into(), 1)
        ]
    );

    // CSV: header row, RFC 4180 quoting, CRLF.
    let csv = report(
        location,
        &["--by", "tenant", "--since", "1d", "--format", "csv"],
    );
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "tenant,calls,errors,error_rate_pct,denied,avg_latency_ms,p95_latency_ms,\
         max_latency_ms,request_bytes,response_bytes,estimated_tokens"
    );
    assert!(
        lines[1].starts_with("\"Acme, Inc.\",4,1,25.00,0,15.25,30.00,30.00,400,12040,3010"),
        "{csv}"
    );
    assert!(lines[2].starts_with("globex,"), "{csv}");
    assert_eq!(lines[3], "", "every line ends in CRLF");

    // Table: one line per group, sorted by calls, and a totals line.
    let table = report(location, &["--by", "group", "--since", "1d"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("GROUP") && lines[0].contains("EST TOKENS"),
        "{table}"
    );
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(cols(lines[1])[..3], ["eng", "6", "1"], "{table}");
    assert_eq!(cols(lines[2])[..3], ["ops", "4", "1"], "{table}");
    assert_eq!(cols(lines[3])[..2], ["TOTAL", "10"], "{table}");
    assert!(
        table.contains("a call counts once under each group"),
        "{table}"
    );
}

#[tokio::test]
async fn usage_report_in_table_csv_and_json_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    write_journal(data.path(), &synthetic()).await;
    let dir = data.path().to_str().unwrap();
    check_reports(&["--data-dir", dir]);
    // Reporting again (each run catches the index up first) counts nothing twice.
    check_reports(&["--data-dir", dir]);
}

#[tokio::test]
async fn usage_report_on_postgres() {
    let db = PostgresDb::create("gatehouse_usage");
    let data = tempfile::tempdir().unwrap();
    write_journal(data.path(), &synthetic()).await;
    let dir = data.path().to_str().unwrap();
    check_reports(&["--data-dir", dir, "--database-url", &db.url]);
}

#[test]
fn bad_arguments_are_named() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let (code, _, err) = gatehouse(&["usage", "report", "--data-dir", dir, "--by", "planet"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("planet") && err.contains("virtual-server"),
        "{err}"
    );
    let (code, _, err) = gatehouse(&["usage", "report", "--data-dir", dir, "--since", "last week"]);
    assert_ne!(code, 0);
    assert!(err.contains("\"last week\" is neither a duration"), "{err}");
    let (code, _, err) = gatehouse(&["usage", "report", "--data-dir", dir, "--limit", "0"]);
    assert_ne!(code, 0);
    assert!(err.contains("--limit must be at least 1"), "{err}");
    let (code, _, err) = gatehouse(&[
        "usage",
        "report",
        "--data-dir",
        dir,
        "--since",
        "1h",
        "--until",
        "2h",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--until must be later than --since"), "{err}");
}

/// A delete tool used for the first time lands as an anomaly event in the journal, written
/// by the indexer thread of `gatehouse up`, and in `gatehouse_anomalies_total`.
#[tokio::test]
async fn the_running_gateway_writes_anomaly_events() {
    let data = tempfile::tempdir().unwrap();
    // Another gateway's chain in the same journal directory, as replicas sharing it write.
    write_journal(
        data.path(),
        &[call(
            "bob",
            "globex",
            &[],
            "delete_issue",
            "delete",
            Outcome::Ok,
            80,
            500,
            1,
        )],
    )
    .await;
    let gw = Gatehouse::start_in(&[], data);
    let metrics = gw.banner_url("metrics:");
    let audit = gw.data_dir.path().join("audit");
    let anomaly = || -> Option<Value> {
        let mut found = None;
        for entry in std::fs::read_dir(&audit).ok()?.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line)
                    && v["type"] == "anomaly"
                {
                    found = Some(v);
                }
            }
        }
        found
    };
    assert!(
        eventually(Duration::from_secs(15), || anomaly().is_some()).await,
        "no anomaly event in the journal"
    );
    let event = anomaly().unwrap();
    assert_eq!(event["principal"]["subject"], "bob");
    assert_eq!(event["detail"]["detector"], "first_delete");
    assert_eq!(event["detail"]["tool"], "delete_issue");
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(
        text.contains("gatehouse_anomalies_total{detector=\"first_delete\"} 1"),
        "{text}"
    );
}
