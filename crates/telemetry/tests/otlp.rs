//! Spans and metrics reach a real OpenTelemetry collector (rotel) over OTLP/gRPC and
//! OTLP/HTTP, named and attributed after the MCP semantic conventions, with the client's
//! trace as parent and the backend call as a child.

use std::time::Duration;

use gatehouse_config::{OtlpConfig, OtlpProtocol, TelemetryConfig};
use gatehouse_telemetry::{
    BackendCall, BackendTransport, Outcome, RequestInfo, Target, Telemetry, TraceContext,
};
use gatehouse_testkit::tools::{Rotel, rotel, spans};
use serde_json::{Map, Value};

const TRANSPORT_TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

async fn exports_a_request(protocol: OtlpProtocol) {
    let Some(bin) = rotel() else { return };
    let rotel = Rotel::start(&bin);
    let endpoint = match protocol {
        OtlpProtocol::Grpc => format!("http://{}", rotel.grpc),
        OtlpProtocol::Http => format!("http://{}", rotel.http),
    };
    let config = TelemetryConfig {
        otlp: Some(OtlpConfig {
            endpoint,
            protocol,
            headers: [("x-test".to_string(), "1".to_string())].into(),
            traces: true,
            metrics: true,
            export_interval: gatehouse_config::DurationSpec::from_secs(60),
            record_resource_uri: false,
        }),
        service_name: Some("gatehouse-test".into()),
    };
    let telemetry = Telemetry::start(&config, "replica-7").unwrap();
    assert!(telemetry.tracing_enabled());

    // The client's trace, as a tools/call would carry it in params._meta.
    let trace_id = match protocol {
        OtlpProtocol::Grpc => "4bf92f3577b34da6a3ce929d0e0e4736",
        OtlpProtocol::Http => "5bf92f3577b34da6a3ce929d0e0e4737",
    };
    let client_span_id = "00f067aa0ba902b7";
    let mut meta = Map::new();
    meta.insert(
        "traceparent".into(),
        format!("00-{trace_id}-{client_span_id}-01").into(),
    );
    let parent = gatehouse_telemetry::extract(Some(&meta), &http::HeaderMap::new());
    assert!(parent.is_some());

    let mut request = telemetry.request(RequestInfo {
        virtual_server: "default",
        method: "tools/call",
        request_id: Some("7"),
        session_id: Some("sess-1"),
        protocol_version: Some("2025-11-25"),
        client_address: Some("127.0.0.1:50123".parse().unwrap()),
        http_version: Some("1.1"),
        parent,
        // The HTTP request's own (different) context becomes a link.
        transport_context: TraceContext::parse(TRANSPORT_TP, None),
    });
    assert_eq!(request.trace_id().as_deref(), Some(trace_id));
    request.set_target(Target::Tool("echo"));
    request.set_server("files");

    let backend = request.backend(BackendCall {
        server: "files",
        method: "tools/call",
        target: Some(Target::Tool("echo_upstream")),
        transport: BackendTransport::Http {
            address: "127.0.0.1",
            port: 18001,
        },
        request_id: Some("42"),
        protocol_version: Some("2026-07-28"),
    });
    let mut upstream_meta = Map::new();
    backend.inject_meta(&mut upstream_meta);
    let injected = TraceContext::parse(
        upstream_meta["traceparent"].as_str().unwrap(),
        upstream_meta.get("tracestate").and_then(Value::as_str),
    )
    .unwrap();
    assert_eq!(injected.trace_id(), trace_id);
    let request_span_id = request.context().unwrap().span_id();
    assert_ne!(
        injected.span_id(),
        request_span_id,
        "the backend gets its own span"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    backend.end(Outcome::ToolError);
    request.end(Outcome::ToolError);

    telemetry.shutdown().await.unwrap();

    let out = rotel
        .wait_for(&[
            "tools/call echo_upstream",
            "mcp.server.operation.duration",
            "mcp.client.operation.duration",
        ])
        .await;
    let seen = spans(&out);
    let server = seen
        .iter()
        .find(|s| s.field("Name") == "tools/call echo")
        .unwrap_or_else(|| panic!("no server span in\n{out}"));
    let client = seen
        .iter()
        .find(|s| s.field("Name") == "tools/call echo_upstream")
        .unwrap_or_else(|| panic!("no client span in\n{out}"));
    assert_eq!(server.field("Kind"), "SPAN_KIND_SERVER");
    assert_eq!(server.field("Trace ID"), trace_id);
    assert_eq!(server.field("Parent ID"), client_span_id);
    assert_eq!(server.field("ID"), request_span_id);
    assert_eq!(server.field("Status code"), "STATUS_CODE_ERROR");
    for attr in [
        "mcp.method.name: Str(tools/call)",
        "gen_ai.tool.name: Str(echo)",
        "gen_ai.operation.name: Str(execute_tool)",
        "mcp.session.id: Str(sess-1)",
        "mcp.protocol.version: Str(2025-11-25)",
        "jsonrpc.request.id: Str(7)",
        "network.transport: Str(tcp)",
        "network.protocol.name: Str(http)",
        "client.address: Str(127.0.0.1)",
        "error.type: Str(tool_error)",
    ] {
        assert!(server.has(attr), "server span lacks {attr}: {server:#?}");
    }
    assert!(
        !server
            .attributes
            .iter()
            .any(|a| a.starts_with("mcp.resource.uri"))
    );
    // rotel lists the link's fields with the attributes: the transport context is linked.
    assert!(
        server.has("Trace ID: 0af7651916cd43dd8448eb211c80319c")
            && server.has("ID: b7ad6b7169203331"),
        "no link to the transport context: {server:#?}"
    );

    assert_eq!(client.field("Kind"), "SPAN_KIND_CLIENT");
    assert_eq!(client.field("Trace ID"), trace_id);
    assert_eq!(client.field("Parent ID"), request_span_id);
    assert_eq!(client.field("ID"), injected.span_id());
    assert_eq!(client.field("Status code"), "STATUS_CODE_ERROR");
    for attr in [
        "mcp.method.name: Str(tools/call)",
        "gen_ai.tool.name: Str(echo_upstream)",
        "server.address: Str(127.0.0.1)",
        "server.port: Int(18001)",
        "jsonrpc.request.id: Str(42)",
        "error.type: Str(tool_error)",
    ] {
        assert!(client.has(attr), "client span lacks {attr}: {client:#?}");
    }
    assert!(out.contains("service.name: Str(gatehouse-test)"), "{out}");
    assert!(out.contains("service.instance.id: Str(replica-7)"), "{out}");

    // The duration histogram, with its unit and the conventions' buckets.
    let metric_at = out.find("mcp.server.operation.duration").unwrap();
    let metric = &out[metric_at..];
    assert!(metric.contains("Unit: s"), "{metric}");
    assert!(metric.contains("DataType: Histogram"), "{metric}");
    assert!(metric.contains("Count: 1"), "{metric}");
    assert!(
        metric.contains("mcp.method.name: Str(tools/call)"),
        "{metric}"
    );
    assert!(metric.contains("error.type: Str(tool_error)"), "{metric}");
    assert!(metric.contains("ExplicitBounds #13: 300"), "{metric}");

    // The same request counted in Prometheus too.
    let text = telemetry.metrics().render();
    assert!(text.contains(
        "gatehouse_tool_calls_total{virtual_server=\"default\",server=\"files\",tool=\"echo\",outcome=\"error\"} 1"
    ), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_over_grpc() {
    exports_a_request(OtlpProtocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_over_http() {
    exports_a_request(OtlpProtocol::Http).await;
}

/// A reload of `telemetry` (`Telemetry::reconfigure`) turns OTLP export on for requests that
/// start afterwards: a request started before keeps the pipeline it started with (none), the
/// next one reaches the collector; an equal config changes nothing, and turning traces off
/// again stops the spans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_export_on_for_the_requests_that_start_after_it() {
    let Some(bin) = rotel() else { return };
    let rotel = Rotel::start(&bin);
    let telemetry = Telemetry::start(&TelemetryConfig::default(), "replica-9").unwrap();
    assert!(!telemetry.tracing_enabled());
    let mut before = telemetry.request(RequestInfo {
        virtual_server: "default",
        method: "tools/call",
        ..RequestInfo::default()
    });
    before.set_target(Target::Tool("started_before"));

    let on = TelemetryConfig {
        otlp: Some(OtlpConfig {
            endpoint: format!("http://{}", rotel.http),
            protocol: OtlpProtocol::Http,
            headers: Default::default(),
            traces: true,
            metrics: false,
            export_interval: gatehouse_config::DurationSpec::from_secs(60),
            record_resource_uri: false,
        }),
        service_name: Some("gatehouse-reload".into()),
    };
    assert!(telemetry.reconfigure(&on).unwrap(), "a changed config");
    assert!(telemetry.tracing_enabled());
    assert!(
        !telemetry.reconfigure(&on).unwrap(),
        "an equal config keeps the pipeline"
    );
    assert!(
        !before.is_recording(),
        "a running request keeps its pipeline"
    );

    let mut after = telemetry.request(RequestInfo {
        virtual_server: "default",
        method: "tools/call",
        ..RequestInfo::default()
    });
    assert!(after.is_recording());
    after.set_target(Target::Tool("started_after"));
    after.end(Outcome::Ok);
    before.end(Outcome::Ok);

    let mut off = on.clone();
    off.otlp.as_mut().unwrap().traces = false;
    assert!(telemetry.reconfigure(&off).unwrap());
    assert!(
        !telemetry.tracing_enabled(),
        "traces off after the second reload"
    );

    // The replaced pipeline flushes when its last request is gone.
    let out = rotel.wait_for(&["tools/call started_after"]).await;
    assert!(
        !out.contains("started_before"),
        "the request that started before the reload is not exported:\n{out}"
    );
    telemetry.shutdown().await.unwrap();
}
