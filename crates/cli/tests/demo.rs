//! `gatehouse up` with the built-in demo, driven over raw HTTP in both eras.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn demo_serves_both_eras() {
    let gh = Gatehouse::start(&[]);
    let url = gh.url("/mcp");
    let legacy = Legacy::connect(&url).await;
    let (s, list) = legacy.request(1, "tools/list", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(tool_names(&list), vec!["add", "countdown", "echo"]);
    let (_, r) = legacy
        .request(
            2,
            "tools/call",
            json!({"name":"add","arguments":{"a":40,"b":2}}),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "42");
    assert_eq!(r["result"]["structuredContent"], json!({"sum": 42}));
    assert_eq!(legacy.echo(3, "hello").await, "hello");

    let http = client();
    let (s, r) = modern(
        &http,
        &url,
        4,
        "tools/call",
        json!({"name":"echo","arguments":{"text":"modern"}}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "modern");
    assert_eq!(r["result"]["resultType"], "complete");
    let (_, r) = modern(&http, &url, 5, "tools/list", json!({})).await;
    assert_eq!(r["result"]["cacheScope"], "public");
    assert!(r["result"]["ttlMs"].as_u64().is_some());
    let (_, r) = modern(&http, &url, 6, "server/discover", json!({})).await;
    assert!(
        r["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "2026-07-28")
    );
    assert!(
        r["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "2025-06-18")
    );

    let health = http.get(gh.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = http.get(gh.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn bad_input_gets_specific_errors() {
    let gh = Gatehouse::start(&[]);
    let url = gh.url("/mcp");
    let http = client();
    // Malformed JSON: 400, parse error, request id echoed for log correlation.
    let resp = http
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let rid = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["error"]["data"]["requestId"], rid);
    // Not JSON-RPC 2.0: invalid request with the id.
    let (s, _, v) = post(
        &http,
        &url,
        &[],
        &json!({"jsonrpc":"1.0","id":9,"method":"tools/list"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].clone(), v["id"].clone()),
        (400, json!(-32600), json!(9))
    );
    // Oversized body (5 MiB over the default 4 MiB): 413, answered before the body is read.
    // Over a raw socket: the gateway closes a connection whose body it refused, and an HTTP
    // client still writing the rest of the body may see the reset before the response.
    let big_head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n\
         {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{{\"p\":\"{}",
        5 * 1024 * 1024,
        "a".repeat(64 * 1024)
    );
    let mut socket = tokio::net::TcpStream::connect(gh.addr()).await.unwrap();
    let answer = raw::exchange(&mut socket, big_head.as_bytes(), Duration::from_secs(5))
        .await
        .expect("an answer to the oversized body");
    assert_eq!(raw::status(&answer), 413, "{answer}");
    // 2026-07-28: header mismatch → 400/-32020; unknown version → 400/-32022 with the list.
    let body = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    let (s, _, v) = post(
        &http,
        &url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "add"),
        ],
        &body,
    )
    .await;
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32020)));
    let (s, _, v) = post(
        &http,
        &url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        &body,
    )
    .await;
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32020)));
    let mut future = body.clone();
    future["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let (s, _, v) = post(
        &http,
        &url,
        &[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
        &future,
    )
    .await;
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32022)));
    assert!(
        v["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
    // Missing clientCapabilities → -32602.
    let mut nocaps = body.clone();
    nocaps["params"]["_meta"]
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    let (s, _, v) = post(
        &http,
        &url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
        &nocaps,
    )
    .await;
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32602)));
    // Unknown tool: the same error a client gets for any missing item.
    let (s, v) = modern(
        &http,
        &url,
        3,
        "tools/call",
        json!({"name":"nope","arguments":{}}),
    )
    .await;
    assert_eq!((s, v["error"]["code"].clone()), (200, json!(-32602)));
    // DNS rebinding: a foreign Origin or Host is refused on a loopback listener.
    let resp = http
        .post(&url)
        .header("origin", "http://evil.example.com")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Handshake-era request without a session.
    let (s, _, _) = post(
        &http,
        &url,
        &[],
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    assert_eq!(s, 400);
    // A client whose capabilities would not fit a session id header.
    let huge = json!({"jsonrpc":"2.0","id":5,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"experimental":{"x":"y".repeat(10_000)}},"clientInfo":{"name":"big","version":"1"}}});
    let (s, _, v) = post(&http, &url, &[], &huge).await;
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32602)), "{v}");
    // Unknown virtual server path.
    assert_eq!(
        http.post(gh.url("/nope"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn sessions_survive_a_restart_and_end_on_delete() {
    let mut gh = Gatehouse::start(&[]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let status = gh
        .terminate(Duration::from_secs(15))
        .expect("exits on SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");
    let data_dir = std::mem::replace(&mut gh.data_dir, tempfile::tempdir().unwrap());
    let gh2 = Gatehouse::start_in(&[], data_dir);
    let legacy = Legacy {
        url: gh2.url("/mcp"),
        ..legacy
    };
    let (s, r) = legacy
        .request(
            1,
            "tools/call",
            json!({"name":"echo","arguments":{"text":"again"}}),
        )
        .await;
    assert_eq!(s, 200, "sealed session opens after restart: {r}");
    assert_eq!(r["result"]["content"][0]["text"], "again");
    let del = legacy
        .http
        .delete(&legacy.url)
        .header("mcp-session-id", &legacy.session)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    let (s, _) = legacy.request(2, "tools/list", json!({})).await;
    assert_eq!(s, 404, "deleted session is gone");
    // A forged session id is not accepted.
    let forged = Legacy {
        session: format!("{}x", legacy.session),
        ..legacy
    };
    assert_eq!(forged.request(3, "tools/list", json!({})).await.0, 404);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let gh = Gatehouse::start(&["--log-format", "json"]);
    Legacy::connect(&gh.url("/mcp")).await;
    assert!(eventually(Duration::from_secs(5), || gh.logged("session started")).await);
    let log = gh.log.lock().unwrap().clone();
    let line = log.lines().find(|l| l.contains("session started")).unwrap();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["message"], "session started");
    assert_eq!(v["virtual_server"], "demo");
}
