//! The audit and telemetry benchmark (`--audit`).
//!
//! `tools/call` to the echo backend: directly; through a gateway with the audit journal off;
//! and through gateways journaling every call in `process` mode (written before the response,
//! fsync'd every second) and in `fsync` mode (the response waits for the group-committed
//! fsync). All three record metrics (telemetry is always on; OTLP export is not configured).
//! The journal rows' difference to the "off" row is what the audit trail adds per call.

use std::time::Duration;

use crate::compare::Scenario;
use crate::{Args, echo_config, pin, start_gateway};

fn config(backend: std::net::SocketAddr, audit: &str) -> String {
    format!("{}audit:\n{audit}", echo_config(backend))
}

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
            None,
        ),
        (
            "gateway, audit journal off",
            url(&off),
            None,
            Some(off.child.id()),
        ),
        (
            "gateway, journal (process durability, the default)",
            url(&process),
            None,
            Some(process.child.id()),
        ),
        (
            "gateway, journal (fsync durability)",
            url(&fsync),
            None,
            Some(fsync.child.id()),
        ),
        // Again last: drift over the run shows as a difference to the second row.
        (
            "gateway, audit journal off (again)",
            url(&off),
            None,
            Some(off.child.id()),
        ),
    ];
    crate::compare::run("audit scenario", &scenarios, args).await
}
