//! Helpers for end-to-end tests: run the real `gatehouse` binary and talk MCP to it over HTTP.
#![allow(dead_code)]

pub mod containers;
pub mod hostile;
pub mod idp;
pub mod outbound;
pub mod postgres;
pub mod raw;
pub mod recorder;
pub mod tokens;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

// Re-exported for the tests that use PostgreSQL; other test binaries include this module too.
#[allow(unused_imports)]
pub use postgres::{PostgresDb, psql, psql_in};

/// A running `gatehouse up`, killed when dropped.
pub struct Gatehouse {
    pub child: Child,
    /// Everything the gateway logged so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
    /// Everything the gateway printed on stdout (the banner).
    pub banner: std::sync::Arc<std::sync::Mutex<String>>,
    pub base: String,
    pub data_dir: tempfile::TempDir,
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gatehouse"))
}

/// Runs `gatehouse ARGS` to the end: its exit code, stdout and stderr.
pub fn gatehouse(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Gatehouse {
    /// Starts `gatehouse up` on an ephemeral port with extra args (e.g. `--config`).
    pub fn start(args: &[&str]) -> Gatehouse {
        let data_dir = tempfile::tempdir().unwrap();
        Self::start_in(args, data_dir)
    }

    /// Starts with a given data dir (to test restarts).
    pub fn start_in(args: &[&str], data_dir: tempfile::TempDir) -> Gatehouse {
        Self::start_full(args, &[], data_dir)
    }

    /// Starts with extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Gatehouse {
        Self::start_full(args, env, tempfile::tempdir().unwrap())
    }

    pub fn start_full(
        args: &[&str],
        env: &[(&str, &str)],
        data_dir: tempfile::TempDir,
    ) -> Gatehouse {
        Self::start_configured(args, env, data_dir, |_| {})
    }

    /// Starts with the command adjusted by `configure` first (e.g. to lower a resource limit).
    pub fn start_configured(
        args: &[&str],
        env: &[(&str, &str)],
        data_dir: tempfile::TempDir,
        configure: impl FnOnce(&mut Command),
    ) -> Gatehouse {
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut command = Command::new(bin());
        command
            .arg("up")
            .args(listen)
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(args)
            .env("GATEHOUSE_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().expect("gatehouse starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("banner").expect("banner line");
        let base = first
            .split("listening on ")
            .nth(1)
            .expect("listening line")
            .trim()
            .to_string();
        let banner = std::sync::Arc::new(std::sync::Mutex::new(first.clone() + "\n"));
        let printed = banner.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut b = printed.lock().unwrap();
                b.push_str(&line);
                b.push('\n');
            }
        });
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Gatehouse {
            child,
            log,
            banner,
            base,
            data_dir,
        }
    }

    /// True once the gateway's log contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().contains(needle)
    }

    /// How many times the gateway's log contains `needle` so far.
    pub fn logged_times(&self, needle: &str) -> usize {
        self.log.lock().unwrap().matches(needle).count()
    }

    /// The URL the banner prints after `label` (e.g. `metrics:`), once it is printed.
    pub fn banner_url(&self, label: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(url) = self.banner.lock().unwrap().lines().find_map(|l| {
                l.trim_start()
                    .strip_prefix(label)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
            }) {
                return url;
            }
            assert!(Instant::now() < deadline, "the banner has no {label} line");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The gateway listener's socket address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base
            .split("://")
            .nth(1)
            .and_then(|a| a.parse().ok())
            .expect("the banner's address")
    }

    /// The Prometheus exposition of the admin listener (started with `--admin-listen`).
    pub async fn metrics(&self) -> String {
        reqwest::get(self.banner_url("metrics:"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        unsafe_kill(self.child.id() as i32, 15);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

pub fn unsafe_kill(pid: i32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A handshake-era session.
pub struct Legacy {
    pub url: String,
    pub session: String,
    pub http: reqwest::Client,
}

pub async fn post(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body.to_string()).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let is_sse = headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    let value = if is_sse {
        // The last data line carries the response.
        let last = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap_or("null")
            .to_string();
        serde_json::from_str(&last).unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (status, headers, value)
}

impl Legacy {
    pub async fn connect(url: &str) -> Legacy {
        Self::connect_with(client(), url).await
    }

    /// Connects with a given HTTP client (e.g. one that sends a bearer token).
    pub async fn connect_with(http: reqwest::Client, url: &str) -> Legacy {
        let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}});
        let (status, headers, body) = post(&http, url, &[], &init).await;
        assert_eq!(status, 200, "initialize: {body}");
        let session = headers
            .get("mcp-session-id")
            .expect("session id")
            .to_str()
            .unwrap()
            .to_string();
        Legacy {
            url: url.to_string(),
            session,
            http,
        }
    }

    /// Calls the demo's `echo` tool and returns the text it answered (`Null` on an error).
    pub async fn echo(&self, id: i64, text: &str) -> Value {
        let (_, r) = self
            .request(
                id,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": text}}),
            )
            .await;
        r["result"]["content"][0]["text"].clone()
    }

    /// Opens the session's standalone GET stream, where server-initiated notifications arrive.
    pub async fn open_stream(&self) -> reqwest::Response {
        let stream = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-06-18")
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        stream
    }

    /// POSTs a raw message on this session and returns the response unread (to read a stream).
    pub async fn post_raw(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn request(&self, id: i64, method: &str, params: Value) -> (u16, Value) {
        let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        let (s, _, v) = post(
            &self.http,
            &self.url,
            &[
                ("mcp-session-id", &self.session),
                ("mcp-protocol-version", "2025-06-18"),
            ],
            &body,
        )
        .await;
        (s, v)
    }
}

/// A 2026-07-28 stateless request with correct headers.
pub async fn modern(
    http: &reqwest::Client,
    url: &str,
    id: i64,
    method: &str,
    params: Value,
) -> (u16, Value) {
    modern_with(http, url, id, method, params, json!({})).await
}

/// [`modern`] with the client capabilities `caps`.
pub async fn modern_with(
    http: &reqwest::Client,
    url: &str,
    id: i64,
    method: &str,
    mut params: Value,
    caps: Value,
) -> (u16, Value) {
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":caps});
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .or_else(|| params.get("taskId"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(n) = name.as_deref() {
        headers.push(("mcp-name", n));
    }
    let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
    let (s, _, v) = post(http, url, &headers, &body).await;
    (s, v)
}

/// Reads `stream` for `within`, returning what arrived.
pub async fn read_for(stream: &mut reqwest::Response, within: Duration) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    seen
}

/// Reads `stream` until `needle` arrives (or 15 s pass).
pub async fn read_until(stream: &mut reqwest::Response, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen.contains(needle) && Instant::now() < deadline {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    seen
}

/// Opens a legacy HTTP+SSE connection (`<endpoint>/sse`) and initializes it: the stream (its
/// endpoint event read) and the URL messages are POSTed to.
pub async fn legacy_sse(
    http: &reqwest::Client,
    gh: &Gatehouse,
    endpoint: &str,
) -> (reqwest::Response, String) {
    let mut sse = http
        .get(gh.url(&format!("{endpoint}/sse")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let first = read_until(&mut sse, "sessionId=").await;
    let path = first
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("endpoint event")
        .trim()
        .to_string();
    let post_url = gh.url(&path);
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"sse","version":"1"}}});
    let (s, _, _) = post(http, &post_url, &[], &init).await;
    assert_eq!(s, 202);
    let ready = read_until(&mut sse, "protocolVersion").await;
    assert!(ready.contains("protocolVersion"), "{ready}");
    (sse, post_url)
}

/// The Prometheus text at `url` (the admin listener's `/metrics`).
pub async fn scrape(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample whose line starts with `series` (a name with its labels).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every event of every chain in `data_dir`, in file order. A last line without its newline
/// is being written while the gateway runs: it is left for the next read.
pub fn audit_events(data_dir: &Path) -> Vec<Value> {
    let dir = data_dir.join("audit");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            complete
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// Writes a config file into `dir` and returns its path.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let p = dir.join("gatehouse.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}

/// Starts the demo member behind `/mcp` with `gateway` (indented YAML under `gateway:`; paths
/// in it are relative to `dir`) and an admin listener.
pub fn start_with_gateway(dir: &tempfile::TempDir, gateway: &str) -> Gatehouse {
    let path = write_config(
        dir.path(),
        &format!("gateway:\n{gateway}{}", demo_member_yaml("")),
    );
    Gatehouse::start(&[
        "--config",
        path.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
    ])
}

/// Config YAML with the built-in demo server as a stdio member.
pub fn demo_member_yaml(extra_member: &str) -> String {
    format!(
        "servers:\n  - name: demo\n    command: {bin}\n    args: [demo-server]\nvirtual_servers:\n  - name: default\n    path: /mcp\n    include:\n      - server: demo\n{extra_member}",
        bin = serde_json::to_string(&bin().display().to_string()).unwrap()
    )
}

pub fn tool_names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Direct child processes of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// True while `pid` exists and is not a zombie.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Polls `f` until it returns true or `within` passes.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}
