//! A stdio server's stderr on its way into the gateway's log, bounded: it is read in chunks
//! (a line is never held whole), at most `gateway.stderr.max_line_bytes` of each line and at
//! most `gateway.stderr.max_lines_per_second` lines per process are logged, and what is left
//! out is counted (`gatehouse_stdio_stderr_dropped_total` and `…_bytes_total`) and summed up
//! in a log line at most every [`SUMMARY_EVERY`]. A server that writes one endless line or a
//! flood of lines costs the gateway a fixed buffer, not memory or log volume in proportion.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gatehouse_config::StderrLimits;
use gatehouse_telemetry::Metrics;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How often, at most, a summary of what was dropped is logged.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Bytes read from the pipe at a time.
const CHUNK: usize = 64 * 1024;

/// Where lines go: the target operators filter on.
const TARGET: &str = "gatehouse::backend::stderr";

/// The bounds (`gateway.stderr`) and the counters every stdio server's stderr reader uses.
/// A reload changes the bounds of running processes too.
#[derive(Debug)]
pub struct StderrPolicy {
    max_line_bytes: AtomicU32,
    max_lines_per_second: AtomicU32,
    metrics: Arc<Metrics>,
}

impl StderrPolicy {
    /// A policy with `limits`, counting drops in `metrics`.
    pub fn new(limits: &StderrLimits, metrics: Arc<Metrics>) -> Arc<StderrPolicy> {
        let p = StderrPolicy {
            max_line_bytes: AtomicU32::new(0),
            max_lines_per_second: AtomicU32::new(0),
            metrics,
        };
        p.configure(limits);
        Arc::new(p)
    }

    /// Applies reloaded limits (from the next line on).
    pub fn configure(&self, limits: &StderrLimits) {
        self.max_line_bytes
            .store(limits.max_line_bytes.max(1), Ordering::Relaxed);
        self.max_lines_per_second
            .store(limits.max_lines_per_second.max(1), Ordering::Relaxed);
    }

    fn max_line_bytes(&self) -> usize {
        self.max_line_bytes.load(Ordering::Relaxed) as usize
    }

    fn max_lines_per_second(&self) -> u32 {
        self.max_lines_per_second.load(Ordering::Relaxed)
    }
}

/// What became of the line being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Nothing logged yet.
    Open,
    /// Logged; the rest of it is cut.
    Logged,
    /// Dropped by the rate limit; the rest of it too.
    Dropped,
}

/// Drops since the last summary.
#[derive(Debug, Default)]
struct Drops {
    cut_lines: u64,
    cut_bytes: u64,
    rate_lines: u64,
    rate_bytes: u64,
}

/// One process's stderr reader.
struct Reader<'a> {
    server: &'a str,
    policy: &'a StderrPolicy,
    line: Vec<u8>,
    fate: Fate,
    window: Instant,
    in_window: u32,
    drops: Drops,
}

/// Logs `stderr` of `server`'s process within `policy`'s bounds until it closes.
pub async fn forward(
    mut stderr: impl AsyncRead + Unpin,
    server: String,
    policy: Arc<StderrPolicy>,
) {
    let mut r = Reader {
        server: &server,
        policy: &policy,
        line: Vec::new(),
        fate: Fate::Open,
        window: Instant::now(),
        in_window: 0,
        drops: Drops::default(),
    };
    let mut chunk = vec![0u8; CHUNK];
    let mut summary =
        tokio::time::interval_at(tokio::time::Instant::now() + SUMMARY_EVERY, SUMMARY_EVERY);
    loop {
        tokio::select! {
            read = stderr.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => r.take(&chunk[..n]),
            },
            _ = summary.tick() => r.summarize(),
        }
    }
    // A last line without its newline.
    if r.fate == Fate::Open && !r.line.is_empty() {
        r.emit(false);
    }
    r.summarize();
}

impl Reader<'_> {
    /// Takes in bytes read from the pipe.
    fn take(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (content, ends) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], Some(i + 1)),
                None => (bytes, None),
            };
            self.append(content);
            match ends {
                Some(next) => {
                    if self.fate == Fate::Open {
                        self.emit(false);
                    }
                    self.line.clear();
                    self.fate = Fate::Open;
                    bytes = &bytes[next..];
                }
                None => bytes = &[],
            }
        }
    }

    /// Adds part of the current line: kept up to the bound, the rest counted as dropped.
    fn append(&mut self, content: &[u8]) {
        let max = self.policy.max_line_bytes();
        let room = max.saturating_sub(self.line.len());
        let rest = match self.fate {
            Fate::Open => {
                let kept = content.len().min(room);
                self.line.extend_from_slice(&content[..kept]);
                let rest = &content[kept..];
                if !rest.is_empty() {
                    // The line is over the bound: log its start now rather than after the
                    // newline, which may never come.
                    self.emit(true);
                }
                rest
            }
            Fate::Logged | Fate::Dropped => content,
        };
        if rest.is_empty() {
            return;
        }
        let bytes = rest.len() as u64;
        let reason = if self.fate == Fate::Dropped {
            self.drops.rate_bytes += bytes;
            "rate"
        } else {
            self.drops.cut_bytes += bytes;
            "line_too_long"
        };
        self.policy
            .metrics
            .stderr_dropped(self.server, reason, 0, bytes);
    }

    /// Logs the current line (or drops it past the rate); `cut` when it goes on past the bound.
    fn emit(&mut self, cut: bool) {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.in_window = 0;
        }
        let metrics = &self.policy.metrics;
        if self.in_window >= self.policy.max_lines_per_second() {
            self.fate = Fate::Dropped;
            self.drops.rate_lines += 1;
            self.drops.rate_bytes += self.line.len() as u64;
            metrics.stderr_dropped(self.server, "rate", 1, self.line.len() as u64);
            return;
        }
        self.in_window += 1;
        self.fate = Fate::Logged;
        let text = String::from_utf8_lossy(&self.line);
        // Invalid UTF-8 grows when replaced; the bound is on what is logged.
        let text = gatehouse_audit::bound::prefix(&text, self.policy.max_line_bytes())
            .trim_end_matches('\r');
        if cut {
            self.drops.cut_lines += 1;
            metrics.stderr_dropped(self.server, "line_too_long", 1, 0);
            tracing::info!(target: TARGET, server = %self.server, cut = true, "{text}…");
        } else {
            tracing::info!(target: TARGET, server = %self.server, "{text}");
        }
    }

    /// Logs what was dropped since the last summary, if anything.
    fn summarize(&mut self) {
        let d = std::mem::take(&mut self.drops);
        if d.cut_lines + d.cut_bytes + d.rate_lines + d.rate_bytes == 0 {
            return;
        }
        tracing::warn!(
            server = %self.server,
            lines_cut = d.cut_lines,
            bytes_cut = d.cut_bytes,
            lines_dropped = d.rate_lines,
            bytes_dropped = d.rate_bytes,
            max_line_bytes = self.policy.max_line_bytes(),
            max_lines_per_second = self.policy.max_lines_per_second(),
            "stdio server's stderr was not logged whole (gateway.stderr)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_line_bytes: u32, max_lines_per_second: u32) -> Arc<StderrPolicy> {
        StderrPolicy::new(
            &StderrLimits {
                max_line_bytes,
                max_lines_per_second,
            },
            Metrics::new(),
        )
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_floods_dropped_and_both_counted() {
        let p = policy(16, 3);
        let mut input = Vec::new();
        input.extend_from_slice(&[b'x'; 100]);
        input.extend_from_slice(b"\nshort\n");
        for i in 0..10 {
            input.extend_from_slice(format!("flood {i}\n").as_bytes());
        }
        forward(input.as_slice(), "files".into(), p.clone()).await;
        let text = p.metrics.render();
        for line in [
            "gatehouse_stdio_stderr_dropped_total{server=\"files\",reason=\"line_too_long\"} 1",
            "gatehouse_stdio_stderr_dropped_bytes_total{server=\"files\",reason=\"line_too_long\"} 84",
            // 12 lines within one second, 3 logged: the long one, `short` and `flood 0`.
            "gatehouse_stdio_stderr_dropped_total{server=\"files\",reason=\"rate\"} 9",
            "gatehouse_stdio_stderr_dropped_bytes_total{server=\"files\",reason=\"rate\"} 63",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
