//! The hostile test server (`fixtures/hostile_server.py`): where it is, how to call its
//! `probe` tool through a gateway, and how to look at its processes and files from outside.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Gatehouse, children, client, modern};

/// The hostile server's script.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile_server.py")
}

/// Calls the hostile server's `probe` tool and returns its report.
pub async fn probe(gw: &Gatehouse, action: &str, target: &str) -> String {
    let (status, v) = modern(
        &client(),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "probe", "arguments": {"action": action, "target": target}}),
    )
    .await;
    assert_eq!(status, 200, "{action} {target}: {v}");
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{action} {target}: no text in {v}"))
        .to_string()
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
