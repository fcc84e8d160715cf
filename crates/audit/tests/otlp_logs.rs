//! The OTLP logs sink against the real rotel collector, over OTLP/HTTP (protobuf) and gRPC:
//! each event must show up in rotel's debug output as a log record with its body,
//! attributes, severity, event name and trace id.

mod support;

use gatehouse_config::SinkConfig;
use gatehouse_testkit::tools::{Rotel, SeenLog, logs, rotel};
use serde_json::json;
use support::{Fixture, config, drain};

async fn ships_to_rotel(protocol: &str) {
    let Some(bin) = rotel() else { return };
    let collector = Rotel::start(&bin);
    let fx = Fixture::new().await;
    fx.append(7).await;
    let url = match protocol {
        "grpc" => format!("http://{}", collector.grpc),
        _ => format!("http://{}", collector.http),
    };
    let cfg: SinkConfig = config(json!({
        "name": "otel", "type": "otlp_logs", "url": url, "protocol": protocol, "batch_size": 3,
        "headers": {"x-scope-orgid": "acme"},
    }));
    let pass = drain(&mut fx.runner(cfg)).await;
    assert_eq!(pass.delivered, 8);

    let events = fx.events();
    let needles: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let out = collector.wait_for(&needles).await;
    let seen = logs(&out);
    assert_eq!(seen.len(), events.len(), "one record per event:\n{out}");
    for e in &events {
        let id = format!("gatehouse.event.id: Str({})", e.id);
        let log = seen_with(&seen, &id).unwrap_or_else(|| panic!("no record {id}:\n{out}"));
        assert!(log.has(&format!(
            "gatehouse.event.type: Str({})",
            e.event.kind.as_str()
        )));
        assert!(log.has(&format!(
            "gatehouse.outcome: Str({})",
            e.event.outcome.as_str()
        )));
        let (number, text) = match e.event.outcome.as_str() {
            "ok" => ("SEVERITY_NUMBER_INFO(9)", "INFO"),
            "denied" => ("SEVERITY_NUMBER_WARN(13)", "WARN"),
            _ => ("SEVERITY_NUMBER_ERROR(17)", "ERROR"),
        };
        assert_eq!(log.field("SeverityText"), text, "{log:#?}");
        assert_eq!(log.field("SeverityNumber"), number, "{log:#?}");
        assert_eq!(
            log.field("EventName"),
            format!("gatehouse.audit.{}", e.event.kind.as_str())
        );
        let nanos = humantime::parse_rfc3339(&e.event.time)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert_eq!(log.field("Timestamp"), nanos.to_string());
        assert!(
            log.field("Body").contains(&format!("\"id\":\"{}\"", e.id)),
            "{log:#?}"
        );
        if let Some(t) = &e.event.trace_id {
            assert_eq!(log.field("Trace ID"), t, "{log:#?}");
            assert!(
                log.has("user.id: Str(user-0)")
                    || log.has("user.id: Str(user-1)")
                    || log.has("user.id: Str(user-2)")
            );
            assert!(log.has("mcp.method.name: Str(tools/call)"));
            assert!(log.has("gatehouse.server: Str(github)"));
            assert!(log.has("gatehouse.virtual_server: Str(dev)"));
            assert!(
                log.attributes
                    .iter()
                    .any(|a| a.starts_with("gen_ai.tool.name: Str(tool_"))
            );
            assert!(
                log.attributes
                    .iter()
                    .any(|a| a.starts_with("client.address: Str(10.0.0."))
            );
        }
    }
    assert!(out.contains("service.name: Str(gatehouse)"), "{out}");
}

fn seen_with<'a>(seen: &'a [SeenLog], attribute: &str) -> Option<&'a SeenLog> {
    seen.iter().find(|l| l.has(attribute))
}

#[tokio::test]
async fn events_reach_rotel_over_otlp_http() {
    ships_to_rotel("http").await;
}

#[tokio::test]
async fn events_reach_rotel_over_otlp_grpc() {
    ships_to_rotel("grpc").await;
}

#[tokio::test]
async fn a_collector_that_is_down_holds_the_events_back() {
    // No collector listens on this port: the runner must keep the events (no dead letters)
    // and record why, for `gatehouse audit sinks`.
    let fx = Fixture::new().await;
    fx.append(3).await;
    let addr = gatehouse_testkit::tools::free_port();
    for protocol in ["grpc", "http"] {
        let name = format!("otel-{protocol}");
        let mut runner = fx.runner(config(json!({
            "name": name, "type": "otlp_logs", "url": format!("http://{addr}"),
            "protocol": protocol, "max_backoff": "100ms",
        })));
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move { runner.catch_up(&mut stop).await.unwrap() });
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        stop_tx.send(true).unwrap();
        let pass = task.await.unwrap();
        assert_eq!(pass.delivered + pass.rejected, 0);
        assert!(fx.dead_letters(&name).is_empty());
        let status = fx.status(&name).await;
        let err = status.last_error.unwrap();
        assert!(err.starts_with(&format!("otlp_logs {name}: ")), "{err}");
        assert!(status.failing_since.is_some());
    }
}
