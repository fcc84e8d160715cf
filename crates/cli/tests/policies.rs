//! Policy changes reach connected callers: a caller whose view a new policy set alters gets
//! `list_changed` on its open stream (a 2025-era GET stream, a 2026-07-28
//! `subscriptions/listen`); a change that alters nothing it can see sends nothing.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const ECHO_ONLY: &str = r#"permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"default/echo");
"#;

fn count(gh: &Gatehouse, needle: &str) -> usize {
    gh.log.lock().unwrap().matches(needle).count()
}

async fn wait_reloads(gh: &Gatehouse, n: usize) {
    assert!(
        eventually(Duration::from_secs(15), || count(
            gh,
            "configuration reloaded"
        ) >= n)
        .await,
        "the policy edit was not applied:\n{}",
        gh.log.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_send_list_changed_to_callers_whose_view_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("base.cedar"), ECHO_ONLY).unwrap();
    let yaml = format!(
        "{}policies:\n  engine: cedar\n  paths: [policies]\n",
        demo_member_yaml("")
    );
    let cfg = write_config(dir.path(), &yaml);
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let url = gh.url("/mcp");

    // A 2025-era session with its GET stream, and a 2026-07-28 subscriptions/listen stream.
    let legacy = Legacy::connect(&url).await;
    let mut get_stream = legacy.open_stream().await;
    let listen_body = json!({"jsonrpc":"2.0","id":"sub-1","method":"subscriptions/listen","params":{
        "notifications": {"toolsListChanged": true},
        "_meta": {"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    let mut listen_stream = client()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .body(listen_body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(listen_stream.status(), 200);
    let ack = read_until(&mut listen_stream, "subscriptions/acknowledged").await;
    assert!(ack.contains("subscriptions/acknowledged"), "{ack}");

    let (_, list) = legacy.request(1, "tools/list", json!({})).await;
    assert_eq!(tool_names(&list), ["echo"]);

    // A permission for someone else: this caller sees the same tools, so hears nothing.
    std::fs::write(
        policies.join("other.cedar"),
        r#"permit (principal == Gatehouse::User::"someone-else", action, resource);"#,
    )
    .unwrap();
    wait_reloads(&gh, 1).await;
    let quiet = read_for(&mut get_stream, Duration::from_secs(2)).await;
    assert!(!quiet.contains("list_changed"), "{quiet}");
    let quiet = read_for(&mut listen_stream, Duration::from_millis(500)).await;
    assert!(!quiet.contains("list_changed"), "{quiet}");

    // A permission for this caller: both streams hear that the tool list changed.
    std::fs::write(
        policies.join("add.cedar"),
        r#"permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"default/add");"#,
    )
    .unwrap();
    let seen = read_until(&mut get_stream, "notifications/tools/list_changed").await;
    assert!(seen.contains("notifications/tools/list_changed"), "{seen}");
    let seen = read_until(&mut listen_stream, "notifications/tools/list_changed").await;
    assert!(seen.contains("notifications/tools/list_changed"), "{seen}");
    assert!(
        seen.contains("sub-1"),
        "the notification names the subscription: {seen}"
    );
    let (_, list) = legacy.request(2, "tools/list", json!({})).await;
    assert_eq!(tool_names(&list), ["add", "echo"]);

    // Filtered lists are per caller, even for anonymous callers.
    let (_, modern_list) = modern(&client(), &url, 5, "tools/list", json!({})).await;
    assert_eq!(
        modern_list["result"]["cacheScope"], "private",
        "{modern_list}"
    );

    // Under policies, a method the gateway cannot decide is refused, not relayed.
    let (_, custom) = legacy.request(3, "demo/anything", json!({})).await;
    assert_eq!(custom["error"]["code"], -32601, "{custom}");
    // Protocol plumbing is never denied.
    let (_, pong) = legacy.request(4, "ping", json!({})).await;
    assert!(pong["result"].is_object(), "{pong}");
}

/// Groups, roles and e-mail from a real OpenID Provider's tokens reach the policies: each
/// user sees and calls exactly what their attributes permit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_groups_and_roles_decide_what_each_user_sees_and_calls() {
    use common::idp::{Op, bearer_client};
    const AUDIENCE: &str = "https://gatehouse.test/mcp";
    let op = Op::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rbac.cedar"),
        r#"@id("mcp-users-echo")
permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"tools/echo")
when { principal.groups.contains("mcp-users") };

@id("developers-add")
permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"tools/add")
when { principal.roles.contains("developer") && principal.email like "*@example.com" };
"#,
    )
    .unwrap();
    let yaml = format!(
        r#"servers:
  - name: demo
    command: {bin}
    args: [demo-server]
virtual_servers:
  - name: tools
    path: /mcp
    include: [{{ server: demo }}]
    auth: {{ issuer: "{issuer}", audience: "{AUDIENCE}" }}
policies:
  engine: cedar
  paths: [rbac.cedar]
"#,
        bin = common::bin().display(),
        issuer = op.issuer,
    );
    let cfg = write_config(dir.path(), &yaml);
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let url = gh.url("/mcp");

    let alice = op
        .user_token("alice", AUDIENCE, "openid email profile")
        .await;
    let (_, list) = modern(&bearer_client(&alice), &url, 1, "tools/list", json!({})).await;
    assert_eq!(tool_names(&list), ["add", "echo"], "{list}");
    let (_, sum) = modern(
        &bearer_client(&alice),
        &url,
        2,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
    )
    .await;
    assert!(sum["result"].is_object(), "{sum}");

    let bob = op.user_token("bob", AUDIENCE, "openid email profile").await;
    let (_, list) = modern(&bearer_client(&bob), &url, 3, "tools/list", json!({})).await;
    assert!(tool_names(&list).is_empty(), "{list}");
    let (_, denied) = modern(
        &bearer_client(&bob),
        &url,
        4,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "x"}}),
    )
    .await;
    assert_eq!(denied["error"]["code"], -32602, "{denied}");
    assert_eq!(denied["error"]["message"], "Unknown tool: echo");
    assert!(
        eventually(Duration::from_secs(5), || gh.logged("allowed=false")).await,
        "the denial is in the decision log"
    );
    let log = gh.log.lock().unwrap().clone();
    let line = log.lines().find(|l| l.contains("allowed=false")).unwrap();
    assert!(
        line.contains("Tool::\\\"tools/echo\\\"") || line.contains("tools/echo"),
        "{line}"
    );
    assert!(line.contains("bob"), "{line}");
    assert!(!log.contains(&bob), "tokens are never logged");
}
