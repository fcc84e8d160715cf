//! Journal throughput: events per second appended by concurrent writers that each wait for
//! their event (as a request does before its response), in `process` and `fsync` durability,
//! with realistic events (principal, target, ~200 bytes of arguments). Also the cost of one
//! append as seen by a lone writer, and of `verify`.
//!
//! Run: `cargo bench -p gatehouse-audit` (prints a Markdown table).

use std::time::{Duration, Instant};

mod common;

use common::{event, open};
use gatehouse_config::Durability;

/// Events/s with `writers` concurrent tasks for `for_`, and the p50/p99 of one append's wait.
async fn throughput(durability: Durability, writers: usize, for_: Duration) -> (f64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path(), durability);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let j = journal.clone();
        tasks.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            let mut i = w;
            while start.elapsed() < for_ {
                let t = Instant::now();
                j.append(&event(i)).await.unwrap();
                waits.push(t.elapsed().as_micros() as u64);
                i += writers;
            }
            waits
        }));
    }
    let mut waits = Vec::new();
    for t in tasks {
        waits.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    journal.close().await.unwrap();
    waits.sort_unstable();
    let p = |q: f64| waits[((waits.len() as f64 * q) as usize).min(waits.len() - 1)];
    (waits.len() as f64 / elapsed.as_secs_f64(), p(0.5), p(0.99))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let for_ = Duration::from_secs(seconds);
    println!("| durability | concurrent writers | events/s | append wait p50 µs | p99 µs |");
    println!("|---|---|---|---|---|");
    for durability in [Durability::Process, Durability::Fsync] {
        for writers in [1, 16, 256] {
            let (rate, p50, p99) = rt.block_on(throughput(durability, writers, for_));
            let name = match durability {
                Durability::Process => "process",
                Durability::Fsync => "fsync",
            };
            println!("| {name} | {writers} | {rate:.0} | {p50} | {p99} |");
        }
    }
    // verify: how long an auditor waits per million events.
    let dir = tempfile::tempdir().unwrap();
    let n = rt.block_on(async {
        let j = open(dir.path(), Durability::Process);
        let mut pending = Vec::new();
        for i in 0..200_000 {
            pending.push(j.append(&event(i)));
            if pending.len() == 1000 {
                futures_join(&mut pending).await;
            }
        }
        futures_join(&mut pending).await;
        j.close().await.unwrap();
        200_001u64
    });
    let t = Instant::now();
    let report = gatehouse_audit::verify(&dir.path().join("audit"), None).unwrap();
    assert!(report.intact());
    let secs = t.elapsed().as_secs_f64();
    println!();
    println!(
        "verify: {n} events in {secs:.2} s ({:.0} events/s)",
        n as f64 / secs
    );
}

async fn futures_join<F: std::future::Future<Output = Result<(), gatehouse_audit::AuditError>>>(
    pending: &mut Vec<F>,
) {
    for f in pending.drain(..) {
        f.await.unwrap();
    }
}
