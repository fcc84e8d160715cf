//! Helpers for tests that present tokens: the demo server behind `auth`, forged JWTs, and a
//! 2026-07-28 `tools/call` with chosen headers.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::{Gatehouse, post};

/// The audience (resource) of the demo endpoint behind `auth`.
pub const AUDIENCE: &str = "https://gatehouse.test/mcp";

/// The demo server at `/mcp` behind `auth` with `issuer`, plus `extra_vs`.
pub fn config(issuer: &str, extra_vs: &str) -> String {
    format!(
        r#"servers:
  - name: demo
    command: {bin}
    args: [demo-server]
    scopes:
      add: [jira:write]
virtual_servers:
  - name: tools
    path: /mcp
    include: [{{ server: demo }}]
    auth:
      issuer: {issuer}
      audience: {AUDIENCE}
      required_scopes: [mcp:tools]
{extra_vs}"#,
        bin = super::bin().display()
    )
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A JWT signed with the RSA key at `key_pem`.
pub fn forge(key_pem: &std::path::Path, kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    let key = EncodingKey::from_rsa_pem(&std::fs::read(key_pem).unwrap()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// A 2026-07-28 `tools/call` of the demo's `echo`.
pub fn echo_call() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}})
}

/// Sends [`echo_call`] with `headers` added.
pub async fn call_with(
    gw: &Gatehouse,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut h = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    h.extend_from_slice(headers);
    post(&super::client(), &gw.url("/mcp"), &h, &echo_call()).await
}

/// The `WWW-Authenticate` header, empty when absent.
pub fn challenge(h: &reqwest::header::HeaderMap) -> String {
    h.get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}
