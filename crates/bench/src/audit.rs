//! The audit and telemetry benchmark (`--audit`).
//!
//! `tools/call` to the echo backend: directly; through a gateway with the audit journal off;
//! and through gateways journaling every call in `process` mode (written before the response,
//! fsync'd every second) and in `fsync` mode (the response waits for the group-committed
//! fsync). All three record metrics (telemetry is always on; OTLP export is not configured).
//! The journal rows' difference to the "off" row is what the audit trail adds per call.

use std::time::Duration;

use crate::{Args, cpu_us, echo_config, load, pin, start_gateway};

fn config(backend: std::net::SocketAddr, audit: &str) -> String {
    format!("{}audit:\n{audit}", echo_config(backend))
}

/// Name, gateway URL and pid (none for the direct row).
type Scenario<'a> = (&'a str, String, Option<u32>);

pub async fn run(
    bin: &std::path::PathBuf,
    backend: std::net::SocketAddr,
    args: &Args,
) -> anyhow::Result<()> {
    let workers = args.pin.then_some(1);
    let off = start_gateway(bin, &config(backend, "  enabled: false\n"), workers)?;
    let process = start_gateway(bin, &config(backend, "  durability: process\n"), workers)?;
    let fsync = start_gateway(bin, &config(backend, "  durability: fsync\n"), workers)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    if args.pin {
        for g in [&off, &process, &fsync] {
            pin(g.child.id())?;
        }
    }
    let url = |g: &crate::Gateway| format!("{}/mcp", g.base);
    let scenarios: [Scenario; 5] = [
        (
            "direct to the backend",
            format!("http://{backend}/mcp"),
            None,
        ),
        (
            "gateway, audit journal off",
            url(&off),
            Some(off.child.id()),
        ),
        (
            "gateway, journal (process durability, the default)",
            url(&process),
            Some(process.child.id()),
        ),
        (
            "gateway, journal (fsync durability)",
            url(&fsync),
            Some(fsync.child.id()),
        ),
        // Again last: drift over the run shows as a difference to the second row.
        (
            "gateway, audit journal off (again)",
            url(&off),
            Some(off.child.id()),
        ),
    ];
    for (_, url, _) in &scenarios {
        load::run(url, 1, Duration::from_millis(500), None).await?;
    }
    println!();
    println!(
        "| audit scenario | concurrency | calls/s | % of direct | p50 µs | p99 µs | added p50 µs | added p99 µs | gateway CPU µs/call |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let measure = Duration::from_secs(args.seconds);
    for &c in &args.concurrency {
        let mut direct_rate = None;
        let mut base: Option<(u64, u64)> = None;
        for (name, url, pid) in &scenarios {
            load::run(url, c, Duration::from_secs(1), None).await?;
            let before = pid.map(cpu_us);
            let o = load::run(url, c, measure, None).await?;
            let cpu = match (pid, before) {
                (Some(p), Some(b)) => format!(
                    "{:.0}",
                    cpu_us(*p).saturating_sub(b) as f64 / o.calls() as f64
                ),
                _ => String::new(),
            };
            let rate = o.throughput();
            let share = match direct_rate {
                None => {
                    direct_rate = Some(rate);
                    String::new()
                }
                Some(d) => format!("{:.0}%", 100.0 * rate / d),
            };
            let (p50, p99) = (o.p(50.0), o.p(99.0));
            let (added50, added99) = match (pid, base) {
                (None, _) => (String::new(), String::new()),
                (Some(_), None) => {
                    base = Some((p50, p99));
                    (String::new(), String::new())
                }
                (Some(_), Some((b50, b99))) => (
                    format!("{:+}", p50 as i64 - b50 as i64),
                    format!("{:+}", p99 as i64 - b99 as i64),
                ),
            };
            println!(
                "| {name} | {c} | {rate:.0} | {share} | {p50} | {p99} | {added50} | {added99} | {cpu} |"
            );
        }
    }
    Ok(())
}
