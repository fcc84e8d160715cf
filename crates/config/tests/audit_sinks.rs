//! `audit.sinks`, `audit.retention` and `audit.anomalies`: what loads, and each invalid value
//! reported at its line, column and field.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{FILE, errors, one};
use gatehouse_config::{EventFormat, SinkKind, load_str};

fn load(text: &str) -> gatehouse_config::Config {
    let env = |name: &str| (name == "SET").then(|| "1".to_string());
    load_str(text, Path::new(FILE), &env).unwrap()
}

#[test]
fn every_sink_type_loads_with_its_defaults_and_paths_relative_to_the_config() {
    let c = load(
        "audit:
  sinks:
    - { name: local, type: file, path: ship/audit.jsonl, format: ocsf }
    - { name: syslog, type: syslog, url: 'tls://siem.example.com:6514', ca: ca.pem, facility: authpriv }
    - { name: splunk, type: splunk_hec, url: 'https://splunk:8088', token: 'env:HEC_TOKEN', index: mcp }
    - { name: elastic, type: elasticsearch, url: 'https://es:9200', token: 'file:es.key' }
    - name: sentinel
      type: sentinel
      url: https://dce.westeurope-1.ingest.monitor.azure.com
      tenant_id: t
      client_id: c
      client_secret: env:AZ_SECRET
      dcr_id: dcr-0123
    - { name: otel, type: otlp_logs, url: 'http://collector:4318', events: [mcp.request, anomaly], start: now }
  retention: { default: 400d, tool_call: 7y, auth_failure: 30d }
  anomalies: { factor: 4, min_calls: 50 }
",
    );
    let sinks = &c.audit.sinks;
    assert_eq!(sinks.len(), 6);
    assert_eq!(sinks[0].kind, SinkKind::File);
    assert_eq!(sinks[0].format, Some(EventFormat::Ocsf));
    assert!(sinks[0].path.as_ref().unwrap().is_absolute());
    assert!(
        sinks[0]
            .path
            .as_ref()
            .unwrap()
            .ends_with("cfg/ship/audit.jsonl")
    );
    assert!(sinks[1].ca.as_ref().unwrap().ends_with("cfg/ca.pem"));
    assert_eq!(sinks[2].batch_size, 500);
    assert_eq!(sinks[2].flush_interval.get(), Duration::from_secs(1));
    assert_eq!(sinks[2].max_backoff.get(), Duration::from_secs(60));
    let es = sinks[3].token.as_ref().unwrap();
    assert!(
        es.0.starts_with("file:/") && es.0.ends_with("cfg/es.key"),
        "{}",
        es.0
    );
    assert_eq!(sinks[5].events, vec!["mcp.request", "anomaly"]);
    assert_eq!(sinks[5].start, gatehouse_config::SinkStart::Now);
    assert_eq!(
        sinks[0].start,
        gatehouse_config::SinkStart::Beginning,
        "a backfill by default"
    );
    let r = &c.audit.retention;
    assert_eq!(r.default.unwrap().get(), Duration::from_secs(400 * 86_400));
    assert!(r.tool_call.unwrap().get() > Duration::from_secs(7 * 365 * 86_400));
    assert!(r.request.is_none());
    assert_eq!(c.audit.anomalies.factor, 4.0);
    assert_eq!(c.audit.anomalies.min_calls, 50);
    assert_eq!(c.audit.anomalies.failures, 5, "defaults fill the rest");
}

#[test]
fn invalid_sinks_are_reported_where_they_are() {
    let m = one(
        "audit:\n  sinks:\n    - { name: s, type: splunk_hec, url: 'https://h' }\n",
        3,
        18,
        "audit.sinks[0].type",
    );
    assert!(m.contains("needs token"), "{m}");
    let m = one(
        "audit:\n  sinks:\n    - { name: s, type: file }\n",
        3,
        18,
        "audit.sinks[0].type",
    );
    assert!(m.contains("a file sink needs path"), "{m}");
    let m = one(
        "audit:\n  sinks:\n    - { name: s, type: syslog, url: 'https://h:514' }\n",
        3,
        37,
        "audit.sinks[0].url",
    );
    assert!(m.contains("udp://, tcp://, tls://"), "{m}");
    let m = one(
        "audit:\n  sinks:\n    - { name: s, type: splunk_hec, url: 'https://h', token: hunter2 }\n",
        3,
        61,
        "audit.sinks[0].token",
    );
    assert!(m.contains("env:NAME or file:PATH"), "{m}");
    assert!(
        !m.contains("hunter2"),
        "the literal (maybe a secret) is not echoed: {m}"
    );
    let m = one(
        "audit:\n  sinks:\n    - { name: s, type: elasticsearch, url: 'https://h', format: cef }\n",
        3,
        57,
        "audit.sinks[0].format",
    );
    assert!(m.contains("own format"), "{m}");
    let m = one(
        "audit:\n  sinks:\n    - { name: s, type: file, path: p, events: [mcp.requests] }\n",
        3,
        48,
        "audit.sinks[0].events[0]",
    );
    assert!(m.contains("mcp.request"), "{m}");
    let m = one(
        "audit:\n  sinks:\n    - { name: s, type: file, path: p, facility: local9 }\n",
        3,
        49,
        "audit.sinks[0].facility",
    );
    assert!(m.contains("local0"), "{m}");
    let m = one(
        "audit:\n  sinks:\n    - { name: s, type: file, path: p, batch_size: 0 }\n",
        3,
        51,
        "audit.sinks[0].batch_size",
    );
    assert!(m.contains("at least 1"), "{m}");
    let m = one(
        "audit:\n  sinks:\n    - { name: s, type: file, path: p, kind: x }\n",
        3,
        39,
        "audit.sinks[0].kind",
    );
    assert!(m.contains("unknown field"), "{m}");
    // Two sinks with one name would share a cursor.
    let m = one(
        "audit:\n  sinks:\n    - { name: s, type: file, path: p }\n    - { name: s, type: file, path: q }\n",
        4,
        15,
        "audit.sinks[1].name",
    );
    assert!(m.contains("used twice"), "{m}");
    // A Sentinel sink names every missing field.
    let errs = errors("audit:\n  sinks:\n    - { name: s, type: sentinel }\n");
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    for f in ["url", "tenant_id", "client_id", "client_secret", "dcr_id"] {
        assert!(
            text.iter()
                .any(|t| t.ends_with(&format!("a sentinel sink needs {f}"))),
            "{text:#?}"
        );
    }
}

#[test]
fn invalid_retention_and_anomaly_settings_are_reported_where_they_are() {
    let m = one(
        "audit:\n  retention: { default: 10m }\n",
        2,
        25,
        "audit.retention.default",
    );
    assert!(m.contains("at least 1h"), "{m}");
    let m = one(
        "audit:\n  retention: { tool_calls: 7y }\n",
        2,
        16,
        "audit.retention.tool_calls",
    );
    assert!(m.contains("unknown field"), "{m}");
    let m = one(
        "audit:\n  anomalies: { factor: 1 }\n",
        2,
        24,
        "audit.anomalies.factor",
    );
    assert!(m.contains("above 1"), "{m}");
    let m = one(
        "audit:\n  anomalies: { ipv4_prefix: 33 }\n",
        2,
        29,
        "audit.anomalies.ipv4_prefix",
    );
    assert!(m.contains("1 to 32"), "{m}");
}
