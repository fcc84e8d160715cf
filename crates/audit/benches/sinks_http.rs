//! Sink throughput: events per second a `SinkRunner` ships from a real journal (20,000
//! realistic tool-call events, batches of 500) to each HTTP sink's receiver. The receivers
//! are the tests' vendor doubles in their fast path (they still parse and check every
//! request, but keep only the ids), on loopback in the same process, so the figure is the
//! sink's own cost (journal read, layout, HTTP) plus a lean receiver — an upper bound for
//! a real SIEM, whose ingestion is usually the slower side.
//!
//! Run: `cargo bench -p gatehouse-audit --bench sinks_http` (prints a Markdown table).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use serde_json::{Value, json};
use support::receivers::{self, Expected, fast};
use support::{Fixture, config, drain};

const EVENTS: usize = 20_000;

async fn measure(fx: &Fixture, name: &str, sink: Value, seen: &receivers::Receiver) -> (f64, f64) {
    let mut v = sink;
    v["name"] = json!(name);
    v["batch_size"] = json!(500);
    let mut runner = fx.runner(config(v));
    let start = Instant::now();
    let pass = drain(&mut runner).await;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(pass.delivered as usize, EVENTS + 1);
    let s = seen.snapshot();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert_eq!(s.ids.len(), EVENTS + 1);
    let bytes: usize = s.requests.iter().map(|r| r.1).sum();
    (pass.delivered as f64 / secs, bytes as f64 / secs / 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fx = Fixture::new().await;
    fx.append_with(EVENTS, 120).await;
    let journal_mb: u64 = gatehouse_audit::reader::segment_files(&fx.journal_dir())
        .unwrap()
        .iter()
        .map(|s| s.len)
        .sum::<u64>()
        / 1_000_000;

    let token = "bench-token";
    let mut rows = Vec::new();

    let hec = receivers::splunk(
        fast(Expected {
            authorization: format!("Splunk {token}"),
            ..Expected::default()
        }),
        None,
    )
    .await;
    let r = measure(
        &fx,
        "splunk",
        json!({"type": "splunk_hec", "url": hec.url(), "token": fx.secret_file("t", token)}),
        &hec,
    )
    .await;
    rows.push(("splunk_hec", r));

    let es = receivers::elastic(fast(Expected {
        authorization: format!("ApiKey {token}"),
        ..Expected::default()
    }))
    .await;
    let r = measure(
        &fx,
        "elastic",
        json!({"type": "elasticsearch", "url": es.url(), "token": fx.secret_file("t", token)}),
        &es,
    )
    .await;
    rows.push(("elasticsearch", r));

    let az = receivers::sentinel(fast(Expected {
        client_id: "c".into(),
        client_secret: token.into(),
        expires_in: 3600,
        ..Expected::default()
    }))
    .await;
    let r = measure(&fx, "sentinel", json!({"type": "sentinel", "url": az.url(), "authority": az.url(), "tenant_id": "tenant-1", "client_id": "c", "client_secret": fx.secret_file("t", token), "dcr_id": "dcr-0123456789abcdef"}), &az).await;
    rows.push(("sentinel", r));

    let otlp = receivers::otlp_http().await;
    let r = measure(
        &fx,
        "otlp",
        json!({"type": "otlp_logs", "url": otlp.url()}),
        &otlp,
    )
    .await;
    rows.push(("otlp_logs (http)", r));

    println!("\n{EVENTS} events ({journal_mb} MB of journal), batch 500, loopback receiver\n");
    println!("| sink | events/s | MB/s on the wire |");
    println!("|---|---:|---:|");
    for (name, (eps, mbps)) in rows {
        println!("| {name} | {eps:.0} | {mbps:.1} |");
    }
}
