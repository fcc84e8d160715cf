//! What the outbound-credential tests share: a gateway in front of a downstream MCP API
//! (`idp::Downstream`) whose users come from the test OpenID Provider (`idp::Op`).

use serde_json::{Value, json};

use super::idp::{Downstream, Op, bearer_client};
use super::{Gatehouse, modern, write_config};

/// The audience the virtual server expects of users' tokens.
pub const AUDIENCE: &str = "https://gatehouse.test/mcp";

/// A config with the server `api` at `downstream` with `credentials`, behind an endpoint
/// that authenticates users of `op`.
pub fn config(op: &Op, downstream: &Downstream, credentials: &str) -> String {
    format!(
        r#"servers:
  - name: api
    url: {url}
    credentials:
{credentials}
virtual_servers:
  - name: tools
    path: /mcp
    include: [{{ server: api }}]
    auth:
      issuer: {issuer}
      audience: {AUDIENCE}
"#,
        url = downstream.url,
        issuer = op.issuer,
    )
}

/// Starts a gateway with `yaml` and extra `args`; the config's folder lives as long as the
/// returned guard.
pub fn start(yaml: &str, args: &[&str]) -> (Gatehouse, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), yaml);
    let mut all = vec!["--config", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let gw = Gatehouse::start_full(
        &all,
        &[("GH_TEST_SECRET", "gatehouse-secret")],
        tempfile::tempdir().unwrap(),
    );
    (gw, dir)
}

/// Calls the downstream's `whoami` tool as the holder of `token`.
pub async fn whoami(gw: &Gatehouse, token: &str) -> (u16, Value) {
    modern(
        &bearer_client(token),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "whoami", "arguments": {}}),
    )
    .await
}

/// The claims the downstream saw, from a `whoami` reply.
pub fn claims(reply: &Value) -> Value {
    let text = reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no result: {reply}"));
    serde_json::from_str(text).unwrap()
}
