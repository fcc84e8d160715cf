//! The hostile test server (`fixtures/hostile_server.py`): where it is, how to call its
//! `probe` tool through a gateway, and how to look at its processes and files from outside.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::{Gatehouse, children, client, modern};

/// The hostile server's script.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile_server.py")
}

/// Calls `tool` with `args` at the virtual server on `path` and returns the text it answered.
pub async fn call_tool(gw: &Gatehouse, path: &str, tool: &str, args: Value) -> String {
    let (status, v) = modern(
        &client(),
        &gw.url(path),
        1,
        "tools/call",
        json!({"name": tool, "arguments": args}),
    )
    .await;
    assert_eq!(status, 200, "{tool} {args}: {v}");
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{tool} {args}: no text in {v}"))
        .to_string()
}

/// Calls the hostile server's `probe` tool at `/mcp` and returns its report.
pub async fn probe(gw: &Gatehouse, action: &str, target: &str) -> String {
    probe_at(gw, "/mcp", action, target).await
}

/// Calls the `probe` tool of the hostile server behind `path` and returns its report.
pub async fn probe_at(gw: &Gatehouse, path: &str, action: &str, target: &str) -> String {
    call_tool(
        gw,
        path,
        "probe",
        json!({"action": action, "target": target}),
    )
    .await
}

/// A loopback listener on the host that counts the connections it accepted.
pub fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            if c.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, n)
}

/// The hostile server's report of `action` as JSON (`env`, `status`).
pub async fn probe_json(gw: &Gatehouse, action: &str) -> Value {
    let r = probe(gw, action, "").await;
    let json = r
        .strip_prefix("ok: ")
        .unwrap_or_else(|| panic!("{action}: {r}"));
    serde_json::from_str(json).unwrap()
}

/// The processes below the gateway `pid` that belong to the hostile server's sandbox.
pub fn hostile_pids(pid: u32) -> Vec<u32> {
    descendants(pid)
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("hostile_server.py"))
        })
        .collect()
}

/// Every pid below `pid`, by `/proc/*/task/*/children`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children(p) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// Every file below `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if std::fs::File::open(&p)
                .and_then(|mut f| f.read(&mut [0u8; 1]))
                .is_ok()
            {
                out.push(p);
            }
        }
    }
    out
}
