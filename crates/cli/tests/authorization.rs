//! One authorization table for every method, seen from outside through the real binary:
//! tasks belong to the caller that created them, subscriptions are decided as
//! `read_resource` (when made and when policies change), and under a deny-everything policy
//! set no member receives an item method or a method the table does not know — in both
//! protocol eras, with users from a real OpenID Provider.

mod common;

use std::time::Duration;

use common::idp::{Op, bearer_client};
use common::recorder::{self, RecorderEra};
use common::*;
use gatehouse_testkit::{Era, HttpFixture, HttpOptions};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://gatehouse.test/mcp";

/// Alice and Bob may run the fixture's task tool and read the watched resource; Bob may
/// trigger the fixture's list and resource changes.
const POLICY: &str = r#"
permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"v/slow_compute")
when { principal.sub == "alice" || principal.sub == "bob" };
permit (principal, action == Gatehouse::Action::"read_resource", resource == Gatehouse::Resource::"v/test://watched-resource");
permit (principal, action == Gatehouse::Action::"call_tool", resource)
when { principal.sub == "bob" && resource.name like "test_trigger_*" };
"#;

fn tasks_caps() -> Value {
    json!({"extensions": {"io.modelcontextprotocol/tasks": {}}})
}

/// A gateway whose virtual server `v` at `/mcp` fronts the fixture (one global task store,
/// as many servers keep) and the demo server, behind `auth` and `policy`.
struct Setup {
    op: Op,
    gh: Gatehouse,
    url: String,
    dir: tempfile::TempDir,
    _fixture: HttpFixture,
}

async fn setup(policy: &str) -> Setup {
    let op = Op::start();
    let fixture = HttpFixture::start(
        "127.0.0.1:0".parse().unwrap(),
        &HttpOptions {
            era: Era::Both,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.cedar"), policy).unwrap();
    let yaml = format!(
        r#"servers:
  - name: fx
    url: {fixture}
  - name: demo
    command: {bin}
    args: [demo-server]
virtual_servers:
  - name: v
    path: /mcp
    include: [{{ server: fx }}, {{ server: demo }}]
    auth: {{ issuer: "{issuer}", audience: "{AUDIENCE}" }}
policies:
  engine: cedar
  paths: [p.cedar]
"#,
        fixture = fixture.url,
        bin = bin().display(),
        issuer = op.issuer,
    );
    let cfg = write_config(dir.path(), &yaml);
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let url = gh.url("/mcp");
    Setup {
        op,
        gh,
        url,
        dir,
        _fixture: fixture,
    }
}

impl Setup {
    async fn user(&self, who: &str) -> reqwest::Client {
        bearer_client(&self.op.user_token(who, AUDIENCE, "openid").await)
    }

    /// Replaces the policy set and waits until the gateway runs it.
    async fn repolicy(&self, policy: &str, reloads: usize) {
        std::fs::write(self.dir.path().join("p.cedar"), policy).unwrap();
        let gh = &self.gh;
        assert!(
            eventually(Duration::from_secs(15), || gh
                .log
                .lock()
                .unwrap()
                .matches("configuration reloaded")
                .count()
                >= reloads)
            .await,
            "the policy edit was not applied"
        );
    }
}

/// A legacy (2025-06-18) session for `http` that declares the tasks capability.
async fn legacy_session(http: reqwest::Client, url: &str) -> Legacy {
    Legacy::connect_with(http, url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_belongs_to_the_caller_that_created_it_in_both_eras() {
    let s = setup(POLICY).await;
    let (alice, bob) = (s.user("alice").await, s.user("bob").await);

    let (_, created) = modern_with(
        &bob,
        &s.url,
        1,
        "tools/call",
        json!({"name": "slow_compute", "arguments": {"seconds": 30, "label": "bob's"}}),
        tasks_caps(),
    )
    .await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let handle = created["result"]["taskId"].as_str().unwrap().to_string();
    assert!(handle.starts_with("gatehouse-task."), "{handle}");

    // What a task id that never existed gets.
    let (_, never) = modern_with(
        &alice,
        &s.url,
        2,
        "tasks/get",
        json!({"taskId": "gatehouse-task.0.AAAA"}),
        tasks_caps(),
    )
    .await;
    assert_eq!(never["error"]["code"], -32602, "{never}");

    // Alice holds Bob's handle: in either era, to get it or to cancel it, it does not exist.
    let legacy_alice = legacy_session(alice.clone(), &s.url).await;
    for (i, method) in ["tasks/get", "tasks/cancel"].into_iter().enumerate() {
        let (_, r) = modern_with(
            &alice,
            &s.url,
            10 + i as i64,
            method,
            json!({"taskId": handle}),
            tasks_caps(),
        )
        .await;
        assert_eq!(r["error"], never["error"], "2026-07-28 {method}: {r}");
        let (_, r) = legacy_alice
            .request(20 + i as i64, method, json!({"taskId": handle}))
            .await;
        assert_eq!(r["error"], never["error"], "2025 {method}: {r}");
    }
    // A member-side id, guessed or taken from elsewhere, is no handle either.
    for guess in [
        "1",
        "fx:1",
        "task-1",
        handle.trim_start_matches("gatehouse-task."),
    ] {
        let (_, r) = modern_with(
            &alice,
            &s.url,
            30,
            "tasks/get",
            json!({"taskId": guess}),
            tasks_caps(),
        )
        .await;
        assert_eq!(r["error"], never["error"], "{guess}: {r}");
    }

    // Bob's task was neither read nor cancelled by Alice: it still runs, and it is his.
    let (_, got) = modern_with(
        &bob,
        &s.url,
        40,
        "tasks/get",
        json!({"taskId": handle}),
        tasks_caps(),
    )
    .await;
    assert_eq!(got["result"]["taskId"], handle.as_str(), "{got}");
    assert_eq!(got["result"]["status"], "working", "{got}");
    let (_, cancelled) = modern_with(
        &bob,
        &s.url,
        41,
        "tasks/cancel",
        json!({"taskId": handle}),
        tasks_caps(),
    )
    .await;
    assert!(
        cancelled["error"].is_null(),
        "the owner cancels: {cancelled}"
    );
    // A 2026-07-28 client that did not negotiate tasks has none.
    let (status, r) = modern(&bob, &s.url, 42, "tasks/get", json!({"taskId": handle})).await;
    assert_eq!(
        (status, r["error"]["code"].clone()),
        (400, json!(-32021)),
        "{r}"
    );
}

/// Reads a listen stream's acknowledgement.
async fn listen(http: &reqwest::Client, url: &str, uris: &[&str]) -> (reqwest::Response, Value) {
    let body = json!({"jsonrpc":"2.0","id":"sub-1","method":"subscriptions/listen","params":{
        "notifications": {"toolsListChanged": true, "resourceSubscriptions": uris},
        "_meta": {"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    let mut stream = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let text = read_until(&mut stream, "subscriptions/acknowledged").await;
    let ack = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find(|l| l.contains("acknowledged"))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .unwrap_or_else(|| panic!("no acknowledgement: {text}"));
    (stream, ack)
}

async fn trigger_update(bob: &reqwest::Client, url: &str, id: i64) {
    let (_, r) = modern(
        bob,
        url,
        id,
        "tools/call",
        json!({"name": "test_trigger_resource_update", "arguments": {}}),
    )
    .await;
    assert!(r["result"].is_object(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_decided_as_reads_when_made_and_when_policies_change() {
    let s = setup(POLICY).await;
    let (alice, bob) = (s.user("alice").await, s.user("bob").await);
    let watched = "test://watched-resource";

    // 2026-07-28: the acknowledgement lists only what Alice may read and a member serves; a
    // refused URI and an unknown one are both left out.
    let (mut stream, ack) = listen(
        &alice,
        &s.url,
        &[watched, "test://static-text", "test://no-such-resource"],
    )
    .await;
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!([watched]),
        "{ack}"
    );
    // 2025: a resource Alice may not read cannot be subscribed to.
    let legacy = legacy_session(alice.clone(), &s.url).await;
    let (_, denied) = legacy
        .request(
            1,
            "resources/subscribe",
            json!({"uri": "test://static-text"}),
        )
        .await;
    assert_eq!(denied["error"]["code"], -32602, "{denied}");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Resource not found"),
        "{denied}"
    );
    let (_, ok) = legacy
        .request(2, "resources/subscribe", json!({"uri": watched}))
        .await;
    assert!(ok["result"].is_object(), "{ok}");
    // Unsubscribing from what it never subscribed to is a no-op for the caller.
    let (_, noop) = legacy
        .request(
            3,
            "resources/unsubscribe",
            json!({"uri": "test://static-text"}),
        )
        .await;
    assert!(noop["result"].is_object(), "{noop}");
    let mut get = legacy.open_stream().await;

    trigger_update(&bob, &s.url, 4).await;
    let seen = read_until(&mut stream, "notifications/resources/updated").await;
    assert!(seen.contains(watched), "listen stream: {seen}");
    let seen = read_until(&mut get, "notifications/resources/updated").await;
    assert!(seen.contains(watched), "GET stream: {seen}");

    // Alice may no longer read it: the updates stop on both streams.
    let revoked = POLICY.replace(
        "permit (principal, action == Gatehouse::Action::\"read_resource\"",
        "permit (principal, action == Gatehouse::Action::\"read_resource\", resource) when { principal.sub == \"bob\" };\n// was: permit (principal, action == Gatehouse::Action::\"read_resource\"",
    );
    assert_ne!(revoked, POLICY);
    s.repolicy(&revoked, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    trigger_update(&bob, &s.url, 5).await;
    let quiet = read_for(&mut stream, Duration::from_secs(2)).await;
    assert!(
        !quiet.contains("resources/updated"),
        "listen stream: {quiet}"
    );
    let quiet = read_for(&mut get, Duration::from_millis(500)).await;
    assert!(!quiet.contains("resources/updated"), "GET stream: {quiet}");
}

/// Fills the parameters any method of the table might need.
fn params_for(method: &str) -> Value {
    json!({
        "name": "probe",
        "uri": "test://doc",
        "ref": {"type": "ref/prompt", "name": "greeting"},
        "argument": {"name": "a", "value": "b"},
        "taskId": "task-1",
        "level": "info",
        "arguments": {},
        "notifications": {"toolsListChanged": true, "resourceSubscriptions": ["test://doc"]},
        "requestId": 1,
        "progressToken": "p",
        "progress": 1,
        "x-method": method,
    })
}

/// Every method the gateway might be sent: the table's, both eras' (test data of the
/// gateway crate), and methods nobody knows.
fn every_method() -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for e in gatehouse_gateway::methods::TABLE {
        out.push((
            e.kind == gatehouse_wire::MessageKind::Request,
            e.method.to_string(),
        ));
    }
    for text in [
        include_str!("../../gateway/src/methods/data/methods-2025-11-25.txt"),
        include_str!("../../gateway/src/methods/data/methods-2026-07-28.txt"),
    ] {
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (kind, method) = line.split_once(' ').unwrap();
            out.push((kind == "request", method.to_string()));
        }
    }
    for unknown in ["vendor/custom", "tools/cal", "tasks/everything", "x"] {
        out.push((true, unknown.to_string()));
        out.push((false, format!("notifications/{unknown}")));
    }
    out.sort();
    out.dedup();
    out
}

/// What a member may see of a caller under a policy set that allows nothing: the protocol's
/// own plumbing and the gateway's catalog fetches — never an item, a task or a method the
/// table does not know.
const PLUMBING: &[&str] = &[
    "initialize",
    "notifications/initialized",
    "server/discover",
    "ping",
    "logging/setLevel",
    "notifications/roots/list_changed",
    "notifications/progress",
    "notifications/cancelled",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "subscriptions/listen",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_deny_everything_set_no_member_receives_an_item_or_unknown_method() {
    for era in [RecorderEra::Handshake, RecorderEra::Stateless] {
        let (backend, seen) = recorder::start(era).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("none.cedar"), "// Nothing is permitted.\n").unwrap();
        let cfg = write_config(
            dir.path(),
            &format!(
                "servers:\n  - name: rec\n    url: {backend}\nvirtual_servers:\n  - name: v\n    path: /mcp\n    include:\n      - server: rec\npolicies:\n  engine: cedar\n  paths: [none.cedar]\n"
            ),
        );
        let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
        let url = gh.url("/mcp");
        let http = client();
        let legacy = Legacy::connect(&url).await;
        let mut id = 100;
        for (request, method) in every_method() {
            id += 1;
            let mut body = json!({"jsonrpc":"2.0","method":method,"params":params_for(&method)});
            if request {
                body["id"] = json!(id);
            }
            // The 2025 era, on a session.
            let _ = legacy.post_raw(&body).await.text().await;
            // The 2026-07-28 era, stateless.
            let mut modern_body = body.clone();
            modern_body["params"]["_meta"] = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": tasks_caps()});
            let mut headers = vec![("mcp-protocol-version", "2026-07-28".to_string())];
            if request {
                headers.push(("mcp-method", method.clone()));
                if matches!(method.as_str(), "tools/call" | "prompts/get") {
                    headers.push(("mcp-name", "probe".into()));
                }
                if method == "resources/read" {
                    headers.push(("mcp-name", "test://doc".into()));
                }
            }
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if method == "subscriptions/listen" {
                // A stream: read its acknowledgement only.
                let (mut stream, _) = listen(&http, &url, &["test://doc"]).await;
                let _ = read_for(&mut stream, Duration::from_millis(100)).await;
            } else {
                let _ = post(&http, &url, &hs, &modern_body).await;
            }
        }
        // Lists are filtered to nothing: the catalog's fetches reach no caller.
        let (_, list) = legacy.request(1, "tools/list", json!({})).await;
        assert_eq!(list["result"]["tools"], json!([]), "{list}");
        let (_, list) = modern(&http, &url, 2, "tools/list", json!({})).await;
        assert_eq!(list["result"]["tools"], json!([]), "{list}");
        drop(gh);
        let received = recorder::methods(&seen);
        let leaked: Vec<&String> = received
            .iter()
            .filter(|m| !PLUMBING.contains(&m.as_str()))
            .collect();
        assert!(
            leaked.is_empty(),
            "{era:?}: members received {leaked:?} under a deny-everything set"
        );
        assert!(
            received.iter().any(|m| m == "tools/list"),
            "{era:?}: the catalog was fetched: {received:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changed_reaches_only_callers_whose_view_changed() {
    let s = setup(POLICY).await;
    let (alice, bob) = (s.user("alice").await, s.user("bob").await);
    let (mut alice_listen, _) = listen(&alice, &s.url, &[]).await;
    let (mut bob_listen, _) = listen(&bob, &s.url, &[]).await;
    let alice_legacy = legacy_session(alice.clone(), &s.url).await;
    let mut alice_get = alice_legacy.open_stream().await;
    let (_, before) = modern(&alice, &s.url, 1, "tools/list", json!({})).await;
    assert_eq!(tool_names(&before), ["slow_compute"], "{before}");

    // Bob changes a tool only he can see: his view changes, Alice's does not.
    let (_, r) = modern(
        &bob,
        &s.url,
        2,
        "tools/call",
        json!({"name": "test_trigger_tool_change", "arguments": {}}),
    )
    .await;
    assert!(r["result"].is_object(), "{r}");
    let seen = read_until(&mut bob_listen, "notifications/tools/list_changed").await;
    assert!(
        seen.contains("notifications/tools/list_changed") && seen.contains("sub-1"),
        "{seen}"
    );
    let quiet = read_for(&mut alice_listen, Duration::from_secs(2)).await;
    assert!(
        !quiet.contains("list_changed"),
        "alice's listen stream: {quiet}"
    );
    let quiet = read_for(&mut alice_get, Duration::from_millis(500)).await;
    assert!(
        !quiet.contains("list_changed"),
        "alice's GET stream: {quiet}"
    );
}
