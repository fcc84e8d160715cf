//! `gatehouse-bench`: closed-loop `tools/call` latency and throughput through the gateway vs
//! directly to a minimal Rust echo backend, in the same run, plus the gateway's memory.
//!
//! Build both binaries in release mode first: `cargo build --release -p gatehouse -p gatehouse-bench`,
//! then run `target/release/gatehouse-bench`. Results print as a Markdown table.

mod audit;
mod compare;
mod echo;
mod identity;
mod instructions;
mod issuer;
mod load;
mod policy;
mod relay;
mod runtimes;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

/// Benchmark the gateway's per-call overhead and memory.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Seconds of measurement per scenario (after a 1 s warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrency levels (closed-loop sessions).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    concurrency: Vec<usize>,
    /// Sessions to open for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// The gatehouse binary (default: next to this one).
    #[arg(long)]
    gatehouse: Option<PathBuf>,
    /// Pin the gateway (with one worker thread) to the last CPU and this process (load
    /// generator and echo backend) to the others, so the two sides do not compete for a core.
    #[arg(long)]
    pin: bool,
    /// Also measure the floor: a minimal HTTP relay (no parsing) run the same way as the gateway.
    #[arg(long)]
    floor: bool,
    /// Also measure identity: JWT validation per request (in process, uncached and cached), and
    /// tool calls through an authenticated endpoint with and without a cached token exchange.
    #[arg(long)]
    identity: bool,
    /// Also measure authorization: tool calls through a gateway deciding each with a Cedar
    /// policy set of 1,000 RBAC policies, open and with JWT authentication (and the decision
    /// log written), against the same gateway without policies and the backend directly.
    #[arg(long)]
    policy: bool,
    /// Also measure the audit trail: tool calls through gateways with the journal off, in
    /// `process` durability and in `fsync` durability.
    #[arg(long)]
    audit: bool,
    /// Count the instructions the gateway executes per `tools/call` (valgrind's callgrind,
    /// which counts the same on every run of a noisy machine): 1,000 calls after a warm-up,
    /// on the plain path and the governed path (JWT and 1,000 Cedar policies). Needs
    /// valgrind (Debian package `valgrind`). Runs instead of the timed scenarios.
    #[arg(long)]
    instructions: bool,
    /// Compare the runtimes of a local server (plain process and the sandbox): cold start to
    /// the first `tools/list`, `tools/call` throughput and latency at concurrency 1 and 16, and
    /// the memory of the server's processes. Runs instead of the timed scenarios.
    #[arg(long)]
    runtimes: bool,
    /// Calls counted by `--instructions`.
    #[arg(long, default_value_t = 1000)]
    instruction_calls: u64,
    /// Internal: serve the minimal relay to this backend address (used by --floor).
    #[arg(long, hide = true)]
    serve_relay: Option<std::net::SocketAddr>,
}

struct Gateway {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status`: `VmRSS:` counts the binary's code pages too (shared
/// with the page cache), `RssAnon:` only the process's own memory.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) the process has used, in microseconds.
fn cpu_us(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1_000_000 / hz
}

/// The base URL a child server announces in its first stdout line (`… listening on URL`); the
/// rest of its output is drained so it never blocks on a full pipe.
fn listening_url(child: &mut Child) -> anyhow::Result<String> {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().context("the server printed nothing")??;
    let base = first
        .split("listening on ")
        .nth(1)
        .context("no listening line")?
        .trim()
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    Ok(base)
}

/// The benchmark's config: the echo backend at `/mcp`.
fn echo_config(backend: std::net::SocketAddr) -> String {
    format!(
        "servers:\n  - name: echo\n    url: http://{backend}/mcp\nvirtual_servers:\n  - name: bench\n    path: /mcp\n    include:\n      - server: echo\n"
    )
}

fn start_gateway(bin: &PathBuf, config: &str, workers: Option<usize>) -> anyhow::Result<Gateway> {
    start_gateway_with(bin, config, workers, &[], "warn")
}

/// Starts the gateway with extra files next to its config (policies) and a log filter; with
/// anything beyond `warn`, its log goes to a file in its folder rather than the terminal.
fn start_gateway_with(
    bin: &PathBuf,
    config: &str,
    workers: Option<usize>,
    files: &[(&str, String)],
    log: &str,
) -> anyhow::Result<Gateway> {
    launch_gateway(Command::new(bin), bin, config, workers, files, log)
}

/// [`start_gateway_with`] for a prepared command: `gatehouse` itself, or a tool that runs it
/// (valgrind for `--instructions`), to which the `up` arguments are appended.
fn launch_gateway(
    mut cmd: Command,
    bin: &std::path::Path,
    config: &str,
    workers: Option<usize>,
    files: &[(&str, String)],
    log: &str,
) -> anyhow::Result<Gateway> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("bench.yaml");
    std::fs::write(&cfg, config)?;
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text)?;
    }
    let stderr = if log == "warn" {
        Stdio::inherit()
    } else {
        Stdio::from(std::fs::File::create(dir.path().join("gatehouse.log"))?)
    };
    cmd.args(["up", "--listen", "127.0.0.1:0", "--log", log]);
    if let Some(w) = workers {
        cmd.arg("--workers").arg(w.to_string());
    }
    let mut child = cmd
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let base = listening_url(&mut child)?;
    Ok(Gateway {
        child,
        base,
        _dir: dir,
    })
}

/// Pins every thread of `gateway` to the last CPU and this process to the others.
fn pin(gateway: u32) -> anyhow::Result<()> {
    // Online CPUs, not this process's affinity (which an earlier pin() narrowed).
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    if cpus < 2 {
        bail!("--pin needs at least 2 CPUs");
    }
    let set = |pid: i32, cpu_range: std::ops::Range<usize>| {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; sched_setaffinity reads it.
        unsafe {
            let mut mask: libc::cpu_set_t = std::mem::zeroed();
            for c in cpu_range {
                libc::CPU_SET(c, &mut mask);
            }
            libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &mask)
        }
    };
    for task in std::fs::read_dir(format!("/proc/{gateway}/task"))? {
        let tid: i32 = task?.file_name().to_string_lossy().parse()?;
        set(tid, cpus - 1..cpus);
    }
    for task in std::fs::read_dir("/proc/self/task")? {
        let tid: i32 = task?.file_name().to_string_lossy().parse()?;
        set(tid, 0..cpus - 1);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(backend) = args.serve_relay {
        // Like the gateway under --pin: one thread.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(relay::serve(backend));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// Starts the minimal relay as a child process of this binary.
fn start_relay(backend: std::net::SocketAddr) -> anyhow::Result<Gateway> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve-relay")
        .arg(backend.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let base = listening_url(&mut child)?;
    Ok(Gateway {
        child,
        base,
        _dir: tempfile::tempdir()?,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let bin = match args.gatehouse.clone() {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("gatehouse"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p gatehouse`",
            bin.display()
        );
    }
    if args.runtimes {
        return runtimes::run(&bin, &args).await;
    }
    let backend = echo::start().await?;
    if args.instructions {
        return instructions::run(&bin, backend, &args).await;
    }
    let direct_url = format!("http://{backend}/mcp");
    // Pinned to one core, the gateway runs one worker thread: two would only take turns.
    // One anonymous caller opens every session of the memory measurement: the per-principal
    // cap (default 100) would otherwise end all but the newest hundred.
    let config = format!(
        "gateway:\n  sessions:\n    max_per_principal: {}\n{}",
        args.sessions.max(1),
        echo_config(backend)
    );
    let gw = start_gateway(&bin, &config, args.pin.then_some(1))?;
    let gw_url = format!("{}/mcp", gw.base);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = gw.child.id();
    if args.pin {
        pin(pid)?;
    }
    // Warm the gateway's backend discovery and route cache.
    load::run(&gw_url, 1, Duration::from_millis(500), None).await?;
    let idle_rss = rss_kib(pid);
    let idle_anon = status_kib(pid, "RssAnon:");
    let floor = if args.floor {
        let r = start_relay(backend)?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if args.pin {
            pin(r.child.id())?;
        }
        Some(r)
    } else {
        None
    };

    println!("| scenario | concurrency | calls/s | p50 µs | p99 µs | gateway CPU µs/call |");
    println!("|---|---|---|---|---|---|");
    let measure = Duration::from_secs(args.seconds);
    for &c in &args.concurrency {
        let _ = load::run(&direct_url, c, Duration::from_secs(1), None).await?;
        let direct = load::run(&direct_url, c, measure, None).await?;
        let _ = load::run(&gw_url, c, Duration::from_secs(1), None).await?;
        let cpu_before = cpu_us(pid);
        let via = load::run(&gw_url, c, measure, None).await?;
        let cpu_per_call = cpu_us(pid).saturating_sub(cpu_before) as f64 / via.calls() as f64;
        let (dt, d50, d99) = (direct.throughput(), direct.p(50.0), direct.p(99.0));
        let (vt, v50, v99) = (via.throughput(), via.p(50.0), via.p(99.0));
        println!("| direct | {c} | {dt:.0} | {d50} | {d99} | |");
        println!("| gateway | {c} | {vt:.0} | {v50} | {v99} | {cpu_per_call:.0} |");
        if let Some(r) = &floor {
            let url = format!("{}/mcp", r.base);
            let _ = load::run(&url, c, Duration::from_secs(1), None).await?;
            let cpu_before = cpu_us(r.child.id());
            let relayed = load::run(&url, c, measure, None).await?;
            let cpu =
                cpu_us(r.child.id()).saturating_sub(cpu_before) as f64 / relayed.calls() as f64;
            println!(
                "| minimal relay (floor) | {c} | {:.0} | {} | {} | {cpu:.0} |",
                relayed.throughput(),
                relayed.p(50.0),
                relayed.p(99.0)
            );
        }
        println!(
            "| **gateway overhead** | {c} | {:.1}% of direct | +{} | +{} | |",
            100.0 * vt / dt,
            v50.saturating_sub(d50),
            v99.saturating_sub(d99),
        );
    }
    let opened = load::open_sessions(&gw_url, args.sessions).await?;
    let sessions_rss = rss_kib(pid);
    let sessions_anon = status_kib(pid, "RssAnon:");
    println!();
    println!("| memory | RSS | of which anonymous (the process's own) |");
    println!("|---|---|---|");
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "| idle (after warm-up) | {:.1} MiB | {:.1} MiB |",
        mib(idle_rss),
        mib(idle_anon)
    );
    println!(
        "| with {opened} open sessions | {:.1} MiB | {:.1} MiB |",
        mib(sessions_rss),
        mib(sessions_anon)
    );
    drop(gw);
    if args.identity {
        identity::run(&bin, backend, &args).await?;
    }
    if args.policy {
        policy::run(&bin, backend, &args).await?;
    }
    if args.audit {
        audit::run(&bin, backend, &args).await?;
    }
    Ok(())
}
