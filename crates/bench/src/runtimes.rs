//! `--runtimes`: what running a local server in the sandbox costs against a plain process.
//! The server is the built-in demo (`gatehouse demo-server`, stdio); for each runtime a fresh
//! gateway measures the cold start (the first `tools/list`, which starts the server), then
//! `tools/call` throughput and latency, and the memory of the server's processes.
//!
//! `container` is measured when `GATEHOUSE_BENCH_IMAGE` names an image holding this binary as
//! `/usr/local/bin/gatehouse` (`scripts/containers image gatehouse PATH` builds one) and an
//! engine answers (`GATEHOUSE_CONTAINER_HOST`, or the detected socket).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::{Args, load, rss_kib, start_gateway};

/// Gateways started per runtime for the cold start (the median is printed).
const COLD_STARTS: usize = 5;

fn config(bin: &Path, runtime: &str) -> anyhow::Result<String> {
    if runtime == "container" {
        let image = std::env::var("GATEHOUSE_BENCH_IMAGE")?;
        return Ok(format!(
            "servers:\n  - name: demo\n    command: /usr/local/bin/gatehouse\n    args: [demo-server]\n    isolation: {{ runtime: container, image: {image} }}\nvirtual_servers:\n  - name: bench\n    path: /mcp\n    include:\n      - server: demo\n"
        ));
    }
    let exe = serde_json::to_string(&bin.display().to_string())?;
    Ok(format!(
        "servers:\n  - name: demo\n    command: {exe}\n    args: [demo-server]\n    isolation: {{ runtime: {runtime} }}\nvirtual_servers:\n  - name: bench\n    path: /mcp\n    include:\n      - server: demo\n"
    ))
}

/// One `tools/list` in the 2026-07-28 era; its time in microseconds.
async fn tools_list(http: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    let start = Instant::now();
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .body(body.to_string())
        .send()
        .await?;
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() || !text.contains("\"echo\"") {
        anyhow::bail!("tools/list failed ({status}): {text}");
    }
    Ok(start.elapsed().as_micros() as u64)
}

/// Resident memory of the server the gateway `gateway` started in a container, in KiB: the
/// container's processes (the engine's, not the gateway's children), found with `podman`.
fn container_rss(gateway: u32) -> u64 {
    let out = std::process::Command::new("podman")
        .args([
            "ps",
            "--filter",
            "label=io.gatehouse.managed=true",
            "--format",
            "{{.Labels}} {{.ID}}",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let Some(id) = out
        .lines()
        .find(|l| l.contains(&format!(":{gateway}:")))
        .and_then(|l| l.split_whitespace().last())
    else {
        return 0;
    };
    let pid = std::process::Command::new("podman")
        .args(["inspect", "--format", "{{.State.Pid}}", id])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        });
    pid.map_or(0, |p| rss_kib(p) + descendants_rss(p))
}

/// Resident memory of every process below `pid` (the server's processes), in KiB.
fn descendants_rss(pid: u32) -> u64 {
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                total += rss_kib(c);
                todo.push(c);
            }
        }
    }
    total
}

pub async fn run(bin: &Path, args: &Args) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().http1_only().build()?;
    println!(
        "| runtime | cold start to first tools/list (median of {COLD_STARTS}) | c=1 calls/s | c=1 p50 µs | c=16 calls/s | c=16 p50 µs | server processes' RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut runtimes = vec!["process", "sandbox"];
    if std::env::var_os("GATEHOUSE_BENCH_IMAGE").is_some() {
        runtimes.push("container");
    } else {
        eprintln!("container: not measured (set GATEHOUSE_BENCH_IMAGE, see --runtimes' docs)");
    }
    for runtime in runtimes {
        let cfg = config(bin, runtime)?;
        let mut cold = Vec::new();
        for _ in 0..COLD_STARTS {
            let gw = start_gateway(&bin.to_path_buf(), &cfg, None)?;
            cold.push(
                tools_list(&http, &format!("{}/mcp", gw.base))
                    .await
                    .with_context(|| format!("runtime {runtime}"))?,
            );
        }
        cold.sort_unstable();
        let gw = start_gateway(&bin.to_path_buf(), &cfg, None)?;
        let url = format!("{}/mcp", gw.base);
        tools_list(&http, &url).await?;
        let measure = Duration::from_secs(args.seconds);
        let mut row = Vec::new();
        for c in [1usize, 16] {
            let _ = load::run(&url, c, Duration::from_secs(1), None).await?;
            let o = load::run(&url, c, measure, None).await?;
            row.push(format!("{:.0} | {}", o.throughput(), o.p(50.0)));
        }
        let rss = if runtime == "container" {
            container_rss(gw.child.id())
        } else {
            descendants_rss(gw.child.id())
        };
        println!(
            "| {runtime} | {:.1} ms | {} | {} | {:.1} MiB |",
            cold[COLD_STARTS / 2] as f64 / 1000.0,
            row[0],
            row[1],
            rss as f64 / 1024.0
        );
    }
    Ok(())
}
