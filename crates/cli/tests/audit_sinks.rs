//! Sinks inside the real `gatehouse up`: a file sink ships every event as it happens, a sink
//! whose receiver is down holds its events and says so in `gatehouse audit sinks`, and
//! catches up when the receiver comes back.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The complete lines of the file sink's output (a last line without newline is being
/// written).
fn shipped(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text[..text.rfind('\n').map_or(0, |i| i + 1)]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn sinks_ship_while_the_gateway_runs_and_a_down_receiver_holds_its_events_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on yet: the syslog receiver is "down".
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = dir.path().join("siem/audit.jsonl");
    let admin = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = format!(
        "{}admin:\n  listen: '{admin}'\naudit:\n  sinks:\n    - {{ name: local, type: file, path: siem/audit.jsonl, flush_interval: 100ms }}\n    - {{ name: soc, type: syslog, url: 'tcp://127.0.0.1:{port}', flush_interval: 100ms, max_backoff: 1s }}\n",
        demo_member_yaml("")
    );
    let cfg = write_config(dir.path(), &yaml);
    let cfg = cfg.to_str().unwrap();
    let gw = Gatehouse::start(&["--config", cfg]);
    let http = client();
    for i in 0..5 {
        let (s, _) = modern(
            &http,
            &gw.url("/mcp"),
            i,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": format!("call {i}")}}),
        )
        .await;
        assert_eq!(s, 200);
    }
    // journal.start and five calls reach the file while the gateway runs.
    assert!(
        eventually(Duration::from_secs(10), || shipped(&out).len() >= 6).await,
        "{:?}",
        shipped(&out)
    );
    let events = shipped(&out);
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "mcp.request")
        .collect();
    assert_eq!(calls.len(), 5);
    assert!(
        calls
            .iter()
            .all(|e| e["id"].as_str().is_some_and(|id| id.contains('-')))
    );

    let data = gw.data_dir.path().to_str().unwrap().to_string();
    let status = || {
        gatehouse(&[
            "audit",
            "sinks",
            "--config",
            cfg,
            "--data-dir",
            &data,
            "--format",
            "json",
        ])
    };
    let sink = |text: &str, name: &str| -> Value {
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["name"] == name)
            .unwrap()
    };
    // The syslog sink has failed at least once and holds everything; the file sink has recorded
    // its delivery (the cursor is committed after the file is written, so the file can be seen
    // complete before the status says so).
    let mut last = String::new();
    let failing = eventually(Duration::from_secs(10), || {
        last = status().1;
        !last.is_empty()
            && sink(&last, "soc")["failing_since"].is_string()
            && sink(&last, "local")["pending"] == 0
    })
    .await;
    assert!(failing, "{last}");
    let soc = sink(&last, "soc");
    assert!(soc["pending"].as_u64().unwrap() >= 6, "{soc}");
    assert!(
        soc["last_error"].as_str().unwrap().contains("refused"),
        "{soc}"
    );
    let local = sink(&last, "local");
    assert!(
        local["delivered"].as_u64().unwrap() >= 6 && local["pending"] == 0,
        "{local}"
    );
    let (code, table, _) = gatehouse(&["audit", "sinks", "--config", cfg, "--data-dir", &data]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("SINK") && table.contains("FAILING since"),
        "{table}"
    );
    let (code, _, err) = gatehouse(&[
        "audit",
        "sinks",
        "--config",
        cfg,
        "--data-dir",
        &data,
        "--max-lag",
        "1h",
    ]);
    assert_eq!(code, 1, "a failing sink fails the probe: {err}");
    assert!(err.contains("soc: failing"), "{err}");

    // Prometheus sees the same: deliveries of one sink, failed attempts of the other.
    let text = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    };
    assert!(value(r#"gatehouse_audit_sink_events_total{sink="local",outcome="delivered"}"#) >= 6.0);
    assert!(value(r#"gatehouse_audit_sink_failures_total{sink="soc"}"#) >= 1.0);
    assert!(value(r#"gatehouse_audit_sink_last_delivery_timestamp_seconds{sink="local"}"#) > 1.7e9);
    if let Some(promtool) = gatehouse_testkit::tools::promtool() {
        let (ok, said) = gatehouse_testkit::tools::check_metrics(&promtool, &text);
        assert!(ok, "promtool: {said}");
    }

    // The receiver comes up: everything held arrives, framed as RFC 6587 octet counting.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the sink reconnects")
        .unwrap();
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.windows(b"call 4".len()).all(|w| w != b"call 4") {
        let mut buf = [0u8; 65536];
        let n =
            tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(&mut conn, &mut buf))
                .await
                .expect("the held events arrive")
                .unwrap();
        assert!(n > 0, "connection closed early");
        received.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    for i in 0..5 {
        assert!(
            text.contains(&format!("call {i}")) || text.contains("mcp.request"),
            "{text}"
        );
    }
    let ok = eventually(Duration::from_secs(10), || {
        let s = sink(&status().1, "soc");
        s["pending"] == 0 && s["failing_since"].is_null()
    })
    .await;
    assert!(ok, "{}", status().1);
}

#[tokio::test]
async fn a_reload_starts_added_sinks_with_a_backfill_and_stops_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sink = |name: &str| {
        format!("    - {{ name: {name}, type: file, path: {name}.jsonl, flush_interval: 100ms }}\n")
    };
    let yaml = |sinks: &str| format!("{}audit:\n  sinks:\n{sinks}", demo_member_yaml(""));
    let cfg = write_config(dir.path(), &yaml(&sink("first")));
    let gw = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let http = client();
    let call = |i: i64| {
        let (http, url) = (http.clone(), gw.url("/mcp"));
        async move {
            let (s, _) = modern(
                &http,
                &url,
                i,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": format!("call {i}")}}),
            )
            .await;
            assert_eq!(s, 200);
        }
    };
    let calls_in = |name: &str, text: &str| {
        shipped(&dir.path().join(format!("{name}.jsonl")))
            .iter()
            .filter(|e| e["arguments"]["text"] == text)
            .count()
    };
    call(1).await;
    assert!(eventually(Duration::from_secs(10), || calls_in("first", "call 1") == 1).await);

    // Swap the sinks: `second` starts with the whole journal, `first` stops.
    std::fs::write(&cfg, yaml(&sink("second"))).unwrap();
    assert!(
        eventually(Duration::from_secs(15), || calls_in("second", "call 1")
            == 1)
        .await,
        "the added sink backfills"
    );
    call(2).await;
    assert!(
        eventually(Duration::from_secs(10), || calls_in("second", "call 2")
            == 1)
        .await
    );
    // `first` was stopped before call 2 was made (the backfill above came after the swap).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        calls_in("first", "call 2"),
        0,
        "the removed sink ships nothing more"
    );
}
