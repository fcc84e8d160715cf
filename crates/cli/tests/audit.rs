//! The audit journal end to end, through the real binary: one event per request with the
//! caller from a real OpenID Provider, policy decisions and redacted arguments; coalesced
//! authentication floods; session, config and policy events; `audit verify` and `audit query`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::idp::Op;
use common::tokens::{AUDIENCE, call_with};
use common::*;
use serde_json::{Value, json};

const ECHO_ONLY: &str = r#"permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"tools/echo");
permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"open/echo");
"#;

fn config(op_issuer: &str, dir: &Path) -> String {
    std::fs::write(dir.join("policy.cedar"), ECHO_ONLY).unwrap();
    format!(
        r#"servers:
  - name: demo
    command: {bin}
    args: [demo-server]
    operations: {{ add: delete }}
  - name: hashed
    command: {bin}
    args: [demo-server]
    audit: {{ arguments: hashed }}
virtual_servers:
  - name: tools
    path: /mcp
    include: [{{ server: demo }}]
    auth:
      issuer: {op_issuer}
      audience: {AUDIENCE}
  - name: open
    path: /open
    include: [{{ server: hashed }}]
policies:
  engine: cedar
  paths: [policy.cedar]
audit:
  coalesce: 1s
"#,
        bin = serde_json::to_string(&bin().display().to_string()).unwrap()
    )
}

async fn call(gw: &Gatehouse, token: &str, tool: &str, arguments: Value) -> (u16, Value) {
    let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":arguments,
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},
                 "io.modelcontextprotocol/clientInfo":{"name":"audit-test","version":"2.1"}}}});
    let (s, _, v) = post(
        &client(),
        &gw.url("/mcp"),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
            ("authorization", &format!("Bearer {token}")),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
        &body,
    )
    .await;
    (s, v)
}

#[tokio::test]
async fn every_request_leaves_one_event_with_the_caller_the_target_and_the_outcome() {
    let op = Op::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config(&op.issuer, dir.path()));
    let mut gw = Gatehouse::start(&["--config", path.to_str().unwrap()]);
    let data = gw.data_dir.path().to_path_buf();
    let alice = op.user_token("alice", AUDIENCE, "openid").await;

    // Allowed, with a secret-looking argument.
    let (s, v) = call(
        &gw,
        &alice,
        "echo",
        json!({"text": "hi", "api_key": "sk-live-123"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "hi");
    // Denied by policy: looks like a missing tool.
    let (_, v) = call(&gw, &alice, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(v["error"]["message"], "Unknown tool: add");
    // A flood of identical bad tokens from one address, and one request without a token.
    for _ in 0..5 {
        let (s, _, _) = call_with(&gw, &[("authorization", "Bearer not-a-jwt")]).await;
        assert_eq!(s, 401);
    }
    let (s, _, _) = call_with(&gw, &[]).await;
    assert_eq!(s, 401);
    // The open endpoint records its server's arguments only as a digest.
    let (s, v) = modern(
        &client(),
        &gw.url("/open"),
        3,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "confidential"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "confidential");
    // A handshake-era session, opened and ended.
    let legacy = Legacy::connect(&gw.url("/open")).await;
    assert_eq!(legacy.echo(1, "x").await, "x");
    let status = legacy
        .http
        .delete(&legacy.url)
        .header("mcp-session-id", &legacy.session)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success());

    // The coalescing interval (1s) ends: the flood's count is written.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let all = audit_events(&data);
    let text = all
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!text.contains(&alice), "the journal never holds a token");
    assert!(
        !text.contains("sk-live-123"),
        "secret-looking arguments are redacted"
    );
    assert!(
        !text.contains("confidential"),
        "hashed arguments are not recorded"
    );

    let find =
        |pred: &dyn Fn(&Value) -> bool| -> Vec<&Value> { all.iter().filter(|e| pred(e)).collect() };
    let echo = find(&|e| e["target"]["name"] == "echo" && e["virtual_server"] == "tools");
    assert_eq!(echo.len(), 1, "{echo:#?}");
    let echo = echo[0];
    assert_eq!(echo["type"], "mcp.request");
    assert_eq!(echo["outcome"], "ok");
    assert_eq!(echo["principal"]["subject"], "alice");
    assert_eq!(echo["principal"]["issuer"], op.issuer.as_str());
    assert_eq!(echo["principal"]["kind"], "user");
    assert_eq!(echo["client"]["name"], "audit-test");
    assert_eq!(echo["client"]["version"], "2.1");
    assert_eq!(echo["client"]["ip"], "127.0.0.1");
    assert_eq!(echo["server"], "demo");
    assert_eq!(echo["method"], "tools/call");
    assert_eq!(
        echo["arguments"],
        json!({"text": "hi", "api_key": "[redacted]"})
    );
    assert_eq!(echo["policy"]["decision"], "allow");
    assert_eq!(echo["policy"]["engine"], "cedar");
    assert!(echo["policy"]["version"].as_str().unwrap().len() > 8);
    assert_eq!(echo["result"]["status"], "ok");
    assert!(echo["result"]["bytes"].as_u64().unwrap() > 10);
    assert!(echo["latency_us"].as_u64().unwrap() > 0);
    assert_eq!(echo["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        echo["target"]["operation"], "write",
        "unclassified tools write"
    );
    assert!(echo["request_bytes"].as_u64().unwrap() > 200, "{echo}");

    let add = find(&|e| e["target"]["name"] == "add");
    assert_eq!(add.len(), 1);
    assert_eq!(add[0]["outcome"], "denied");
    assert_eq!(
        add[0]["target"]["operation"], "delete",
        "the admin's classification"
    );
    assert_eq!(add[0]["policy"]["decision"], "deny");
    assert_eq!(
        add[0]["arguments"],
        json!({"a": 1, "b": 2}),
        "attempts are recorded too"
    );

    // Both carry the stable code itself (a SIEM query on it finds them); the repetition is in
    // `count` and the summary's `detail`.
    let bad = find(&|e| e["type"] == "auth.failure" && e["reason"] == "malformed_token");
    assert_eq!(bad.len(), 2, "one event, then one count: {bad:#?}");
    assert_eq!(bad[0]["count"], 1);
    assert_eq!(bad[1]["count"], 4);
    let (first, last) = (
        bad[1]["detail"]["first_at"].as_str().unwrap(),
        bad[1]["detail"]["last_at"].as_str().unwrap(),
    );
    assert!(first <= last, "{}", bad[1]);
    assert_eq!(bad[0]["outcome"], "unauthenticated");
    assert_eq!(bad[0]["result"]["http_status"], 401);
    assert!(bad[0].get("principal").is_none());
    let missing = find(&|e| e["type"] == "auth.failure" && e["reason"] == "missing_token");
    assert_eq!(missing.len(), 1);

    let hashed = find(&|e| e["virtual_server"] == "open" && e["target"]["name"] == "echo");
    assert!(hashed.iter().all(|e| e.get("arguments").is_none()));
    assert_eq!(
        hashed[0]["arguments_digest"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(find(&|e| e["type"] == "session.start").len(), 1);
    assert_eq!(find(&|e| e["type"] == "session.end").len(), 1);
    let start = find(&|e| e["type"] == "session.start")[0];
    assert_eq!(start["client"]["name"], "e2e");
    assert_eq!(start["session"].as_str().unwrap().len(), 16);

    // A policy change and a rejected config are events too.
    std::fs::write(
        dir.path().join("policy.cedar"),
        format!("{ECHO_ONLY}permit (principal, action == Gatehouse::Action::\"call_tool\", resource == Gatehouse::Tool::\"tools/add\");\n"),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || audit_events(&data)
            .iter()
            .any(|e| e["type"] == "policy.change" && e["outcome"] == "ok"))
        .await
    );
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("servers:", "servers:\n  - bogus: 1")).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            audit_events(&data)
                .iter()
                .any(|e| e["type"] == "config.change" && e["outcome"] == "rejected")
        })
        .await
    );

    // Alice's attempt at `add`, classified `delete`, was her first: the indexer thread's
    // detector journals it as an anomaly.
    assert!(
        eventually(Duration::from_secs(10), || audit_events(&data).iter().any(
            |e| e["type"] == "anomaly"
                && e["detail"]["detector"] == "first_delete"
                && e["detail"]["tool"] == "add"
                && e["principal"]["subject"] == "alice"
        ))
        .await
    );

    // Query: the index answers by user, tool and outcome.
    let d = data.to_str().unwrap();
    let (code, out, err) = gatehouse(&[
        "audit",
        "query",
        "--data-dir",
        d,
        "--user",
        "alice",
        "--type",
        "mcp.request",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|r| r["principal"]["subject"] == "alice"));
    assert_eq!(rows[0]["target"]["name"], "add", "newest first");
    let (code, out, _) = gatehouse(&[
        "audit",
        "query",
        "--data-dir",
        d,
        "--tool",
        "add",
        "--outcome",
        "denied",
        "--since",
        "1h",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("denied") && out.contains("tools/call add") && out.contains("(1 event(s)"),
        "{out}"
    );
    let (code, out, _) = gatehouse(&[
        "audit",
        "query",
        "--data-dir",
        d,
        "--type",
        "auth.failure",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "{out}");
    let (code, _, err) = gatehouse(&[
        "audit",
        "query",
        "--data-dir",
        d,
        "--since",
        "yesterday-ish",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("neither a duration"), "{err}");

    // The chain is intact; an edit is named.
    let (code, out, _) = gatehouse(&["audit", "verify", "--data-dir", d]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": intact"), "{out}");
    // Stop the gateway, keeping its data directory.
    let _kept = std::mem::replace(&mut gw.data_dir, tempfile::tempdir().unwrap());
    drop(gw);
    let seg = std::fs::read_dir(data.join("audit"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let original = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(
        &seg,
        original.replacen("\"outcome\":\"denied\"", "\"outcome\":\"ok\"", 1),
    )
    .unwrap();
    let (code, out, _) = gatehouse(&["audit", "verify", "--data-dir", d]);
    assert_eq!(code, 1, "{out}");
    let name = seg.file_name().unwrap().to_str().unwrap();
    assert!(
        out.contains(&format!("{name} line ")) && out.contains(": edited: "),
        "{out}"
    );
}

/// kill -9 under load in the default (`process`) mode: every call whose response a client
/// received has its event in the journal after a restart, and the chains verify.
#[tokio::test]
async fn killing_the_gateway_loses_no_event_of_an_acknowledged_call() {
    let mut gw = Gatehouse::start(&[]);
    let url = gw.url("/mcp");
    // The demo server starts (in its sandbox) before the load, so the load's 1.5 s are calls.
    let (s, v) = modern(
        &client(),
        &url,
        0,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "warm"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..16 {
        let (url, stop, done) = (url.clone(), stop.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let http = client();
            let mut acknowledged = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let body = json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"echo","arguments":{"text": format!("c{c}-{i}")},
                    "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
                let sent = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json")
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", "echo")
                    .body(body.to_string())
                    .send()
                    .await;
                let Ok(resp) = sent else { break };
                let id = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
                // Acknowledged = the whole response arrived.
                match (id, resp.text().await) {
                    (Some(id), Ok(text)) if text.contains(&format!("c{c}-{i}")) => {
                        acknowledged.push(id);
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    // Kill under load: once well over a hundred calls were acknowledged (a slow or busy
    // machine takes longer to get there; the kill must not come before the load).
    let start = std::time::Instant::now();
    while done.load(std::sync::atomic::Ordering::Relaxed) < 150
        && start.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unsafe_kill(gw.child.id() as i32, 9);
    let _ = gw.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for c in clients {
        acknowledged.extend(c.await.unwrap());
    }
    assert!(
        acknowledged.len() > 100,
        "only {} calls under load",
        acknowledged.len()
    );
    let data = std::mem::replace(&mut gw.data_dir, tempfile::tempdir().unwrap());
    drop(gw);
    let journaled: std::collections::HashSet<String> = audit_events(data.path())
        .iter()
        .filter(|e| e["type"] == "mcp.request" && e["target"]["name"] == "echo")
        .filter_map(|e| e["request_id"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !journaled.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged calls have no event: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );

    // After a restart the new chain links to the killed one, and everything verifies.
    let gw = Gatehouse::start_in(&[], data);
    let (s, _) = modern(
        &client(),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "after"}}),
    )
    .await;
    assert_eq!(s, 200);
    let (code, out, _) = gatehouse(&[
        "audit",
        "verify",
        "--data-dir",
        gw.data_dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 chain(s)"), "{out}");
}
