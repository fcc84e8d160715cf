//! The authorization benchmark (`--policy`).
//!
//! `tools/call` to the echo backend: directly; through a gateway without policies; and
//! through a gateway whose every call is decided by a Cedar set of 1,000 RBAC policies (the
//! corpus of `cargo bench -p gatehouse-policy`) plus the two that permit the benchmark's
//! callers. Each gateway serves an open endpoint and one with JWT authentication; a third
//! gateway also writes a log line per allowed decision (to a file). The open rows' difference
//! is what authorization adds per call; the JWT + policy row against the direct one is the
//! share of direct throughput the governed path keeps.

#[path = "../../policy/benches/corpus.rs"]
pub(crate) mod corpus;

use std::time::Duration;

use crate::compare::Scenario;
use crate::issuer::{self, AUDIENCE};
use crate::{Args, pin, start_gateway_with};

/// Policies in the corpus.
pub(crate) const POLICIES: usize = 1000;

/// Two virtual servers in front of the echo backend, `/mcp` open and `/auth` with JWT
/// authentication, with the Cedar corpus (`corpus.cedar`) when `policies`.
pub(crate) fn config(backend: std::net::SocketAddr, issuer: &str, policies: bool) -> String {
    let mut c = format!(
        r#"servers:
  - name: echo
    url: http://{backend}/mcp
virtual_servers:
  - name: mcp
    path: /mcp
    include: [{{ server: echo }}]
  - name: auth
    path: /auth
    include: [{{ server: echo }}]
    auth: {{ issuer: "{issuer}", audience: "{AUDIENCE}" }}
"#
    );
    if policies {
        c.push_str("policies:\n  engine: cedar\n  paths: [corpus.cedar]\n");
    }
    c
}

/// The policies that permit the benchmark's callers.
pub(crate) const CALLERS: &str = r#"@id("anonymous-echo")
permit (principal == Gatehouse::User::"anonymous", action == Gatehouse::Action::"call_tool", resource in Gatehouse::Server::"echo");
@id("bench-users-echo")
permit (principal, action == Gatehouse::Action::"call_tool", resource in Gatehouse::Server::"echo")
when { principal.groups.contains("bench-users") };
"#;

pub async fn run(
    bin: &std::path::PathBuf,
    backend: std::net::SocketAddr,
    args: &Args,
) -> anyhow::Result<()> {
    let issuer = issuer::start().await?;
    let workers = args.pin.then_some(1);
    let plain = start_gateway_with(
        bin,
        &config(backend, &issuer.url, false),
        workers,
        &[],
        "warn",
    )?;
    let governed = start_gateway_with(
        bin,
        &config(backend, &issuer.url, true),
        workers,
        &[("corpus.cedar", corpus::cedar(POLICIES, CALLERS))],
        "warn,gatehouse::decision=info",
    )?;
    // The same, with every decision (allowed ones too) written to the log.
    let logged = start_gateway_with(
        bin,
        &config(backend, &issuer.url, true),
        workers,
        &[("corpus.cedar", corpus::cedar(POLICIES, CALLERS))],
        "warn,gatehouse::decision=debug",
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    if args.pin {
        pin(plain.child.id())?;
        pin(governed.child.id())?;
        pin(logged.child.id())?;
    }
    let bearer = format!("Bearer {}", issuer.token("alice", AUDIENCE));
    let padding = "x".repeat(bearer.len());
    let open = Some(("x-bench-padding", padding.as_str()));
    let auth = Some(("authorization", bearer.as_str()));
    let direct = format!("http://{backend}/mcp");
    let scenarios: [Scenario; 7] = [
        ("direct to the backend", direct.clone(), open, None),
        (
            "gateway, no policies, open",
            format!("{}/mcp", plain.base),
            open,
            Some(plain.child.id()),
        ),
        (
            "gateway, Cedar 1,000 policies, open",
            format!("{}/mcp", governed.base),
            open,
            Some(governed.child.id()),
        ),
        (
            "gateway, no policies, JWT",
            format!("{}/auth", plain.base),
            auth,
            Some(plain.child.id()),
        ),
        (
            "gateway, JWT + Cedar 1,000 policies",
            format!("{}/auth", governed.base),
            auth,
            Some(governed.child.id()),
        ),
        (
            "gateway, JWT + Cedar 1,000 policies + a log line per decision",
            format!("{}/auth", logged.base),
            auth,
            Some(logged.child.id()),
        ),
        // Again last: drift over the run shows as a difference to the second row.
        (
            "gateway, no policies, open (again)",
            format!("{}/mcp", plain.base),
            open,
            Some(plain.child.id()),
        ),
    ];
    crate::compare::run("authorization scenario", &scenarios, args).await
}
