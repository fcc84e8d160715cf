//! Spans and metrics reach a real OpenTelemetry collector (rotel) over OTLP/gRPC and
//! OTLP/HTTP, named and attributed after the MCP semantic conventions, with the client's
//! trace as parent and the backend call as a child.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_config::{OtlpConfig, OtlpProtocol, TelemetryConfig};
use gatehouse_telemetry::{
    BackendCall, BackendTransport, Outcome, RequestInfo, Target, Telemetry, TraceContext,
};
use serde_json::{Map, Value};

const TRANSPORT_TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A rotel process receiving OTLP on loopback and printing what it receives (its
/// "debug log", the collector's debug exporter format) to a file; killed on drop.
struct Rotel {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    // Bound and released: a small race with other processes, fine on a test machine.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Rotel {
    fn start(bin: &Path) -> Rotel {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rotel.out");
        let (grpc, http) = (free_port(), free_port());
        let log = std::fs::File::create(&out).unwrap();
        let child = Command::new(bin)
            .arg("start")
            .args(["--otlp-grpc-endpoint", &grpc.to_string()])
            .args(["--otlp-http-endpoint", &http.to_string()])
            .args(["--debug-log", "traces", "--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed"])
            .args(["--exporter", "blackhole"])
            .arg("--pid-file")
            .arg(dir.path().join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.path().join("rotel.log"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rotel");
        let rotel = Rotel {
            child,
            grpc,
            http,
            out,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in [grpc, http] {
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "rotel did not listen on {addr}:\n{}",
                    rotel.output()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        rotel
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until the output contains every one of `needles`.
    async fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.output();
            if needles.iter().all(|n| out.contains(n)) {
                return out;
            }
            if Instant::now() > deadline {
                let missing: Vec<_> = needles.iter().filter(|n| !out.contains(**n)).collect();
                panic!("rotel never showed {missing:?}; it printed:\n{out}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One span of rotel's debug output: its `Name : value` fields and `-> key: Value` lines.
#[derive(Debug)]
struct SeenSpan {
    fields: Vec<(String, String)>,
    attributes: Vec<String>,
}

impl SeenSpan {
    fn field(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("span without {name}: {self:#?}"))
    }

    fn has(&self, attribute: &str) -> bool {
        self.attributes.iter().any(|a| a == attribute)
    }
}

fn spans(out: &str) -> Vec<SeenSpan> {
    let mut spans = Vec::new();
    let mut current: Option<SeenSpan> = None;
    for line in out.lines() {
        if line.starts_with("Span #") {
            spans.extend(current.take());
            current = Some(SeenSpan {
                fields: Vec::new(),
                attributes: Vec::new(),
            });
            continue;
        }
        if line.starts_with("ResourceSpans #") || line.starts_with("ScopeSpans #") {
            spans.extend(current.take());
            continue;
        }
        let Some(span) = &mut current else { continue };
        if let Some(attr) = line.trim_start().strip_prefix("-> ") {
            span.attributes.push(attr.to_string());
        } else if let Some((k, v)) = line.split_once(':') {
            span.fields
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    spans.extend(current);
    spans
}

fn rotel() -> Option<PathBuf> {
    let in_tools = common::rotel_in_tools();
    let mut candidates = vec!["rotel-agent"];
    if let Some(p) = &in_tools {
        candidates.insert(0, p.as_str());
    }
    common::tool(
        "GATEHOUSE_ROTEL",
        &candidates,
        "pip install rotel==0.0.1a15 into .tools/rotel",
    )
}

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
