//! Sink throughput: events per second through the SinkRunner (journal read, parse, layout,
//! delivery, cursor update in a SQLite store) for the local sinks: the file sink in each
//! layout (one write + `sync_data` per batch), and syslog over TCP into a local listener
//! that reads and discards (so the figure is Gatehouse's side, not a receiver's).
//!
//! Run: `cargo bench -p gatehouse-audit --bench sinks_local` (prints a Markdown table;
//! `BENCH_EVENTS` sets the journal size, default 100000).

use std::time::Instant;

mod common;

use common::{event, open};
use gatehouse_audit::sinks::SinkRunner;
use gatehouse_config::{Durability, SinkConfig};
use tokio::io::AsyncReadExt;

async fn journal(dir: &std::path::Path, n: usize) {
    let j = open(dir, Durability::Process);
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(j.append(&event(i)));
        if pending.len() == 1000 {
            for r in futures::future::join_all(pending.drain(..)).await {
                r.unwrap();
            }
        }
    }
    for r in futures::future::join_all(pending).await {
        r.unwrap();
    }
    j.close().await.unwrap();
}

/// A TCP listener that reads and discards everything.
async fn discard() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// Events/s of one full catch-up of the journal in `dir` through the sink `config`.
async fn run(dir: &std::path::Path, config: serde_json::Value) -> (u64, f64) {
    let config: SinkConfig = serde_json::from_value(config).unwrap();
    let name = config.name.clone();
    let store = gatehouse_store::Store::open_sqlite_in(&dir.join(format!("data-{name}")))
        .await
        .unwrap();
    let mut runner = SinkRunner::new(config, dir.join("audit"), store.sink_cursors()).unwrap();
    let (_tx, mut rx) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let pass = runner.catch_up(&mut rx).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    (pass.delivered, pass.delivered as f64 / secs)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(journal(dir.path(), n));
    let bytes: u64 = std::fs::read_dir(dir.path().join("audit"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    println!(
        "journal: {} events, {:.0} bytes/event; batch_size 500",
        n + 1,
        bytes as f64 / (n + 1) as f64
    );
    println!();
    println!("| sink | layout | events | events/s |");
    println!("|---|---|---|---|");
    for format in ["jsonl", "ecs", "ocsf", "cef"] {
        let out = dir.path().join(format!("out-{format}.log"));
        let (delivered, rate) = rt.block_on(run(
            dir.path(),
            serde_json::json!({"name": format!("file-{format}"), "type": "file", "path": out, "format": format}),
        ));
        println!("| file (sync_data per batch) | {format} | {delivered} | {rate:.0} |");
    }
    for format in ["jsonl", "ecs"] {
        let (delivered, rate) = rt.block_on(async {
            let addr = discard().await;
            run(
                dir.path(),
                serde_json::json!({"name": format!("syslog-{format}"), "type": "syslog", "url": format!("tcp://{addr}"), "format": format}),
            )
            .await
        });
        println!("| syslog TCP (RFC 5424, octet counting) | {format} | {delivered} | {rate:.0} |");
    }
}
