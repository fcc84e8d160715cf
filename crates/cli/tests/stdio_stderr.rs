//! A stdio server that floods its stderr and then writes a 300 MB line without a newline:
//! the real binary keeps its memory, logs bounded lines at a bounded rate, counts what it
//! dropped, and the server still answers MCP calls (stdout is a separate pipe).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const LONG_LINE: u64 = 300_000_000;
const MAX_LINE_BYTES: usize = 2048;
const MAX_LINES_PER_SECOND: usize = 20;

fn metric(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or(0.0)
}

#[tokio::test]
async fn a_flooding_server_with_an_endless_stderr_line_costs_neither_memory_nor_log() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("noisy.sh");
    // 3000 lines at once, then 300 MB with no newline, while the demo server serves stdio.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ seq 1 3000 | sed 's/^/flood line /'; sleep 2; head -c {LONG_LINE} /dev/zero | tr '\\0' x; }} >&2 &\nexec {bin} demo-server\n",
            bin = bin().display()
        ),
    )
    .unwrap();
    let config = format!(
        "gateway:\n  stderr:\n    max_line_bytes: {MAX_LINE_BYTES}\n    max_lines_per_second: {MAX_LINES_PER_SECOND}\nservers:\n  - name: noisy\n    command: /bin/sh\n    args: [{script}]\n    isolation: {{ filesystem: {{ read: [{bin}] }} }}\nvirtual_servers:\n  - name: tools\n    path: /mcp\n    include: [{{ server: noisy }}]\n",
        script = script.display(),
        bin = bin().display()
    );
    let path = write_config(dir.path(), &config);
    let gw = Gatehouse::start(&[
        "--config",
        path.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let metrics_url = gw.banner_url("metrics:");
    let pid = gw.child.id();
    let before = rss_kib(pid);
    let started = Instant::now();

    // The first call starts the process.
    let (s, v) = modern(
        &client(),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "first"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "first");

    // Until the whole long line went through, watch the gateway's memory.
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(120);
    let metrics = loop {
        peak = peak.max(rss_kib(pid));
        let metrics = scrape(&metrics_url).await;
        let cut = metric(
            &metrics,
            "gatehouse_stdio_stderr_dropped_bytes_total{server=\"noisy\",reason=\"line_too_long\"}",
        );
        if cut >= (LONG_LINE - MAX_LINE_BYTES as u64) as f64 {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the long line was not read within 2 minutes ({cut} bytes)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = started.elapsed().as_secs() + 1;
    eprintln!("RSS {before} KiB before, peak {peak} KiB while reading {LONG_LINE} bytes of stderr");
    assert!(
        peak < before + 64 * 1024,
        "the gateway grew from {before} to {peak} KiB"
    );
    assert_eq!(
        metric(
            &metrics,
            "gatehouse_stdio_stderr_dropped_total{server=\"noisy\",reason=\"line_too_long\"}"
        ),
        1.0
    );
    let rate_dropped = metric(
        &metrics,
        "gatehouse_stdio_stderr_dropped_total{server=\"noisy\",reason=\"rate\"}",
    );
    assert!(rate_dropped > 0.0, "{metrics}");

    // stdout is unaffected.
    let (s, v) = modern(
        &client(),
        &gw.url("/mcp"),
        2,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "still here"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "still here");

    // The log: bounded lines at a bounded rate, then a summary of what was dropped.
    assert!(
        eventually(Duration::from_secs(15), || gw
            .logged("stdio server's stderr was not logged whole"))
        .await,
        "a summary of the drops"
    );
    let log = gw.log.lock().unwrap().clone();
    let stderr_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gatehouse::backend::stderr"))
        .collect();
    let flood = stderr_lines
        .iter()
        .filter(|l| l.contains("flood line"))
        .count();
    eprintln!(
        "{flood} flood lines logged, {rate_dropped} dropped; {} stderr lines in the log",
        stderr_lines.len()
    );
    assert!(flood > 0, "{log}");
    assert!(
        flood + (rate_dropped as usize) >= 3000,
        "every flood line is logged or counted: {flood} logged, {rate_dropped} dropped"
    );
    assert!(
        stderr_lines.len() <= MAX_LINES_PER_SECOND * elapsed as usize,
        "{} stderr lines logged in {elapsed}s",
        stderr_lines.len()
    );
    let long: Vec<&&str> = stderr_lines.iter().filter(|l| l.contains("xxxx")).collect();
    assert_eq!(long.len(), 1, "the long line is logged once, cut");
    assert!(long[0].len() < MAX_LINE_BYTES + 512, "{}", long[0].len());
    assert!(log.len() < 512 * 1024, "the log holds {} bytes", log.len());
}
