//! The instruction-count benchmark (`--instructions`).
//!
//! Wall time and CPU time on a shared 2-vCPU VM move by 20% from run to run; instructions
//! executed do not. The gateway runs under valgrind's callgrind with instrumentation off while
//! it starts and warms up; `callgrind_control` switches it on for exactly
//! `--instruction-calls` sequential `tools/call`s and dumps the count. Every thread of the
//! gateway counts (the journal writer included; its index worker too, when it catches up
//! within the window), so the figure is what a call costs the process, not one function.
//!
//! Two paths: *plain* (the bench's default config: no `auth`, no policies, the journal in
//! `process` mode) and *governed* (JWT validation and the 1,000-policy Cedar corpus).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::issuer::{self, AUDIENCE};
use crate::{Args, echo_config, launch_gateway, load, policy};

/// Calls before counting starts: connections, caches and lazy initialisation settle.
const WARM_UP: u64 = 200;

pub async fn run(bin: &Path, backend: std::net::SocketAddr, args: &Args) -> anyhow::Result<()> {
    for tool in ["valgrind", "callgrind_control"] {
        which(tool).with_context(|| {
            format!(
                "--instructions needs {tool} (Debian package valgrind: apt-get install valgrind)"
            )
        })?;
    }
    let issuer = issuer::start().await?;
    let bearer = format!("Bearer {}", issuer.token("alice", AUDIENCE));
    let corpus = policy::corpus::cedar(policy::POLICIES, policy::CALLERS);
    println!("| path | instructions per tools/call | calls counted |");
    println!("|---|---|---|");
    let plain = count(bin, &echo_config(backend), &[], "/mcp", None, args).await?;
    println!(
        "| plain (no auth, no policies, journal `process`) | {plain:.0} | {} |",
        args.instruction_calls
    );
    let governed = count(
        bin,
        &policy::config(backend, &issuer.url, true),
        &[("corpus.cedar", corpus)],
        "/auth",
        Some(("authorization", bearer.as_str())),
        args,
    )
    .await?;
    println!(
        "| governed (JWT + Cedar {} policies) | {governed:.0} | {} |",
        policy::POLICIES,
        args.instruction_calls
    );
    Ok(())
}

/// Instructions per call through a gateway started with `config` under callgrind.
async fn count(
    bin: &Path,
    config: &str,
    files: &[(&str, String)],
    path: &str,
    header: Option<(&str, &str)>,
    args: &Args,
) -> anyhow::Result<f64> {
    let out = tempfile::tempdir()?;
    let prefix = out.path().join("callgrind.out");
    let mut valgrind = Command::new("valgrind");
    valgrind
        .arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg(format!("--callgrind-out-file={}.%p", prefix.display()))
        .arg(bin);
    // One worker thread, as the pinned timed runs use: fewer threads to schedule under valgrind.
    let gw = launch_gateway(valgrind, bin, config, Some(1), files, "warn")?;
    let url = format!("{}{path}", gw.base);
    let pid = gw.child.id();
    load::run_calls(&url, WARM_UP, header).await?;
    control(pid, "-i", "on")?;
    let made = load::run_calls(&url, args.instruction_calls, header).await?;
    control(pid, "-i", "off")?;
    control(pid, "-d", "counted")?;
    let total = dumped_instructions(out.path(), pid)?;
    if std::env::var_os("GATEHOUSE_BENCH_KEEP").is_some() {
        let kept = out.keep();
        eprintln!("callgrind output kept in {}", kept.display());
    }
    drop(gw);
    Ok(total as f64 / made.calls() as f64)
}

/// `callgrind_control <flag> <value> <pid>`, failing with its output.
fn control(pid: u32, flag: &str, value: &str) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control")
        .arg(flag)
        .arg(value)
        .arg(pid.to_string())
        .output()
        .context("running callgrind_control")?;
    if !out.status.success() {
        bail!(
            "callgrind_control {flag} {value} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The instruction count of the dump `callgrind_control -d` wrote for `pid` (its `totals:`
/// line), waiting briefly for the file.
fn dumped_instructions(dir: &Path, pid: u32) -> anyhow::Result<u64> {
    for _ in 0..100 {
        let dumps: Vec<PathBuf> = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    n.to_string_lossy()
                        .starts_with(&format!("callgrind.out.{pid}."))
                })
            })
            .collect();
        for dump in &dumps {
            let text = std::fs::read_to_string(dump)?;
            // `totals:` is what the dump's cost lines add up to; `summary:` can read 0 when
            // instrumentation started switched off.
            let field = |name: &str| {
                text.lines().find_map(|l| {
                    l.strip_prefix(name)
                        .and_then(|n| n.split_whitespace().next()?.parse::<u64>().ok())
                })
            };
            let total = field("totals: ").or_else(|| field("summary: "));
            if let Some(n) = total {
                return Ok(n);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "callgrind wrote no dump for pid {pid} into {}",
        dir.display()
    )
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}
