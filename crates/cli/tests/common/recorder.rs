//! A recording MCP server: a minimal backend written here, because the point is to see
//! exactly what crosses the wire to a member. It speaks one era — 2026-07-28 (answers
//! `server/discover`) or the 2025 handshake (`initialize` with a session id; refuses
//! `server/discover` as a 2025 server does) — and records every message with its headers.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// What the recorder saw: (headers, body) per message.
pub type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, Value)>>>;

/// The era a recorder speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecorderEra {
    /// 2026-07-28: `server/discover`, no sessions.
    Stateless,
    /// 2025-06-18: `initialize` and `Mcp-Session-Id`.
    Handshake,
}

/// The methods the recorder received, in order.
pub fn methods(seen: &Seen) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|(_, b)| b["method"].as_str().map(str::to_string))
        .collect()
}

/// Starts a recorder; returns its URL and what it sees.
pub async fn start(era: RecorderEra) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app_seen = seen.clone();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = app_seen.clone();
            async move { answer(era, &seen, &headers, &body) }
        })
        .get(|| async { axum::http::StatusCode::METHOD_NOT_ALLOWED })
        .delete(|| async { axum::http::StatusCode::OK }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/mcp"), seen)
}

fn answer(
    era: RecorderEra,
    seen: &Seen,
    headers: &axum::http::HeaderMap,
    body: &str,
) -> (
    axum::http::StatusCode,
    [(&'static str, &'static str); 2],
    String,
) {
    use axum::http::StatusCode;
    let msg: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let hs = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    seen.lock().unwrap().push((hs, msg.clone()));
    let id = msg["id"].clone();
    let json_headers = [
        ("content-type", "application/json"),
        ("mcp-session-id", "rec-session-1"),
    ];
    let reply = |result: Value| {
        (
            StatusCode::OK,
            json_headers,
            json!({"jsonrpc":"2.0","id":id,"result":result}).to_string(),
        )
    };
    let method = msg["method"].as_str().unwrap_or("");
    match (era, method) {
        (RecorderEra::Handshake, "server/discover") => (
            StatusCode::BAD_REQUEST,
            json_headers,
            json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"Method not found"}})
                .to_string(),
        ),
        (_, "server/discover") => reply(json!({
            "supportedVersions":["2026-07-28"],
            "capabilities":{"tools":{},"prompts":{},"resources":{"subscribe":true},"completions":{}},
            "serverInfo":{"name":"rec","version":"1"}})),
        (_, "initialize") => reply(json!({
            "protocolVersion":"2025-06-18",
            "capabilities":{"tools":{},"prompts":{},"resources":{"subscribe":true},"completions":{},"logging":{}},
            "serverInfo":{"name":"rec","version":"1"}})),
        (_, "tools/list") => reply(
            json!({"tools":[{"name":"probe","inputSchema":{"type":"object"},"x-vendor":{"kept":true}}]}),
        ),
        (_, "prompts/list") => reply(json!({"prompts":[{"name":"greeting"}]})),
        (_, "resources/list") => reply(json!({"resources":[{"uri":"test://doc","name":"doc"}]})),
        (_, "resources/templates/list") => reply(json!({"resourceTemplates":[]})),
        (_, "tools/call") => reply(
            json!({"content":[{"type":"text","text":"ok","x-extra":1}],"x-unknown-result-field":{"nested":[1,2]}}),
        ),
        (_, "vendor/custom") => reply(json!({"echo": msg["params"].clone()})),
        _ if msg.get("id").is_none() => (StatusCode::ACCEPTED, json_headers, String::new()),
        _ => reply(json!({})),
    }
}
