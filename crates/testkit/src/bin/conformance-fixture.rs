//! `conformance-fixture`: serves the Gatehouse MCP conformance fixture.
//!
//! ```text
//! conformance-fixture --listen 127.0.0.1:0 [--era both|modern|legacy] [--path /mcp]
//! conformance-fixture --stdio [--era …]
//! ```
//!
//! Over HTTP the first stdout line is `listening on http://ADDR/PATH`, so a
//! caller can read the ephemeral port. Logs go to stderr (`RUST_LOG`).

use std::{io::IsTerminal, net::SocketAddr, process::ExitCode};

use clap::Parser;
use gatehouse_testkit::{Era, FixtureError, HttpFixture, HttpOptions, serve_stdio};
use tokio::io::AsyncWriteExt;
use tracing_subscriber::EnvFilter;

/// MCP server implementing every tool, prompt and resource of the official
/// conformance suites (0.1.16 and 0.2.0-alpha.12).
#[derive(Debug, Parser)]
#[command(name = "conformance-fixture", version)]
struct Cli {
    /// Address to serve Streamable HTTP on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", conflicts_with = "stdio")]
    listen: SocketAddr,

    /// Serve one client over stdin/stdout instead of HTTP.
    #[arg(long)]
    stdio: bool,

    /// Protocol era: dual-era, 2026-07-28 only, or 2025 era only.
    #[arg(long, value_enum, default_value_t = Era::Both)]
    era: Era,

    /// HTTP endpoint path.
    #[arg(long, default_value = "/mcp")]
    path: String,

    /// Extra accepted Host header value (repeatable); replaces the default
    /// loopback-only list used for DNS-rebinding protection.
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
}

async fn run(cli: Cli) -> Result<(), FixtureError> {
    if cli.stdio {
        return serve_stdio(cli.era).await;
    }
    let options = HttpOptions {
        era: cli.era,
        path: cli.path,
        allowed_hosts: cli.allowed_hosts,
    };
    let fixture = HttpFixture::start(cli.listen, &options).await?;
    let mut stdout = tokio::io::stdout();
    let line = format!("listening on {}\n", fixture.url);
    stdout
        .write_all(line.as_bytes())
        .await
        .map_err(FixtureError::Serve)?;
    stdout.flush().await.map_err(FixtureError::Serve)?;
    tracing::info!(era = %cli.era, url = %fixture.url, "conformance fixture ready");
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            result.map_err(FixtureError::Serve)?;
            tracing::info!("interrupted, shutting down");
            fixture.shutdown().await
        }
        result = terminate() => {
            result.map_err(FixtureError::Serve)?;
            tracing::info!("terminated, shutting down");
            fixture.shutdown().await
        }
    }
}

#[cfg(unix)]
async fn terminate() -> std::io::Result<()> {
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    signal.recv().await;
    Ok(())
}

#[cfg(not(unix))]
async fn terminate() -> std::io::Result<()> {
    std::future::pending().await
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("conformance-fixture: {error}");
            ExitCode::FAILURE
        }
    }
}
