//! Request and backend spans without an OTLP collector: Prometheus recording, trace ids
//! and context passthrough when tracing is off, and a shutdown that cannot hang.

use std::time::{Duration, Instant};

use gatehouse_config::{OtlpConfig, OtlpProtocol, TelemetryConfig};
use gatehouse_telemetry::{
    BackendCall, BackendTransport, Metrics, Outcome, RequestInfo, Target, Telemetry,
    TelemetryError, TraceContext, request_id,
};
use serde_json::{Map, json};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn info<'a>(method: &'a str, parent: Option<TraceContext>) -> RequestInfo<'a> {
    RequestInfo {
        virtual_server: "default",
        method,
        request_id: Some("1"),
        parent,
        ..RequestInfo::default()
    }
}

fn stdio_call<'a>(tool: &'a str) -> BackendCall<'a> {
    BackendCall {
        server: "files",
        method: "tools/call",
        target: Some(Target::Tool(tool)),
        transport: BackendTransport::Stdio,
        request_id: None,
        protocol_version: None,
    }
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn without_otlp_the_client_trace_passes_through() {
    let telemetry = Telemetry::start(&TelemetryConfig::default(), "test").unwrap();
    assert!(!telemetry.tracing_enabled());
    let parent = TraceContext::parse(TP, Some("vendor=1"));
    let mut request = telemetry.request(info("tools/call", parent));
    assert!(!request.is_recording());
    // The audit journal gets the client's trace id even though nothing is exported.
    assert_eq!(
        request.trace_id().as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    request.set_target(Target::Tool("read_file"));
    request.set_server("files");
    let backend = request.backend(stdio_call("read_file"));
    let mut meta = Map::new();
    backend.inject_meta(&mut meta);
    assert_eq!(meta["traceparent"], TP, "passed through unchanged");
    assert_eq!(meta["tracestate"], "vendor=1");
    let mut headers = http::HeaderMap::new();
    backend.inject_headers(&mut headers);
    assert_eq!(headers["traceparent"], TP);
    backend.end(Outcome::Ok);
    request.end(Outcome::Ok);

    let text = telemetry.metrics().render();
    for line in [
        "gatehouse_requests_total{virtual_server=\"default\",method=\"tools/call\",outcome=\"ok\"} 1",
        "gatehouse_tool_calls_total{virtual_server=\"default\",server=\"files\",tool=\"read_file\",outcome=\"ok\"} 1",
        "mcp_server_operation_duration_seconds_count{virtual_server=\"default\",mcp_method_name=\"tools/call\"} 1",
        "mcp_client_operation_duration_seconds_count{server=\"files\",mcp_method_name=\"tools/call\"} 1",
    ] {
        assert!(has_line(&text, line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("gatehouse_errors_total{"), "{text}");
}

#[test]
fn without_a_client_trace_nothing_is_injected() {
    let telemetry = Telemetry::metrics_only(Metrics::new());
    let request = telemetry.request(info("tools/call", None));
    assert_eq!(request.trace_id(), None);
    let backend = request.backend(stdio_call("x"));
    let mut meta = Map::new();
    meta.insert("progressToken".into(), json!(1));
    backend.inject_meta(&mut meta);
    assert_eq!(meta.len(), 1);
    backend.end(Outcome::Ok);
    request.end(Outcome::Ok);
}

#[test]
fn outcomes_map_to_labels_and_error_types() {
    let telemetry = Telemetry::metrics_only(Metrics::new());
    let end =
        |method: &str, outcome: Outcome<'_>| telemetry.request(info(method, None)).end(outcome);
    end(
        "tools/call",
        Outcome::Error {
            code: -32602,
            message: "Unknown tool",
        },
    );
    end("tools/call", Outcome::Denied { code: -32602 });
    end("tools/list", Outcome::Rejected { status: 400 });
    end("tools/list", Outcome::Unauthenticated);
    end(
        "resources/read",
        Outcome::Failed {
            error_type: "timeout",
        },
    );
    // Dropped without end: the client went away.
    drop(telemetry.request(info("prompts/get", None)));
    let text = telemetry.metrics().render();
    for line in [
        "gatehouse_requests_total{virtual_server=\"default\",method=\"tools/call\",outcome=\"error\"} 1",
        "gatehouse_requests_total{virtual_server=\"default\",method=\"tools/call\",outcome=\"denied\"} 1",
        "gatehouse_requests_total{virtual_server=\"default\",method=\"tools/list\",outcome=\"rejected\"} 1",
        "gatehouse_requests_total{virtual_server=\"default\",method=\"tools/list\",outcome=\"unauthenticated\"} 1",
        "gatehouse_errors_total{virtual_server=\"default\",method=\"tools/call\",error_type=\"-32602\"} 1",
        "gatehouse_errors_total{virtual_server=\"default\",method=\"resources/read\",error_type=\"timeout\"} 1",
        "gatehouse_errors_total{virtual_server=\"default\",method=\"prompts/get\",error_type=\"cancelled\"} 1",
    ] {
        assert!(has_line(&text, line), "missing {line:?} in\n{text}");
    }
    // Refusals are outcomes of their own, not errors.
    assert_eq!(text.matches("gatehouse_errors_total{").count(), 3, "{text}");
    assert_eq!(
        Outcome::ToolError.error_type().as_deref(),
        Some("tool_error")
    );
    assert_eq!(
        Outcome::Unauthenticated.error_type().as_deref(),
        Some("401")
    );
}

#[test]
fn request_ids_as_text() {
    assert_eq!(request_id(&json!(7)).as_deref(), Some("7"));
    assert_eq!(request_id(&json!("req-1")).as_deref(), Some("req-1"));
    assert_eq!(request_id(&json!(null)), None);
}

#[test]
fn otlp_needs_a_runtime() {
    let config = TelemetryConfig {
        otlp: Some(otlp("http://127.0.0.1:9", OtlpProtocol::Grpc)),
        service_name: None,
    };
    let err = Telemetry::start(&config, "x").unwrap_err();
    assert!(matches!(err, TelemetryError::NoRuntime), "{err}");
}

fn otlp(endpoint: &str, protocol: OtlpProtocol) -> OtlpConfig {
    OtlpConfig {
        endpoint: endpoint.into(),
        protocol,
        headers: Default::default(),
        traces: true,
        metrics: true,
        export_interval: gatehouse_config::DurationSpec::from_secs(10),
        record_resource_uri: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_the_collector_is_down() {
    // Port 9 (discard) on loopback: nothing listens there.
    for protocol in [OtlpProtocol::Grpc, OtlpProtocol::Http] {
        let config = TelemetryConfig {
            otlp: Some(otlp("http://127.0.0.1:9", protocol)),
            service_name: None,
        };
        let telemetry = Telemetry::start(&config, "x").unwrap();
        assert!(telemetry.tracing_enabled());
        let request = telemetry.request(info("ping", None));
        assert!(request.is_recording());
        assert_eq!(request.trace_id().map(|t| t.len()), Some(32));
        request.end(Outcome::Ok);
        let started = Instant::now();
        let _ = telemetry.shutdown().await;
        assert!(started.elapsed() < Duration::from_secs(12), "{protocol:?}");
        // A second shutdown is a no-op.
        telemetry.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn dropping_without_shutdown_does_not_block_the_runtime() {
    // A current-thread runtime: a blocking flush on it would deadlock.
    let config = TelemetryConfig {
        otlp: Some(otlp("http://127.0.0.1:9", OtlpProtocol::Http)),
        service_name: None,
    };
    let telemetry = Telemetry::start(&config, "x").unwrap();
    telemetry.request(info("ping", None)).end(Outcome::Ok);
    drop(telemetry);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
