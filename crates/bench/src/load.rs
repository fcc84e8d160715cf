//! The closed-loop load generator: N workers, each with its own keep-alive connection, each
//! sending the next `tools/call` as soon as the previous answer arrived.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

/// Latencies of one scenario.
pub struct Outcome {
    latencies_us: Vec<u64>,
    elapsed: Duration,
}

impl Outcome {
    /// Number of calls made.
    pub fn calls(&self) -> usize {
        self.latencies_us.len().max(1)
    }

    /// Calls per second.
    pub fn throughput(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q`th percentile latency in microseconds.
    pub fn p(&self, q: f64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let idx = ((q / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[idx]
    }
}

fn body(i: u64) -> String {
    json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}})
    .to_string()
}

/// Runs `concurrency` closed loops against `url` for `duration`, sending `header` (a name and
/// value, e.g. the access token) with every call if given.
pub async fn run(
    url: &str,
    concurrency: usize,
    duration: Duration,
    header: Option<(&str, &str)>,
) -> anyhow::Result<Outcome> {
    run_until(url, concurrency, duration, u64::MAX, header).await
}

/// Makes exactly `calls` calls, one after the other (for counting instructions per call).
pub async fn run_calls(
    url: &str,
    calls: u64,
    header: Option<(&str, &str)>,
) -> anyhow::Result<Outcome> {
    run_until(url, 1, Duration::from_secs(24 * 3600), calls, header).await
}

/// The closed loops of [`run`], each ending at `duration` or after `calls` calls.
async fn run_until(
    url: &str,
    concurrency: usize,
    duration: Duration,
    calls: u64,
    header: Option<(&str, &str)>,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let deadline = start + duration;
    let header = header.map(|(k, v)| (k.to_string(), v.to_string()));
    let workers = (0..concurrency).map(|_| {
        let url = url.to_string();
        let header = header.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .http1_only()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(1)
                .build()?;
            let mut lat = Vec::with_capacity(100_000);
            let mut i = 0u64;
            while i < calls && Instant::now() < deadline {
                i += 1;
                let t = Instant::now();
                let mut req = http.post(&url);
                if let Some((k, v)) = &header {
                    req = req.header(k, v);
                }
                let resp = req
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", "echo")
                    .body(body(i))
                    .send()
                    .await?;
                let status = resp.status();
                let bytes = resp.bytes().await?;
                if !status.is_success() || !bytes.windows(5).any(|w| w == b"hello") {
                    bail!(
                        "bad answer from {url}: {status} {}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            anyhow::Ok(lat)
        })
    });
    let mut all = Vec::new();
    for w in futures::future::join_all(workers).await {
        all.extend(w??);
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    Ok(Outcome {
        latencies_us: all,
        elapsed,
    })
}

/// Opens `n` handshake-era sessions (initialize + one call each) and keeps them open; fails
/// when the first one did not stay open (a cap ended it), since the memory measured would not
/// be that of `n` sessions.
pub async fn open_sessions(url: &str, n: usize) -> anyhow::Result<usize> {
    let http = reqwest::Client::new();
    let mut opened = 0;
    let mut first: Option<String> = None;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let reqs = chunk.iter().map(|_| {
            let http = http.clone();
            let url = url.to_string();
            async move {
                let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}});
                let r = http.post(&url).header("content-type", "application/json").header("accept", "application/json, text/event-stream").body(init.to_string()).send().await?;
                let sid = r.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
                let Some(sid) = sid else { bail!("no session id") };
                let sid_kept = sid.clone();
                let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}});
                let r = http.post(&url).header("content-type", "application/json").header("accept", "application/json, text/event-stream")
                    .header("mcp-session-id", sid).header("mcp-protocol-version", "2025-06-18").body(call.to_string()).send().await?;
                if !r.status().is_success() { bail!("session call failed: {}", r.status()) }
                anyhow::Ok(sid_kept)
            }
        });
        for r in futures::future::join_all(reqs).await {
            let sid = r?;
            first.get_or_insert(sid);
            opened += 1;
        }
    }
    if let Some(sid) = first {
        let ping = json!({"jsonrpc":"2.0","id":2,"method":"ping"});
        let r = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", sid)
            .header("mcp-protocol-version", "2025-06-18")
            .body(ping.to_string())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "the first of {opened} sessions is gone ({}): a session cap ended it",
                r.status()
            );
        }
    }
    Ok(opened)
}
