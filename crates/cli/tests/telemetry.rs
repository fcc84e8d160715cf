//! Telemetry of the real binary: Prometheus metrics on the admin listener (validated by
//! `promtool check metrics`), and OpenTelemetry spans exported to a real collector (rotel)
//! with the client's trace as parent and a child span per backend call.

mod common;

use std::time::Duration;

use common::*;
use gatehouse_testkit::tools::{Rotel, check_metrics, promtool, rotel, spans};
use serde_json::{Value, json};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_demo_serves_prometheus_metrics_that_promtool_accepts() {
    let Some(promtool) = promtool() else { return };
    let gw = Gatehouse::start(&[]);
    let metrics_url = gw.banner_url("metrics:");
    assert!(
        metrics_url.starts_with("http://127.0.0.1:"),
        "{metrics_url}"
    );
    let http = client();
    let (s, _) = modern(
        &http,
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = modern(
        &http,
        &gw.url("/mcp"),
        2,
        "tools/call",
        json!({"name": "nope", "arguments": {}}),
    )
    .await;
    assert!(v["error"].is_object());
    let _session = Legacy::connect(&gw.url("/mcp")).await;
    // Active sessions are counted every second.
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let resp = http.get(&metrics_url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    let (ok, said) = check_metrics(&promtool, &text);
    assert!(ok, "promtool rejected the exposition: {said}\n{text}");
    let value =
        |prefix: &str| metric(&text, prefix).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
    assert_eq!(
        value(
            r#"gatehouse_requests_total{virtual_server="demo",method="tools/call",outcome="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"gatehouse_requests_total{virtual_server="demo",method="tools/call",outcome="error"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"gatehouse_tool_calls_total{virtual_server="demo",server="demo",tool="echo",outcome="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"gatehouse_errors_total{virtual_server="demo",method="tools/call",error_type="-32602"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"mcp_server_operation_duration_seconds_count{virtual_server="demo",mcp_method_name="tools/call"}"#
        ),
        2.0
    );
    assert!(
        value(
            r#"mcp_client_operation_duration_seconds_count{server="demo",mcp_method_name="tools/call"}"#
        ) >= 1.0
    );
    assert_eq!(value(r#"gatehouse_backend_up{server="demo"}"#), 1.0);
    assert_eq!(
        value(r#"gatehouse_active_sessions{virtual_server="demo"}"#),
        1.0
    );
    assert!(value(r#"gatehouse_audit_events_total{outcome="ok"}"#) >= 2.0);
    assert_eq!(value("gatehouse_audit_queue_depth"), 0.0);
    assert!(!text.contains("anonymous"), "no per-user labels");
}

#[tokio::test]
async fn spans_reach_a_real_collector_as_children_of_the_clients_trace() {
    let Some(bin) = rotel() else { return };
    let rotel = Rotel::start(&bin);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}telemetry:\n  service_name: gatehouse-e2e\n  otlp:\n    endpoint: http://{}\n    protocol: http\n    export_interval: 1s\n",
        demo_member_yaml(""),
        rotel.http
    );
    let path = write_config(dir.path(), &yaml);
    let mut gw = Gatehouse::start(&["--config", path.to_str().unwrap()]);
    assert!(gw.banner_url("tracing:").starts_with("OTLP"));
    let body = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"traced"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},
                 "traceparent": format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")}}});
    let (s, _, v) = post(
        &client(),
        &gw.url("/mcp"),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
        &body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // SIGTERM flushes the exporters.
    assert!(
        gw.terminate(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );

    let out = rotel
        .wait_for(&[
            "Name           : tools/call echo",
            "mcp.server.operation.duration",
        ])
        .await;
    let seen = spans(&out);
    let server = seen
        .iter()
        .find(|s| s.field("Name") == "tools/call echo" && s.field("Kind") == "SPAN_KIND_SERVER")
        .unwrap_or_else(|| panic!("no server span in\n{out}"));
    let backend = seen
        .iter()
        .find(|s| s.field("Kind") == "SPAN_KIND_CLIENT")
        .unwrap_or_else(|| panic!("no backend span in\n{out}"));
    assert_eq!(server.field("Trace ID"), TRACE_ID);
    assert_eq!(server.field("Parent ID"), CLIENT_SPAN);
    assert_eq!(backend.field("Trace ID"), TRACE_ID);
    assert_eq!(backend.field("Parent ID"), server.field("ID"));
    assert_eq!(backend.field("Name"), "tools/call echo");
    for attr in [
        "mcp.method.name: Str(tools/call)",
        "gen_ai.tool.name: Str(echo)",
        "mcp.protocol.version: Str(2026-07-28)",
        "jsonrpc.request.id: Str(5)",
        "gatehouse.server: Str(demo)",
    ] {
        assert!(server.has(attr), "server span lacks {attr}: {server:#?}");
    }
    assert!(backend.has("network.transport: Str(pipe)"), "{backend:#?}");
    assert!(out.contains("gatehouse-e2e"), "service.name");

    // The audit event carries the same trace id.
    let audit = gw.data_dir.path().join("audit");
    let journal: String = std::fs::read_dir(&audit)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    let call: Value = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["method"] == "tools/call")
        .unwrap();
    assert_eq!(call["trace_id"], TRACE_ID);
}
