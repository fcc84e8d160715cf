//! A client sending 3 MiB strings — a method name, a resource URI, a tool name, its
//! `clientInfo` — to the real binary: the journal line, the index (`gatehouse audit query`)
//! and the gateway's log stay a few KiB, each cut string is recorded with its original
//! length and SHA-256, and the cuts show as metrics.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const HUGE: usize = 3 * 1024 * 1024;
/// `audit.max_field_bytes`' default.
const MAX: usize = 1024;

const ECHO_ONLY: &str = r#"permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"tools/echo");
"#;

fn sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every complete journal line of `data_dir`.
fn journal_lines(data_dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data_dir.join("audit")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            out.extend(complete.lines().map(str::to_string));
        }
    }
    out
}

#[tokio::test]
async fn megabyte_strings_from_a_client_stay_small_in_the_journal_the_index_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.cedar"), ECHO_ONLY).unwrap();
    let config = format!(
        "servers:\n  - name: demo\n    command: {bin}\n    args: [demo-server]\nvirtual_servers:\n  - name: tools\n    path: /mcp\n    include: [{{ server: demo }}]\npolicies:\n  engine: cedar\n  paths: [policy.cedar]\n",
        bin = serde_json::to_string(&bin().display().to_string()).unwrap()
    );
    let path = write_config(dir.path(), &config);
    let gw = Gatehouse::start(&[
        "--config",
        path.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let data = gw.data_dir.path().to_path_buf();

    let method = format!("probe/{}", "m".repeat(HUGE));
    let uri = format!("file:///{}", "u".repeat(HUGE));
    let tool = "t".repeat(HUGE);
    let client_name = "c".repeat(HUGE);

    // The handshake era validates no headers against the body, so the strings can be huge.
    let session = Legacy::connect(&gw.url("/mcp")).await;
    let (_, v) = session.request(2, &method, json!({})).await;
    assert_eq!(v["error"]["code"], -32601, "policies cannot decide it");
    let (_, v) = session
        .request(3, "resources/read", json!({"uri": uri}))
        .await;
    assert!(v["error"].is_object(), "no such resource");
    let (_, v) = session
        .request(4, "tools/call", json!({"name": tool, "arguments": {}}))
        .await;
    assert!(v["error"].is_object(), "no such tool");
    // A stateless call names its client in `_meta`.
    let body = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},
                 "io.modelcontextprotocol/clientInfo":{"name":client_name,"version":"1"}}}});
    let (s, _, v) = post(
        &client(),
        &gw.url("/mcp"),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
        &body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "hi");

    // The journal: every line small, every cut described.
    let find = |pred: &dyn Fn(&Value) -> bool| -> Option<Value> {
        journal_lines(&data)
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|e| pred(e))
    };
    assert!(
        eventually(Duration::from_secs(5), || find(&|e| e["client"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("ccc")))
        .is_some())
        .await
    );
    for line in journal_lines(&data) {
        assert!(
            line.len() < 16 * 1024,
            "a journal line of {} bytes",
            line.len()
        );
    }
    let cut = |field: &str, original: &str, pred: &dyn Fn(&Value) -> bool| {
        let e = find(pred).unwrap_or_else(|| panic!("no event for {field}"));
        assert_eq!(
            e["truncated"][field],
            json!({"bytes": original.len(), "sha256": sha256(original)}),
            "{field}: {e}"
        );
        let path: Vec<&str> = field.split('.').collect();
        let value = path.iter().fold(&e, |v, k| &v[*k]).as_str().unwrap();
        assert!(
            value.len() <= MAX,
            "{field} recorded with {} bytes",
            value.len()
        );
        assert!(value.ends_with('…'), "{field}: {value}");
        assert!(original.starts_with(value.trim_end_matches('…')), "{field}");
    };
    cut("method", &method, &|e| {
        e["method"]
            .as_str()
            .is_some_and(|m| m.starts_with("probe/"))
    });
    cut("target.name", &uri, &|e| {
        e["target"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("file:///"))
    });
    cut("client.name", &client_name, &|e| {
        e["client"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("ccc"))
    });
    let unknown_tool = find(&|e| {
        e["result"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("ttt"))
    })
    .expect("the unknown tool's event");
    assert!(
        unknown_tool["truncated"]["result.error_message"]["bytes"]
            .as_u64()
            .unwrap()
            > HUGE as u64
    );

    // The index, through `gatehouse audit query`.
    let (code, out, err) = gatehouse(&[
        "audit",
        "query",
        "--data-dir",
        data.to_str().unwrap(),
        "--type",
        "mcp.request",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().count() >= 4, "{out}");
    for row in out.lines() {
        assert!(row.len() < 16 * 1024, "a query row of {} bytes", row.len());
    }
    assert!(out.contains(&sha256(&method)), "rows carry the digest");

    // The log: small, with the method bounded and its digest.
    let log = gw.log.lock().unwrap().clone();
    assert!(log.len() < 256 * 1024, "the log holds {} bytes", log.len());
    for line in log.lines() {
        assert!(line.len() < 8 * 1024, "a log line of {} bytes", line.len());
    }
    assert!(
        log.contains(&format!(
            "[{} bytes, sha256 {}]",
            method.len(),
            sha256(&method)
        )),
        "{log}"
    );

    // The metrics.
    let metrics = scrape(&gw.banner_url("metrics:")).await;
    let value = |series: &str| {
        sample(&metrics, series).unwrap_or_else(|| panic!("{series} missing in\n{metrics}"))
    };
    assert!(value("gatehouse_audit_fields_truncated_total{field=\"method\"}") >= 1.0);
    assert!(value("gatehouse_audit_fields_truncated_total{field=\"client.name\"}") >= 1.0);
    assert!(value("gatehouse_log_fields_truncated_total") >= 1.0);
}
