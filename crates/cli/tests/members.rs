//! Virtual-server membership: run-time name clashes, fail-closed members, and a session whose
//! member is a remote handshake-era server surviving a gateway restart (the sealed session id
//! carries the upstream session).

mod common;

use std::time::Duration;

use common::*;
use gatehouse_testkit::{Era, HttpFixture, HttpOptions};
use serde_json::json;

/// The conformance fixture, in this process, on an ephemeral port.
async fn fixture(era: Era) -> HttpFixture {
    HttpFixture::start(
        "127.0.0.1:0".parse().unwrap(),
        &HttpOptions {
            era,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// A config whose only virtual server (`/mcp`) fronts the fixture at `url`.
fn fixture_only_yaml(url: &str) -> String {
    format!(
        "servers:\n  - name: fx\n    url: {url}\nvirtual_servers:\n  - name: v\n    path: /mcp\n    include:\n      - server: fx\n"
    )
}

#[tokio::test]
async fn first_include_wins_a_runtime_name_clash() {
    let dir = tempfile::tempdir().unwrap();
    // Two members exposing the same tool names; only discoverable at run time (no allow-lists).
    let yaml = demo_member_yaml("      - server: demo2\n")
        .replace("virtual_servers:", &format!("  - name: demo2\n    command: {}\n    args: [demo-server]\n    env: {{ SECOND: \"1\" }}\nvirtual_servers:", serde_json::to_string(&bin().display().to_string()).unwrap()));
    let cfg = write_config(dir.path(), &yaml);
    let out = std::process::Command::new(bin())
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a clash that is not visible in the config is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let (_, list) = legacy.request(1, "tools/list", json!({})).await;
    assert_eq!(
        tool_names(&list),
        vec!["add", "countdown", "echo"],
        "each name once"
    );
    assert!(
        eventually(Duration::from_secs(5), || gh
            .logged("the first include wins"))
        .await,
        "clash logged"
    );
    assert_eq!(legacy.echo(2, "x").await, "x");
}

#[tokio::test]
async fn fail_closed_member_fails_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = demo_member_yaml("      - server: gone\n")
        .replace(
            "    path: /mcp\n",
            "    path: /mcp\n    fail_closed: true\n",
        )
        .replace(
            "virtual_servers:",
            &format!("  - name: gone\n    url: http://127.0.0.1:{port}/mcp\nvirtual_servers:"),
        );
    let cfg = write_config(dir.path(), &yaml);
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let (_, list) = legacy.request(1, "tools/list", json!({})).await;
    assert_eq!(list["error"]["code"], -32000, "{list}");
    assert!(
        list["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"gone\""),
        "{list}"
    );
}

// Multi-threaded: the fixture runs in this process and must keep serving while the test
// thread blocks waiting for the gateway to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_member_session_survives_a_gateway_restart() {
    let fixture = fixture(Era::Legacy).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = fixture_only_yaml(&fixture.url);
    let cfg = write_config(dir.path(), &yaml);
    let mut gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let (_, r) = legacy
        .request(
            1,
            "tools/call",
            json!({"name":"test_simple_text","arguments":{}}),
        )
        .await;
    let expected = r["result"]["content"][0]["text"].clone();
    assert!(expected.is_string(), "{r}");
    // Subscribe on the upstream session, then restart the gateway with the same data dir.
    let (_, r) = legacy
        .request(
            2,
            "resources/subscribe",
            json!({"uri":"test://static-text"}),
        )
        .await;
    assert!(r["result"].is_object(), "{r}");
    assert!(
        gh.terminate(Duration::from_secs(15))
            .expect("exits")
            .success()
    );
    let data_dir = std::mem::replace(&mut gh.data_dir, tempfile::tempdir().unwrap());
    let gh2 = Gatehouse::start_in(&["--config", cfg.to_str().unwrap()], data_dir);
    let legacy = Legacy {
        url: gh2.url("/mcp"),
        ..legacy
    };
    let (s, r) = legacy
        .request(
            3,
            "tools/call",
            json!({"name":"test_simple_text","arguments":{}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        r["result"]["content"][0]["text"], expected,
        "served on the carried upstream session: {r}"
    );
    assert!(
        !gh2.logged("upstream session expired"),
        "the upstream session was reused, not replaced"
    );
    drop(gh2);
    fixture.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_ids_route_to_the_member_that_created_the_task() {
    let fixture = fixture(Era::Modern).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = demo_member_yaml("      - server: fx\n").replace(
        "virtual_servers:",
        &format!("  - name: fx\n    url: {}\nvirtual_servers:", fixture.url),
    );
    let cfg = write_config(dir.path(), &yaml);
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let url = gh.url("/mcp");
    let http = client();
    let caps = json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    let request = |id: i64, method: &'static str, mut params: serde_json::Value| {
        let http = http.clone();
        let url = url.clone();
        let caps = caps.clone();
        async move {
            params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities": caps});
            let name = params
                .get("name")
                .or_else(|| params.get("taskId"))
                .and_then(|v| v.as_str())
                .map(str::to_string);
            let mut headers = vec![
                ("mcp-protocol-version", "2026-07-28".to_string()),
                ("mcp-method", method.to_string()),
            ];
            if let Some(n) = name {
                headers.push(("mcp-name", n));
            }
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(
                &http,
                &url,
                &hs,
                &json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}),
            )
            .await
            .2
        }
    };
    let created = request(
        1,
        "tools/call",
        json!({"name":"slow_compute","arguments":{"seconds":1,"label":"routing"}}),
    )
    .await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let task_id = created["result"]["taskId"].as_str().unwrap().to_string();
    assert!(
        task_id.starts_with("gatehouse-task."),
        "a handle sealed for the caller, naming the member: {task_id}"
    );
    let got = request(2, "tasks/get", json!({"taskId": task_id})).await;
    assert_eq!(
        got["result"]["taskId"], task_id,
        "routed to the fixture and sealed again to the same handle: {got}"
    );
    assert!(got["result"]["status"].is_string(), "{got}");
    let unknown = request(3, "tasks/get", json!({"taskId": "nope"})).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    // The member's own id, as a client might guess it, is not a task either.
    let bare = task_id.clone();
    let forged = request(
        4,
        "tasks/get",
        json!({"taskId": format!("fx:{}", &bare[bare.len() - 8..])}),
    )
    .await;
    assert_eq!(forged["error"], unknown["error"], "{forged}");
    drop(gh);
    fixture.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_updates_from_a_stateless_member_reach_a_subscribed_legacy_client() {
    let fixture = fixture(Era::Modern).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = fixture_only_yaml(&fixture.url);
    let cfg = write_config(dir.path(), &yaml);
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    // The client's standalone stream, where server-initiated notifications arrive.
    let mut stream = legacy.open_stream().await;
    let (_, r) = legacy
        .request(
            1,
            "resources/subscribe",
            json!({"uri":"test://watched-resource"}),
        )
        .await;
    assert!(r["result"].is_object(), "acknowledged: {r}");
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut n = 2;
    while !seen.contains("notifications/resources/updated") && std::time::Instant::now() < deadline
    {
        // The gateway re-listens at the member with the new URI asynchronously: trigger until
        // the update flows.
        legacy
            .request(
                n,
                "tools/call",
                json!({"name":"test_trigger_resource_update","arguments":{}}),
            )
            .await;
        n += 1;
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(
        seen.contains("notifications/resources/updated"),
        "update relayed: {seen}"
    );
    assert!(seen.contains("test://watched-resource"), "{seen}");
    assert!(gh.logged("watching a resource for subscribed clients"));
    drop(stream);
    // Ending the session releases what the gateway held at the member on its behalf.
    let del = legacy
        .http
        .delete(&legacy.url)
        .header("mcp-session-id", &legacy.session)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    assert!(
        eventually(Duration::from_secs(5), || gh
            .logged("no client subscribes to this resource any more"))
        .await
    );
    drop(gh);
    fixture.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_member_closes_early_is_resumed() {
    // The fixture's test_reconnection closes the response stream after its priming event and
    // delivers the result only to a GET with Last-Event-ID (2025-11-25 SSE polling).
    let fixture = fixture(Era::Legacy).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &fixture_only_yaml(&fixture.url));
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let (s, r) = legacy
        .request(
            1,
            "tools/call",
            json!({"name":"test_reconnection","arguments":{}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        r["result"]["content"][0]["text"], "Reconnection test completed",
        "{r}"
    );
    drop(gh);
    fixture.shutdown().await.unwrap();
}

/// On the legacy HTTP+SSE transport too, a client hears of a resource only if it subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_clients_hear_only_of_resources_they_subscribed_to() {
    let fixture = fixture(Era::Modern).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &fixture_only_yaml(&fixture.url));
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let http = client();
    let (mut subscribed, a) = legacy_sse(&http, &gh, "/mcp").await;
    let (mut other, b) = legacy_sse(&http, &gh, "/mcp").await;
    let subscribe = json!({"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"test://watched-resource"}});
    assert_eq!(post(&http, &a, &[], &subscribe).await.0, 202);
    let mut seen = String::new();
    for n in 2..30 {
        let trigger = json!({"jsonrpc":"2.0","id":n,"method":"tools/call","params":{"name":"test_trigger_resource_update","arguments":{}}});
        post(&http, &b, &[], &trigger).await;
        seen.push_str(&read_for(&mut subscribed, Duration::from_millis(500)).await);
        if seen.contains("notifications/resources/updated") {
            break;
        }
    }
    assert!(seen.contains("notifications/resources/updated"), "{seen}");
    let quiet = read_for(&mut other, Duration::from_secs(1)).await;
    assert!(!quiet.contains("resources/updated"), "{quiet}");
    drop(gh);
    fixture.shutdown().await.unwrap();
}

/// A session that expires releases its subscriptions as a DELETE does: what the gateway holds
/// at a stateless member for it is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_releases_its_subscriptions() {
    let fixture = fixture(Era::Modern).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "gateway:\n  sessions:\n    idle_timeout: 2s\n{}",
        fixture_only_yaml(&fixture.url)
    );
    let cfg = write_config(dir.path(), &yaml);
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let (_, r) = legacy
        .request(
            1,
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await;
    assert!(r["result"].is_object(), "{r}");
    assert!(gh.logged("watching a resource for subscribed clients"));
    assert!(
        eventually(Duration::from_secs(10), || gh
            .logged("no client subscribes to this resource any more"))
        .await,
        "the idle session's subscription was not released"
    );
    let (status, _) = legacy.request(2, "tools/list", json!({})).await;
    assert_eq!(status, 404, "the session expired");
    drop(gh);
    fixture.shutdown().await.unwrap();
}
