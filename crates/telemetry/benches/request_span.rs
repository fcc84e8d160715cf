//! Cost of one request's telemetry when no OTLP is configured (the common case): a
//! `RequestSpan` started, given a target and server, one backend call, ended. Prints
//! nanoseconds per request; run with `cargo bench -p gatehouse-telemetry`.

use std::hint::black_box;
use std::time::Instant;

use gatehouse_telemetry::{
    BackendCall, BackendTransport, Metrics, Outcome, RequestInfo, Target, Telemetry, TraceContext,
};

fn per_op(label: &str, n: u32, mut f: impl FnMut()) {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = start.elapsed().as_nanos() / u128::from(n);
    println!("{label:<52} {ns:>6} ns");
}

fn main() {
    let telemetry = Telemetry::metrics_only(Metrics::new());
    let parent = TraceContext::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        None,
    );
    let n = 200_000;
    per_op("Metrics::request (counter + histogram)", n, || {
        telemetry.metrics().request(
            "default",
            "tools/call",
            gatehouse_telemetry::RequestOutcome::Ok,
            std::time::Duration::from_micros(300),
        );
    });
    per_op("RequestSpan start + end", n, || {
        let span = telemetry.request(RequestInfo {
            virtual_server: "default",
            method: "tools/list",
            ..RequestInfo::default()
        });
        span.end(Outcome::Ok);
    });
    per_op(
        "tools/call: span, target, backend span, trace id",
        n,
        || {
            let mut span = telemetry.request(RequestInfo {
                virtual_server: "default",
                method: "tools/call",
                request_id: Some("1"),
                parent: parent.clone(),
                ..RequestInfo::default()
            });
            span.set_target(Target::Tool("read_file"));
            span.set_server("files");
            black_box(span.trace_id());
            let backend = span.backend(BackendCall {
                server: "files",
                method: "tools/call",
                target: Some(Target::Tool("read_file")),
                transport: BackendTransport::Stdio,
                request_id: None,
                protocol_version: None,
            });
            let mut meta = serde_json::Map::new();
            backend.inject_meta(&mut meta);
            black_box(&meta);
            backend.end(Outcome::Ok);
            span.end(Outcome::Ok);
        },
    );
}
