//! Invariants of the relay, checked against a recording backend (a minimal stateless MCP server
//! written here, because the point is to see exactly what crosses the wire):
//! - the client's Authorization header (any credential) never reaches a backend;
//! - unknown fields and methods are relayed intact.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{Value, json};

/// What the recording backend saw: (headers, body) per request.
type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, Value)>>>;

async fn recording_backend() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app_seen = seen.clone();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = app_seen.clone();
            async move {
                let msg: Value = serde_json::from_str(&body).unwrap();
                let hs = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
                seen.lock().unwrap().push((hs, msg.clone()));
                let id = msg["id"].clone();
                let result = match msg["method"].as_str() {
                    Some("server/discover") => json!({"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"serverInfo":{"name":"rec","version":"1"}}),
                    Some("tools/list") => json!({"tools":[{"name":"probe","inputSchema":{"type":"object"},"x-vendor":{"kept":true}}]}),
                    Some("tools/call") => json!({"content":[{"type":"text","text":"ok","x-extra":1}],"x-unknown-result-field":{"nested":[1,2]}}),
                    Some("vendor/custom") => json!({"echo": msg["params"].clone()}),
                    _ if msg.get("id").is_none() => return (axum::http::StatusCode::ACCEPTED, String::new()),
                    _ => json!({}),
                };
                (axum::http::StatusCode::OK, json!({"jsonrpc":"2.0","id":id,"result":result}).to_string())
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/mcp"), seen)
}

#[tokio::test]
async fn client_credentials_never_reach_the_backend_and_unknowns_are_relayed() {
    let (backend, seen) = recording_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "servers:\n  - name: rec\n    url: {backend}\nvirtual_servers:\n  - name: v\n    path: /mcp\n    include:\n      - server: rec\n"
        ),
    );
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let url = gh.url("/mcp");
    let http = client();
    let secret = "Bearer client-secret-token-123";
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let (_, h, _) = post(
        &http,
        &url,
        &[("authorization", secret), ("cookie", "sid=abc")],
        &init,
    )
    .await;
    let sid = h
        .get("mcp-session-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let auth = [
        ("authorization", secret),
        ("cookie", "sid=abc"),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];

    let (_, _, list) = post(
        &http,
        &url,
        &auth,
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    assert_eq!(
        list["result"]["tools"][0]["x-vendor"],
        json!({"kept": true}),
        "unknown tool fields relayed: {list}"
    );
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"probe","arguments":{"a":1},"x-client-extension":"keep-me"}});
    let (_, _, r) = post(&http, &url, &auth, &call).await;
    assert_eq!(
        r["result"]["x-unknown-result-field"],
        json!({"nested": [1, 2]}),
        "{r}"
    );
    assert_eq!(r["result"]["content"][0]["x-extra"], 1);
    let custom =
        json!({"jsonrpc":"2.0","id":3,"method":"vendor/custom","params":{"anything":[true,null]}});
    let (_, _, r) = post(&http, &url, &auth, &custom).await;
    assert_eq!(
        r["result"]["echo"]["anything"],
        json!([true, null]),
        "unknown method relayed: {r}"
    );

    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 4, "backend saw {} requests", seen.len());
    for (headers, body) in seen.iter() {
        for (k, v) in headers {
            assert_ne!(k, "authorization", "client credential forwarded: {v}");
            assert_ne!(k, "cookie", "client cookie forwarded: {v}");
            assert!(
                !v.contains("client-secret-token-123"),
                "secret leaked in header {k}"
            );
        }
        assert!(!body.to_string().contains("client-secret-token-123"));
    }
    let call_seen = seen
        .iter()
        .find(|(_, b)| b["method"] == "tools/call")
        .unwrap();
    assert_eq!(
        call_seen.1["params"]["x-client-extension"], "keep-me",
        "unknown params relayed"
    );
}
