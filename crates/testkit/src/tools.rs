//! External tools the integration tests run against: the rotel OpenTelemetry collector and
//! Prometheus' promtool. Finding them (the environment variable scripts/test sets, the
//! project's `.tools/`, `PATH`), starting rotel, and reading back what it received.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tool named by env `var`, else the first of `candidates` that exists (a bare name is
/// looked up on `PATH`). `None` means "skip": only allowed while `GATEHOUSE_REQUIRE_TOOLS`
/// is unset, so CI (scripts/test sets it) fails instead of silently skipping.
pub fn tool(var: &str, candidates: &[&str], install_hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| candidates.iter().find_map(|c| locate(c)));
    match found {
        Some(p) if p.is_file() => Some(p),
        other => {
            let what = other.map_or_else(
                || "not found".to_string(),
                |p| format!("{} is missing", p.display()),
            );
            if std::env::var_os("GATEHOUSE_REQUIRE_TOOLS").is_some() {
                panic!("{var}: {what}, and GATEHOUSE_REQUIRE_TOOLS is set ({install_hint})");
            }
            eprintln!(
                "\n*** SKIPPING: {var}: {what}. {install_hint} (scripts/test installs it and sets GATEHOUSE_REQUIRE_TOOLS=1) ***\n"
            );
            None
        }
    }
}

/// The rotel collector that `pip install rotel` put into the project's `.tools/rotel` venv
/// (the wheel ships it as `site-packages/rotel/rotel-agent`).
pub fn rotel_in_tools() -> Option<String> {
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/rotel/lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/rotel/rotel-agent"))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

fn locate(candidate: &str) -> Option<PathBuf> {
    let p = PathBuf::from(candidate);
    if p.components().count() > 1 {
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(candidate))
        .find(|p| p.is_file())
}

/// A rotel process receiving OTLP on loopback and printing what it receives (its
/// "debug log", the collector's debug exporter format) to a file; killed on drop.
pub struct Rotel {
    child: Child,
    /// The OTLP/gRPC receiver.
    pub grpc: SocketAddr,
    /// The OTLP/HTTP receiver.
    pub http: SocketAddr,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> SocketAddr {
    // Bound and released: a small race with other processes, fine on a test machine.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Rotel {
    /// Starts `bin` with both receivers on free loopback ports; waits until they listen.
    pub fn start(bin: &Path) -> Rotel {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rotel.out");
        let (grpc, http) = (free_port(), free_port());
        let log = std::fs::File::create(&out).unwrap();
        let child = Command::new(bin)
            .arg("start")
            .args(["--otlp-grpc-endpoint", &grpc.to_string()])
            .args(["--otlp-http-endpoint", &http.to_string()])
            .args(["--debug-log", "traces", "--debug-log", "metrics"])
            .args(["--debug-log", "logs"])
            .args(["--debug-log-verbosity", "detailed"])
            .args(["--exporter", "blackhole"])
            .arg("--pid-file")
            .arg(dir.path().join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.path().join("rotel.log"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rotel");
        let rotel = Rotel {
            child,
            grpc,
            http,
            out,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in [grpc, http] {
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "rotel did not listen on {addr}:\n{}",
                    rotel.output()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        rotel
    }

    /// Everything rotel printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until the output contains every one of `needles`.
    pub async fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.output();
            if needles.iter().all(|n| out.contains(n)) {
                return out;
            }
            if Instant::now() > deadline {
                let missing: Vec<_> = needles.iter().filter(|n| !out.contains(**n)).collect();
                panic!("rotel never showed {missing:?}; it printed:\n{out}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One span or log record of rotel's debug output: its `Name : value` fields and
/// `-> key: Value` attribute lines.
#[derive(Debug)]
pub struct SeenRecord {
    /// `Name : value` lines.
    pub fields: Vec<(String, String)>,
    /// `-> key: Value` lines.
    pub attributes: Vec<String>,
}

/// A span of rotel's debug output.
pub type SeenSpan = SeenRecord;
/// A log record of rotel's debug output.
pub type SeenLog = SeenRecord;

impl SeenRecord {
    /// The value of field `name` (panics when absent).
    pub fn field(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("record without {name}: {self:#?}"))
    }

    /// Whether an attribute line equals `attribute`.
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes.iter().any(|a| a == attribute)
    }
}

/// The records of rotel's debug output that start with a line starting with `start`; a line
/// starting with one of `boundaries` ends the current record.
fn records(out: &str, start: &str, boundaries: &[&str]) -> Vec<SeenRecord> {
    let mut records = Vec::new();
    let mut current: Option<SeenRecord> = None;
    for line in out.lines() {
        if line.starts_with(start) {
            records.extend(current.take());
            current = Some(SeenRecord {
                fields: Vec::new(),
                attributes: Vec::new(),
            });
            continue;
        }
        if boundaries.iter().any(|b| line.starts_with(b)) {
            records.extend(current.take());
            continue;
        }
        let Some(record) = &mut current else { continue };
        if let Some(attr) = line.trim_start().strip_prefix("-> ") {
            record.attributes.push(attr.to_string());
        } else if let Some((k, v)) = line.split_once(':') {
            record
                .fields
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    records.extend(current);
    records
}

/// The spans in rotel's debug output.
pub fn spans(out: &str) -> Vec<SeenSpan> {
    records(out, "Span #", &["ResourceSpans #", "ScopeSpans #"])
}

/// The rotel binary (`GATEHOUSE_ROTEL`, `.tools/rotel`, `PATH`), or `None` to skip.
pub fn rotel() -> Option<PathBuf> {
    let in_tools = rotel_in_tools();
    let mut candidates = vec!["rotel-agent"];
    if let Some(p) = &in_tools {
        candidates.insert(0, p.as_str());
    }
    tool(
        "GATEHOUSE_ROTEL",
        &candidates,
        "pip install rotel==0.0.1a15 into .tools/rotel",
    )
}

/// promtool (`GATEHOUSE_PROMTOOL`, `PATH`), or `None` to skip.
pub fn promtool() -> Option<std::path::PathBuf> {
    tool(
        "GATEHOUSE_PROMTOOL",
        &["promtool", "/usr/bin/promtool"],
        "apt-get install prometheus",
    )
}

/// Runs `promtool check metrics` on `text`: (success, what it printed).
pub fn check_metrics(promtool: &std::path::Path, text: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim().is_empty(), said)
}

/// `rsyslogd` (Debian packages `rsyslog` and `rsyslog-gnutls`, which scripts/test installs
/// with the system service kept from starting); `GATEHOUSE_RSYSLOGD` overrides.
pub fn rsyslogd() -> Option<PathBuf> {
    tool(
        "GATEHOUSE_RSYSLOGD",
        &["rsyslogd", "/usr/sbin/rsyslogd"],
        "apt-get install rsyslog rsyslog-gnutls",
    )
}

/// The log records in rotel's debug output (`--debug-log logs`), in the order printed.
pub fn logs(out: &str) -> Vec<SeenLog> {
    records(out, "LogRecord #", &["ResourceLog #", "ScopeLogs #"])
}
