//! What the usage rollups (and the anomaly detectors' observations) cost the index: lines per
//! second of `index::catch_up` over the same journal into a fresh SQLite store, with and
//! without rollups, and the time the detectors then take.
//!
//! Run: `cargo bench -p gatehouse-audit --bench usage` (prints a Markdown table). The journal
//! holds realistic calls: 200 users in 3 groups each, 40 tools on 8 servers, spread over 24
//! hours; `GATEHOUSE_BENCH_EVENTS` changes how many (default 100,000).

use std::time::{Duration, Instant};

use gatehouse_audit::anomaly::Detectors;
use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::index::{CatchUp, catch_up_with};
use gatehouse_audit::{
    AuditEvent, ClientRecord, EventKind, Journal, JournalOptions, Outcome, PrincipalRecord,
    ResultRecord, TargetRecord,
};
use gatehouse_config::{AnomalyConfig, Durability, OnFailure};
use gatehouse_store::Store;

fn event(i: usize, start_us: u64, span_us: u64, n: usize) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
    let t = start_us + span_us * i as u64 / n as u64;
    e.time = humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + Duration::from_micros(t))
        .to_string();
    let user = i * 7919 % 200;
    e.principal = Some(PrincipalRecord {
        kind: "user".into(),
        subject: format!("00u{user:06}"),
        issuer: "https://idp.example.com/oauth2/default".into(),
        email: Some(format!("user{user}@example.com")),
        tenant: Some(format!("tenant{}", user % 5)),
        groups: vec![
            "mcp-users".into(),
            format!("team{}", user % 10),
            format!("site{}", user % 3),
        ],
        client_id: None,
    });
    e.client = Some(ClientRecord {
        name: Some("claude-code".into()),
        version: Some("2.1.0".into()),
        ip: Some(format!("10.1.{}.{}", user % 7, user)),
        user_agent: Some("node".into()),
    });
    let tool = i * 31 % 40;
    e.virtual_server = Some("engineering".into());
    e.server = Some(format!("server{}", tool % 8));
    e.method = Some("tools/call".into());
    e.target = Some(TargetRecord {
        kind: "tool".into(),
        name: format!("tool_{tool}"),
        operation: Some(if tool == 39 { "delete" } else { "read" }.into()),
    });
    e.arguments = Some(serde_json::json!({"query": "project = OPS AND status = Open", "max": 50}));
    e.request_bytes = Some(180);
    e.result = Some(ResultRecord {
        status: "ok".into(),
        error_code: None,
        error_message: None,
        bytes: 2_000 + (i % 5000) as u64,
        http_status: None,
    });
    e.latency_us = Some(1_000 + (i % 400_000) as u64);
    e
}

fn main() {
    let n: usize = std::env::var("GATEHOUSE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let span = 24 * 3_600_000_000u64;
    rt.block_on(async {
        let journal = Journal::open(JournalOptions {
            dir: audit.clone(),
            durability: Durability::Process,
            on_failure: OnFailure::Refuse,
            segment_bytes: 64 * 1024 * 1024,
            signer: CheckpointSigner::load_or_create(&dir.path().join("k"), true).unwrap(),
            sync_interval: Duration::from_secs(1),
            max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
        })
        .unwrap();
        for i in 0..n {
            journal.append_detached(&event(i, now_us - span, span, n));
        }
        journal.close().await.unwrap();
    });
    // The machine is shared: run the three setups in turn, several rounds, and report the best
    // and the median round of each.
    let setups = [
        ("index only", true, false),
        ("index + usage rollups", false, false),
        ("index + rollups + detector observations", false, true),
    ];
    let rounds: usize = std::env::var("GATEHOUSE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut times = vec![Vec::new(); setups.len()];
    let mut judged = String::from("-");
    for _ in 0..rounds {
        for (k, (_, without_usage, observe)) in setups.iter().enumerate() {
            let db = tempfile::tempdir().unwrap();
            rt.block_on(async {
                let store = Store::open_sqlite_in(db.path()).await.unwrap();
                let mut detectors = Detectors::new(&store, AnomalyConfig::default());
                let mut obs = detectors.observations();
                let started = Instant::now();
                let lines = catch_up_with(
                    &store.audit_index(),
                    &audit,
                    CatchUp {
                        without_usage: *without_usage,
                        observations: observe.then_some(&mut obs),
                    },
                )
                .await
                .unwrap();
                times[k].push(started.elapsed().as_secs_f64());
                assert_eq!(lines as usize, n + 1, "every event and journal.start");
                if *observe {
                    let started = Instant::now();
                    let found = detectors.run(obs, now_us as i64).await.unwrap();
                    judged = format!(
                        "{:.0} ms, {} anomalies",
                        started.elapsed().as_secs_f64() * 1000.0,
                        found.len()
                    );
                }
                store.close().await;
            });
        }
    }
    println!(
        "| catch-up of {n} lines (SQLite, {rounds} rounds) | best | lines/s (best) | median | lines/s (median) |"
    );
    println!("|---|---|---|---|---|");
    for (k, (label, _, _)) in setups.iter().enumerate() {
        let mut t = times[k].clone();
        t.sort_by(f64::total_cmp);
        let (best, median) = (t[0], t[t.len() / 2]);
        println!(
            "| {label} | {best:.2} s | {:.0} | {median:.2} s | {:.0} |",
            (n + 1) as f64 / best,
            (n + 1) as f64 / median
        );
    }
    println!("\nDetectors over the observations of the last round: {judged}.");
}
