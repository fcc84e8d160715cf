//! End-to-end checks of the fixture's HTTP behaviour in each era.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use gatehouse_testkit::{Era, HttpFixture, HttpOptions};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const MODERN: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";

async fn start(era: Era) -> HttpFixture {
    let options = HttpOptions {
        era,
        ..HttpOptions::default()
    };
    HttpFixture::start("127.0.0.1:0".parse().expect("addr"), &options)
        .await
        .expect("fixture starts")
}

fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "fixture-test", "version": "0" }
    })
}

/// Extracts the JSON-RPC message from a JSON or single-event SSE body.
fn message(body: &str) -> Value {
    if let Ok(value) = serde_json::from_str(body) {
        return value;
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .filter(|data| !data.is_empty())
        .find_map(|data| serde_json::from_str(data).ok())
        .unwrap_or(Value::Null)
}

struct Reply {
    status: StatusCode,
    session: Option<String>,
    body: Value,
}

async fn post(url: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    let mut request = Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.json(&body).send().await.expect("request sent");
    let status = response.status();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("body");
    Reply {
        status,
        session,
        body: message(&text),
    }
}

async fn discover(url: &str) -> Reply {
    post(
        url,
        &[
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "server/discover"),
        ],
        json!({ "jsonrpc": "2.0", "id": 1, "method": "server/discover",
                "params": { "_meta": modern_meta() } }),
    )
    .await
}

async fn initialize(url: &str) -> Reply {
    post(
        url,
        &[],
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": { "name": "fixture-test", "version": "0" }
        }}),
    )
    .await
}

#[tokio::test]
async fn both_serves_sessions_and_stateless_requests() {
    let fixture = start(Era::Both).await;
    let init = initialize(&fixture.url).await;
    assert_eq!(init.status, StatusCode::OK);
    assert!(init.session.is_some(), "legacy initialize opens a session");
    assert_eq!(init.body["result"]["protocolVersion"], LEGACY);

    let found = discover(&fixture.url).await;
    assert_eq!(found.status, StatusCode::OK);
    let versions = &found.body["result"]["supportedVersions"];
    assert!(
        versions
            .as_array()
            .is_some_and(|v| v.contains(&json!(MODERN)))
    );
    assert!(
        versions
            .as_array()
            .is_some_and(|v| v.contains(&json!(LEGACY)))
    );

    let tools = post(
        &fixture.url,
        &[
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/list"),
        ],
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list",
                "params": { "_meta": modern_meta() } }),
    )
    .await;
    let names: Vec<&str> = tools.body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"test_input_required_result_elicitation"));
    assert!(!names.contains(&"test_sampling"), "legacy-only tool hidden");
    assert_eq!(tools.body["result"]["ttlMs"], 60_000);
    fixture.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn legacy_rejects_modern_requests_like_a_2025_server() {
    let fixture = start(Era::Legacy).await;
    let found = discover(&fixture.url).await;
    assert_eq!(found.status, StatusCode::BAD_REQUEST);

    let init = initialize(&fixture.url).await;
    assert_eq!(init.status, StatusCode::OK);
    assert_eq!(init.body["result"]["protocolVersion"], LEGACY);
    let caps = &init.body["result"]["capabilities"];
    assert!(
        caps["extensions"]
            .get("io.modelcontextprotocol/tasks")
            .is_none()
    );

    // A client asking for 2026-07-28 in initialize is negotiated down.
    let newer = post(
        &fixture.url,
        &[],
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": MODERN, "capabilities": {},
            "clientInfo": { "name": "fixture-test", "version": "0" }
        }}),
    )
    .await;
    assert_eq!(newer.body["result"]["protocolVersion"], LEGACY);
    fixture.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn modern_rejects_legacy_requests() {
    let fixture = start(Era::Modern).await;
    let init = initialize(&fixture.url).await;
    assert_eq!(init.status, StatusCode::BAD_REQUEST);
    assert_eq!(init.body["error"]["code"], -32022);
    assert!(init.session.is_none());

    let get = Client::new()
        .get(&fixture.url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET sent");
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);

    let found = discover(&fixture.url).await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.body["result"]["supportedVersions"], json!([MODERN]));
    fixture.shutdown().await.expect("clean shutdown");
}

#[test]
fn binary_prints_its_address_first() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conformance-fixture"))
        .args(["--listen", "127.0.0.1:0", "--era", "modern"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    child.kill().expect("kill");
    child.wait().expect("reaped");
    let url = line.trim().strip_prefix("listening on ").expect("prefix");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(url.ends_with("/mcp"), "{url}");
}
