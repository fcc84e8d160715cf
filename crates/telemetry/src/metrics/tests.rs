use std::time::Duration;

use super::*;

fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn known_methods_are_sorted_and_unknown_ones_fold() {
    assert!(KNOWN_METHODS.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(method_label("tools/call"), "tools/call");
    assert_eq!(method_label("server/discover"), "server/discover");
    assert_eq!(method_label("x-vendor/anything"), OTHER_METHOD);
    assert_eq!(method_label(""), OTHER_METHOD);
}

#[test]
fn histogram_buckets_are_inclusive_and_cumulative() {
    let h = Histogram::default();
    h.observe(Duration::from_micros(500)); // exactly the first bound
    h.observe(Duration::from_micros(501));
    h.observe(Duration::from_millis(10));
    h.observe(Duration::from_secs(301)); // only +Inf
    h.observe(Duration::ZERO);
    let s = h.snapshot();
    assert_eq!(s.cumulative[0], 2, "0 and 0.5 ms are <= 0.0005");
    assert_eq!(s.cumulative[1], 3, "0.501 ms is <= 0.001");
    let i10ms = DURATION_BUCKETS.iter().position(|&b| b == 0.01).unwrap();
    assert_eq!(s.cumulative[i10ms], 4);
    assert_eq!(s.cumulative[17], 4, "<= 300 s");
    assert_eq!(s.cumulative[18], 5);
    assert_eq!(s.count(), 5);
    assert_eq!(
        s.sum_nanos,
        500_000 + 501_000 + 10_000_000 + 301_000_000_000
    );
    assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn buckets_include_the_semconv_ones() {
    for b in [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ] {
        assert!(DURATION_BUCKETS.contains(&b), "{b}");
    }
    assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn overflow_caps_series_and_is_counted() {
    let m = Metrics::with_series_limit(3);
    for i in 0..10 {
        m.tool_call("vs", "srv", &format!("tool{i}"), RequestOutcome::Ok);
    }
    // A series that existed before the cap keeps counting on its own.
    m.tool_call("vs", "srv", "tool0", RequestOutcome::Ok);
    assert_eq!(m.tool_calls.len(), 3);
    assert_eq!(m.tool_calls.overflowed(), 7);
    let text = m.render();
    let calls = lines_starting(&text, "gatehouse_tool_calls_total{");
    assert_eq!(calls.len(), 4, "{text}");
    assert!(calls.contains(
        &"gatehouse_tool_calls_total{virtual_server=\"vs\",server=\"srv\",tool=\"tool0\",outcome=\"ok\"} 2"
    ));
    assert!(calls.contains(
        &"gatehouse_tool_calls_total{virtual_server=\"_overflow\",server=\"_overflow\",tool=\"_overflow\",outcome=\"_overflow\"} 7"
    ));
    assert!(
        text.contains(
            "gatehouse_metric_series_overflow_total{metric=\"gatehouse_tool_calls_total\"} 7\n"
        ),
        "{text}"
    );
}

#[test]
fn unknown_methods_do_not_create_series() {
    let m = Metrics::new();
    for i in 0..100 {
        m.request(
            "vs",
            &format!("evil/{i}"),
            RequestOutcome::Error,
            Duration::from_millis(1),
        );
    }
    assert_eq!(m.requests.len(), 1);
    assert!(m.render().contains(
        "gatehouse_requests_total{virtual_server=\"vs\",method=\"_OTHER\",outcome=\"error\"} 100\n"
    ));
}

#[test]
fn render_escapes_label_values() {
    let m = Metrics::new();
    m.tool_call("v\"s", "a\\b", "line\nbreak", RequestOutcome::Denied);
    let text = m.render();
    assert!(
        text.contains(
            r#"gatehouse_tool_calls_total{virtual_server="v\"s",server="a\\b",tool="line\nbreak",outcome="denied"} 1"#
        ),
        "{text}"
    );
}

#[test]
fn histogram_renders_cumulative_buckets_sum_and_count() {
    let m = Metrics::new();
    m.request(
        "vs",
        "tools/call",
        RequestOutcome::Ok,
        Duration::from_millis(3),
    );
    m.request(
        "vs",
        "tools/call",
        RequestOutcome::Ok,
        Duration::from_millis(1500),
    );
    let text = m.render();
    let prefix = "mcp_server_operation_duration_seconds_bucket{virtual_server=\"vs\",mcp_method_name=\"tools/call\",le=";
    let buckets = lines_starting(&text, prefix);
    assert_eq!(buckets.len(), 19);
    assert_eq!(buckets[0], format!("{prefix}\"0.0005\"}} 0"));
    assert_eq!(buckets[3], format!("{prefix}\"0.005\"}} 1"));
    assert_eq!(buckets[10], format!("{prefix}\"1\"}} 1"));
    assert_eq!(buckets[11], format!("{prefix}\"2\"}} 2"));
    assert_eq!(buckets[18], format!("{prefix}\"+Inf\"}} 2"));
    assert!(text.contains("mcp_server_operation_duration_seconds_sum{virtual_server=\"vs\",mcp_method_name=\"tools/call\"} 1.503\n"));
    assert!(text.contains("mcp_server_operation_duration_seconds_count{virtual_server=\"vs\",mcp_method_name=\"tools/call\"} 2\n"));
}

#[test]
fn gauges_callbacks_and_build_info() {
    let m = Metrics::new();
    m.session_opened("a");
    m.session_opened("a");
    m.session_closed("a");
    m.session_ended("cap_principal");
    m.session_ended("cap_principal");
    m.set_backend_up("files", true);
    m.set_backend_up("jira", false);
    m.policy_decision(false);
    m.audit_event("written");
    m.audit_write_error();
    m.set_audit_queue_depth(|| 42);
    m.anomaly("volume");
    m.anomaly("volume");
    m.anomaly("first_delete");
    m.sink_delivered("splunk", 500, 0, 1_764_000_000);
    m.sink_delivered("splunk", 20, 1, 1_764_000_060);
    m.sink_failed("soc");
    m.audit_field_truncated("method");
    m.audit_field_truncated("method");
    m.set_log_fields_truncated(|| 7);
    m.stderr_dropped("files", "rate", 40, 1200);
    m.stderr_dropped("files", "line_too_long", 1, 300_000_000);
    let text = m.render();
    for line in [
        "gatehouse_active_sessions{virtual_server=\"a\"} 1",
        "gatehouse_sessions_ended_total{reason=\"cap_principal\"} 2",
        "gatehouse_sessions_ended_total{reason=\"idle\"} 0",
        "gatehouse_backend_up{server=\"files\"} 1",
        "gatehouse_backend_up{server=\"jira\"} 0",
        "gatehouse_policy_decisions_total{decision=\"allow\"} 0",
        "gatehouse_policy_decisions_total{decision=\"deny\"} 1",
        "gatehouse_audit_queue_depth 42",
        "gatehouse_audit_events_total{outcome=\"written\"} 1",
        "gatehouse_audit_write_errors_total 1",
        "gatehouse_anomalies_total{detector=\"volume\"} 2",
        "gatehouse_anomalies_total{detector=\"first_delete\"} 1",
        "gatehouse_audit_sink_events_total{sink=\"splunk\",outcome=\"delivered\"} 520",
        "gatehouse_audit_sink_events_total{sink=\"splunk\",outcome=\"rejected\"} 1",
        "gatehouse_audit_sink_failures_total{sink=\"soc\"} 1",
        "gatehouse_audit_fields_truncated_total{field=\"method\"} 2",
        "gatehouse_log_fields_truncated_total 7",
        "gatehouse_stdio_stderr_dropped_total{server=\"files\",reason=\"rate\"} 40",
        "gatehouse_stdio_stderr_dropped_total{server=\"files\",reason=\"line_too_long\"} 1",
        "gatehouse_stdio_stderr_dropped_bytes_total{server=\"files\",reason=\"line_too_long\"} 300000000",
        "gatehouse_audit_sink_last_delivery_timestamp_seconds{sink=\"splunk\"} 1764000060",
        &format!(
            "gatehouse_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Every metric has exactly one HELP and one TYPE line, HELP first.
    let types = lines_starting(&text, "# TYPE ");
    let helps = lines_starting(&text, "# HELP ");
    assert_eq!(types.len(), helps.len());
    assert_eq!(types.len(), 29);
}

#[test]
fn handles_share_the_series() {
    let m = Metrics::new();
    let h = m.requests_family().with(["vs", "ping", "ok"]);
    h.inc();
    m.request("vs", "ping", RequestOutcome::Ok, Duration::ZERO);
    assert_eq!(h.get(), 2);
}

#[test]
fn concurrent_recording_loses_nothing() {
    let m = Metrics::new();
    std::thread::scope(|s| {
        for t in 0..4 {
            let m = &m;
            s.spawn(move || {
                for i in 0..10_000 {
                    let tool = format!("t{}", i % 50);
                    m.tool_call("vs", "srv", &tool, RequestOutcome::Ok);
                    m.backend_call(&format!("s{t}"), "tools/call", Duration::from_micros(i));
                }
            });
        }
    });
    let total: u64 = m.tool_calls.collect().iter().map(|(_, c)| c.get()).sum();
    assert_eq!(total, 40_000);
    assert_eq!(m.tool_calls.len(), 50);
    let count: u64 = m
        .client_duration
        .collect()
        .iter()
        .map(|(_, h)| h.snapshot().count())
        .sum();
    assert_eq!(count, 40_000);
}
