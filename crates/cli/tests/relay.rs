//! Invariants of the relay, checked against a recording backend (a minimal stateless MCP server
//! written here, because the point is to see exactly what crosses the wire):
//! - the client's Authorization header (any credential) never reaches a backend;
//! - unknown fields and methods are relayed intact.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn client_credentials_never_reach_the_backend_and_unknowns_are_relayed() {
    let (backend, seen) = recorder::start(recorder::RecorderEra::Stateless).await;
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
