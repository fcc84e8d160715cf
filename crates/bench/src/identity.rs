//! The identity benchmark (`--identity`).
//!
//! - In process: what validating one bearer token costs `ResourceServer::authenticate`, for a
//!   token never seen before (RS256 signature check, claims, principal) and for a repeated one
//!   (the verified-token cache).
//! - End to end: `tools/call` through the same gateway at an open endpoint, an authenticated
//!   one, and an authenticated one whose member gets an RFC 8693 exchanged token (cached per
//!   user). The rows' p50 difference is what authentication adds per call.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gatehouse_identity::ResourceServer;
use serde_json::json;

use crate::issuer::{self, AUDIENCE};
use crate::{Args, cpu_us, load, pin, start_gateway};

/// Tokens validated in the in-process measurement (each distinct).
const DISTINCT_TOKENS: usize = 2000;

fn config(backend: std::net::SocketAddr, issuer: &str) -> String {
    format!(
        r#"servers:
  - name: echo
    url: http://{backend}/mcp
  - name: echo_exchanged
    url: http://{backend}/mcp
    credentials:
      type: token_exchange
      issuer: {issuer}
      client_id: bench
      client_secret: env:GATEHOUSE_BENCH_SECRET
      audience: http://downstream.bench
virtual_servers:
  - name: open
    path: /mcp
    include: [{{ server: echo }}]
  - name: authenticated
    path: /auth
    include: [{{ server: echo }}]
    auth: {{ issuer: "{issuer}", audience: "{AUDIENCE}" }}
  - name: exchanged
    path: /exchange
    include: [{{ server: echo_exchanged }}]
    auth: {{ issuer: "{issuer}", audience: "{AUDIENCE}" }}
"#
    )
}

/// Mean microseconds per `authenticate` over `tokens`, run one after another.
async fn per_validation(rs: &ResourceServer, tokens: &[String]) -> anyhow::Result<f64> {
    let headers: Vec<String> = tokens.iter().map(|t| format!("Bearer {t}")).collect();
    let start = Instant::now();
    for h in &headers {
        if let Err(f) = rs.authenticate(Some(h), None).await {
            anyhow::bail!("a benchmark token was refused: {}", f.refusal.detail);
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / headers.len() as f64)
}

pub async fn run(bin: &PathBuf, backend: std::net::SocketAddr, args: &Args) -> anyhow::Result<()> {
    let issuer = issuer::start().await?;

    // In process: one validator, its keys loaded first.
    let auth = serde_json::from_value(json!({"issuer": issuer.url, "audience": AUDIENCE}))?;
    let rs = ResourceServer::build("bench", &auth, Vec::new(), gatehouse_identity::idp_client())?;
    rs.warm_up().await;
    let distinct: Vec<String> = (0..DISTINCT_TOKENS)
        .map(|i| issuer.token(&format!("user-{i}"), AUDIENCE))
        .collect();
    let uncached = per_validation(&rs, &distinct).await?;
    let same = vec![distinct[0].clone(); DISTINCT_TOKENS];
    let cached = per_validation(&rs, &same).await?;

    // End to end.
    // SAFETY: set before the gateway child starts; this process reads no environment after.
    unsafe { std::env::set_var("GATEHOUSE_BENCH_SECRET", "bench-secret") };
    let gw = start_gateway(bin, &config(backend, &issuer.url), args.pin.then_some(1))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = gw.child.id();
    if args.pin {
        pin(pid)?;
    }
    let bearer = format!("Bearer {}", issuer.token("alice", AUDIENCE));
    // The open endpoint gets a header of the same size, so both sides move the same bytes and
    // the difference is the cost of authenticating, not of a bigger request.
    let padding = "x".repeat(bearer.len());
    let open = Some(("x-bench-padding", padding.as_str()));
    let auth = Some(("authorization", bearer.as_str()));
    let scenarios = [
        ("open endpoint (same-size header)", "/mcp", open),
        ("authenticated (cached token)", "/auth", auth),
        ("authenticated + token exchange (cached)", "/exchange", auth),
        // Again last: drift over the run (warming, noise) shows as a difference to the first row.
        ("open endpoint (again)", "/mcp", open),
    ];
    for (_, path, header) in &scenarios {
        load::run(
            &format!("{}{path}", gw.base),
            1,
            Duration::from_millis(500),
            *header,
        )
        .await?;
    }

    println!();
    println!("| token validation (in process, sequential) | µs per request |");
    println!("|---|---|");
    println!("| new token (RS256 verify, claims, principal) | {uncached:.1} |");
    println!("| repeated token (verified-token cache) | {cached:.1} |");
    println!();
    println!(
        "| identity scenario | concurrency | calls/s | p50 µs | p99 µs | added p50 µs | gateway CPU µs/call |"
    );
    println!("|---|---|---|---|---|---|---|");
    let measure = Duration::from_secs(args.seconds);
    for &c in &args.concurrency {
        let mut base_p50 = None;
        for (name, path, header) in &scenarios {
            let url = format!("{}{path}", gw.base);
            load::run(&url, c, Duration::from_secs(1), *header).await?;
            let before = cpu_us(pid);
            let o = load::run(&url, c, measure, *header).await?;
            let cpu = cpu_us(pid).saturating_sub(before) as f64 / o.calls() as f64;
            let p50 = o.p(50.0);
            let added = match base_p50 {
                None => {
                    base_p50 = Some(p50);
                    String::new()
                }
                Some(b) => format!("{:+}", p50 as i64 - b as i64),
            };
            println!(
                "| {name} | {c} | {:.0} | {p50} | {} | {added} | {cpu:.0} |",
                o.throughput(),
                o.p(99.0)
            );
        }
    }
    Ok(())
}
