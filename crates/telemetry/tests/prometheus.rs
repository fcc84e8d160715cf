//! The Prometheus exposition, served over a real socket, passes `promtool check metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gatehouse_telemetry::{Metrics, RequestOutcome, admin_router};
use gatehouse_testkit::tools::{check_metrics, promtool};

fn realistic() -> std::sync::Arc<Metrics> {
    let m = Metrics::with_series_limit(40);
    let ms = Duration::from_millis;
    for (i, method) in [
        "initialize",
        "tools/list",
        "tools/call",
        "prompts/get",
        "ping",
    ]
    .iter()
    .enumerate()
    {
        for n in 0..20u64 {
            m.request(
                "default",
                method,
                RequestOutcome::Ok,
                ms(n * (i as u64 + 1)),
            );
        }
    }
    m.request("default", "tools/call", RequestOutcome::Denied, ms(1));
    m.request("team \"a\"", "tools/call", RequestOutcome::Error, ms(2_000));
    m.request("default", "vendor/x", RequestOutcome::Rejected, ms(0));
    m.request(
        "default",
        "tools/call",
        RequestOutcome::Unauthenticated,
        Duration::ZERO,
    );
    m.error("team \"a\"", "tools/call", "-32603");
    m.error("default", "tools/call", "tool_error");
    m.tool_call("default", "files", "read_file", RequestOutcome::Ok);
    m.tool_call(
        "default",
        "jira",
        "create\\issue\nnow",
        RequestOutcome::Error,
    );
    // More distinct tools than the limit: the overflow series and its counter appear.
    for i in 0..50 {
        m.tool_call("default", "files", &format!("t{i}"), RequestOutcome::Ok);
    }
    m.backend_call("files", "tools/call", Duration::from_micros(700));
    m.backend_call("jira", "tools/call", Duration::from_secs(400));
    m.set_backend_up("files", true);
    m.set_backend_up("jira", false);
    m.session_opened("default");
    m.policy_decision(true);
    m.policy_decision(false);
    m.audit_event("written");
    m.audit_event("dropped");
    m.anomaly("first_delete");
    m.sink_delivered("splunk", 500, 2, 1_764_000_000);
    m.sink_failed("soc \"tls\"");
    m.audit_write_error();
    m.set_audit_queue_depth(|| 3);
    m
}

/// GET `path` with HTTP/1.1 over a plain socket: (head, body).
fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_served_over_http_passes_promtool() {
    let Some(promtool) = promtool() else { return };
    let metrics = realistic();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, admin_router(metrics)).await.unwrap();
    });
    let (head, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    server.abort();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    // The body may be chunked; promtool needs the plain text.
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    for expected in [
        "gatehouse_tool_calls_total{virtual_server=\"default\",server=\"jira\",tool=\"create\\\\issue\\nnow\",outcome=\"error\"} 1",
        "gatehouse_requests_total{virtual_server=\"team \\\"a\\\"\",method=\"tools/call\",outcome=\"error\"} 1",
        "gatehouse_requests_total{virtual_server=\"default\",method=\"_OTHER\",outcome=\"rejected\"} 1",
        "mcp_client_operation_duration_seconds_bucket{server=\"jira\",mcp_method_name=\"tools/call\",le=\"+Inf\"} 1",
        "mcp_client_operation_duration_seconds_bucket{server=\"jira\",mcp_method_name=\"tools/call\",le=\"300\"} 0",
        "mcp_client_operation_duration_seconds_sum{server=\"jira\",mcp_method_name=\"tools/call\"} 400",
        "gatehouse_metric_series_overflow_total{metric=\"gatehouse_tool_calls_total\"} 12",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "missing {expected:?} in\n{text}"
        );
    }
    let (ok, said) = check_metrics(&promtool, &text);
    assert!(
        ok,
        "promtool check metrics rejected the exposition:\n{said}\n---\n{text}"
    );
}

#[test]
fn promtool_does_reject_a_broken_exposition() {
    // Guards the test above against a promtool that accepts anything.
    let Some(promtool) = promtool() else { return };
    let (ok, said) = check_metrics(
        &promtool,
        "# TYPE requests counter\nrequests{a=\"unterminated} 1\n",
    );
    assert!(!ok, "promtool accepted a broken exposition: {said}");
    let (ok, _) = check_metrics(
        &promtool,
        "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n",
    );
    assert!(ok);
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// Every query of the Grafana dashboard in `deploy/` is valid PromQL (`promtool check rules`)
/// and names only metrics Gatehouse exports, so the dashboard cannot silently rot.
#[test]
fn the_grafana_dashboard_queries_are_valid_and_use_exported_metrics() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/grafana/gatehouse.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let exported = realistic().render();
    for expr in &exprs {
        // Label names live in selectors and `by (…)`: only what is outside names metrics.
        let mut outside = String::new();
        let mut depth = 0;
        for (i, c) in expr.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                '(' if expr[..i].trim_end().ends_with("by") => depth += 1,
                ')' if depth > 0 => depth -= 1,
                _ if depth == 0 => outside.push(c),
                _ => {}
            }
        }
        for word in outside.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("gatehouse_") || word.starts_with("mcp_") {
                assert!(
                    exported.contains(&format!("\n{word}{{"))
                        || exported.contains(&format!("\n{word} ")),
                    "the dashboard queries {word}, which Gatehouse does not export"
                );
            }
        }
    }
    let Some(promtool) = promtool() else { return };
    // Grafana's variables, as Grafana would substitute them.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let promql = expr
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$virtual_server", ".*")
            .replace("$server", ".*");
        rules.push_str(&format!(
            "      - record: gatehouse:dashboard:{i}\n        expr: {}\n",
            serde_json::to_string(&promql).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool rejected a dashboard query:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
