//! The `telemetry` and `admin` blocks: defaults, and every invalid value reported with
//! file, line, column and field path.

mod common;

use std::path::Path;
use std::time::Duration;

use common::one;
use gatehouse_config::{OtlpProtocol, load_str};

#[test]
fn full_block_loads_with_defaults() {
    let text = "
telemetry:
  service_name: gatehouse-eu
  otlp:
    endpoint: https://otlp.example.com/otlp
    headers:
      x-api-key: ${KEY}
admin:
  listen: 127.0.0.1:9090
";
    let env = |n: &str| (n == "KEY").then(|| "s3cret".to_string());
    let config = load_str(text, Path::new("t.yaml"), &env).unwrap();
    let telemetry = config.telemetry.as_ref().unwrap();
    assert_eq!(telemetry.service_name(), "gatehouse-eu");
    let otlp = telemetry.otlp.as_ref().unwrap();
    assert_eq!(otlp.endpoint, "https://otlp.example.com/otlp");
    assert_eq!(otlp.protocol, OtlpProtocol::Http);
    assert_eq!(otlp.headers["x-api-key"], "s3cret");
    assert!(otlp.traces && otlp.metrics && !otlp.record_resource_uri);
    assert_eq!(otlp.export_interval.get(), Duration::from_secs(10));
    let admin = config.admin.as_ref().unwrap();
    assert_eq!(admin.listen_addr().unwrap().port(), 9090);

    let text = "
telemetry:
  otlp:
    endpoint: http://127.0.0.1:4317
    protocol: grpc
    traces: false
    export_interval: 500ms
    record_resource_uri: true
";
    let config = load_str(text, Path::new("t.yaml"), &|_| None).unwrap();
    let telemetry = config.telemetry.unwrap();
    assert_eq!(telemetry.service_name(), "gatehouse");
    let otlp = telemetry.otlp.unwrap();
    assert_eq!(otlp.protocol, OtlpProtocol::Grpc);
    assert!(!otlp.traces && otlp.metrics && otlp.record_resource_uri);
    assert_eq!(otlp.export_interval.get(), Duration::from_millis(500));
    assert!(config.admin.is_none());

    // An empty block is valid and exports nothing.
    let config = load_str("telemetry: {}\n", Path::new("t.yaml"), &|_| None).unwrap();
    assert!(config.telemetry.unwrap().otlp.is_none());
}

#[test]
fn endpoint_must_be_an_http_url() {
    let msg = one(
        "telemetry:\n  otlp:\n    endpoint: localhost:4317\n",
        3,
        15,
        "telemetry.otlp.endpoint",
    );
    assert!(msg.contains("expected an http(s) URL"), "{msg}");
    one(
        "telemetry:\n  otlp:\n    endpoint: ftp://collector\n",
        3,
        15,
        "telemetry.otlp.endpoint",
    );
    let msg = one("telemetry:\n  otlp: {}\n", 2, 9, "telemetry.otlp");
    assert!(msg.contains("endpoint"), "{msg}");
}

#[test]
fn admin_listen_must_be_a_socket_address() {
    let msg = one("admin:\n  listen: localhost:9090\n", 2, 11, "admin.listen");
    assert!(msg.contains("127.0.0.1:9090"), "{msg}");
    one("admin:\n  listen: 127.0.0.1\n", 2, 11, "admin.listen");
}

#[test]
fn other_values_are_checked_with_positions() {
    let msg = one(
        "telemetry:\n  otlp:\n    endpoint: http://h:4318\n    protocol: thrift\n",
        4,
        15,
        "telemetry.otlp.protocol",
    );
    assert!(msg.contains("grpc") && msg.contains("http"), "{msg}");
    one(
        "telemetry:\n  otlp:\n    endpoint: http://h:4318\n    headers:\n      \"bad name\": x\n",
        5,
        7,
        "telemetry.otlp.headers[\"bad name\"]",
    );
    one(
        "telemetry:\n  otlp:\n    endpoint: http://h:4318\n    export_interval: 0s\n",
        4,
        22,
        "telemetry.otlp.export_interval",
    );
    one(
        "telemetry:\n  service_name: \"\"\n",
        2,
        17,
        "telemetry.service_name",
    );
    let msg = one(
        "telemetry:\n  otlp:\n    endpoint: http://h:4318\n    trace: true\n",
        4,
        5,
        "telemetry.otlp.trace",
    );
    assert!(msg.contains("did you mean \"traces\""), "{msg}");
}

#[test]
fn schema_describes_the_blocks() {
    let schema = gatehouse_config::json_schema().to_string();
    assert!(schema.contains("OtlpConfig") && schema.contains("AdminConfig"));
}
