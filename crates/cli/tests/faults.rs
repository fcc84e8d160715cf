//! Faults: a backend process killed mid-call, a remote backend that is down, shutdown with no
//! orphans, and many concurrent sessions without leaks.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test]
async fn killed_stdio_backend_fails_the_call_and_restarts() {
    let gh = Gatehouse::start(&[]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    // Start the demo process and learn its pid.
    legacy.request(1, "tools/list", json!({})).await;
    let kids = children(gh.child.id());
    assert_eq!(
        kids.len(),
        1,
        "one shared demo process for anonymous callers: {kids:?}"
    );
    let slow = {
        let session = Legacy {
            url: legacy.url.clone(),
            session: legacy.session.clone(),
            http: client(),
        };
        tokio::spawn(async move {
            let started = Instant::now();
            let r = session
                .request(
                    2,
                    "tools/call",
                    json!({"name":"countdown","arguments":{"seconds":30}}),
                )
                .await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    unsafe_kill(kids[0] as i32, 9);
    let ((status, body), took) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], -32000, "{body}");
    // A stable message and the request id for the client; the exit status in the log.
    let request_id = body["error"]["data"]["requestId"].as_str().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed during the call"),
        "{body}"
    );
    // The log is read from the gateway's stderr as it comes: give the lines a moment.
    assert!(
        eventually(Duration::from_secs(5), || gh.logged(request_id)
            && gh.logged("exited"))
        .await,
        "the details are logged"
    );
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SIGKILL"),
        "{body}"
    );
    assert!(
        took < Duration::from_secs(10),
        "error arrives promptly, took {took:?}"
    );
    assert_eq!(legacy.echo(3, "back").await, "back", "restarted");
    let again = children(gh.child.id());
    assert_eq!(again.len(), 1);
    assert_ne!(again[0], kids[0]);
}

#[tokio::test]
async fn remote_backend_down_leaves_others_working() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = demo_member_yaml("      - server: gone\n        prefix: gone_\n")
        .replace("virtual_servers:", &format!("  - name: gone\n    url: http://127.0.0.1:{port}/mcp\n    timeout: 5s\nvirtual_servers:"));
    let cfg = write_config(dir.path(), &yaml);
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let (s, list) = legacy.request(1, "tools/list", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(
        tool_names(&list),
        vec!["add", "countdown", "echo"],
        "down member's tools are missing, not the list"
    );
    let (_, r) = legacy
        .request(
            2,
            "tools/call",
            json!({"name":"gone_anything","arguments":{}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("\"gone\""),
        "names the member: {r}"
    );
    assert_eq!(legacy.echo(3, "still").await, "still");
}

#[tokio::test]
async fn sigterm_drains_and_leaves_no_orphans() {
    let mut gh = Gatehouse::start(&[]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    legacy.request(1, "tools/list", json!({})).await;
    let kids = children(gh.child.id());
    assert_eq!(kids.len(), 1);
    let inflight = tokio::spawn(async move {
        legacy
            .request(
                2,
                "tools/call",
                json!({"name":"countdown","arguments":{"seconds":1}}),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = gh.terminate(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{status:?}");
    let (s, r) = inflight.await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        r["result"]["content"][0]["text"], "countdown of 1 s finished",
        "in-flight call drained: {r}"
    );
    assert!(
        eventually(Duration::from_secs(5), || !alive(kids[0])).await,
        "demo process {} outlived the gateway",
        kids[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_sessions() {
    // A thousand connections from this one address: above the default cap per address.
    let dir = tempfile::tempdir().unwrap();
    let gh = start_with_gateway(&dir, "  connections:\n    max_per_ip: 2000\n");
    let url = gh.url("/mcp");
    // Warm up: the shared backend process.
    Legacy::connect(&url)
        .await
        .request(0, "tools/list", json!({}))
        .await;
    let fds_before = fd_count(gh.child.id());
    // Ten clients on their own addresses, each within gateway.sessions.max_per_principal
    // (100 per anonymous address by default).
    let clients: Vec<reqwest::Client> = (1..=10u8)
        .map(|n| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 1, n]))
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap()
        })
        .collect();
    let tasks = (0..1000).map(|i| {
        let http = clients[i % clients.len()].clone();
        let url = url.clone();
        async move {
            let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"load","version":"1"}}});
            let (s, h, _) = post(&http, &url, &[], &init).await;
            assert_eq!(s, 200);
            let sid = h.get("mcp-session-id").unwrap().to_str().unwrap().to_string();
            let session = Legacy { url, session: sid, http };
            let (s, r) = session.request(1, "tools/call", json!({"name":"echo","arguments":{"text": format!("n{i}")}})).await;
            (s, r["result"]["content"][0]["text"] == format!("n{i}"))
        }
    });
    let results = futures::future::join_all(tasks).await;
    let ok = results
        .iter()
        .filter(|(s, good)| *s == 200 && *good)
        .count();
    assert_eq!(ok, 1000, "every session got its own answer");
    assert_eq!(
        children(gh.child.id()).len(),
        1,
        "no extra processes for anonymous sessions"
    );
    drop(clients);
    let settled = eventually(Duration::from_secs(10), || {
        fd_count(gh.child.id()) <= fds_before + 8
    })
    .await;
    assert!(
        settled,
        "file descriptors leaked: before {fds_before}, after {}",
        fd_count(gh.child.id())
    );
}

#[tokio::test]
async fn idle_stdio_process_is_reaped_and_restarted_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &demo_member_yaml("").replace(
            "    args: [demo-server]\n",
            "    args: [demo-server]\n    idle_timeout: 2s\n",
        ),
    );
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    legacy.request(1, "tools/list", json!({})).await;
    let first = children(gh.child.id());
    assert_eq!(first.len(), 1);
    assert!(
        eventually(Duration::from_secs(10), || children(gh.child.id())
            .is_empty())
        .await,
        "idle process reaped"
    );
    assert!(gh.logged("reaping idle stdio server"));
    let (_, r) = legacy
        .request(
            2,
            "tools/call",
            json!({"name":"echo","arguments":{"text":"again"}}),
        )
        .await;
    assert_eq!(
        r["result"]["content"][0]["text"], "again",
        "started again on demand: {r}"
    );
}

#[tokio::test]
async fn oversized_message_from_a_stdio_server_stops_it_not_the_gateway() {
    // A "server" that answers initialize and then writes one line larger than the 64 MiB limit.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("flood.py");
    std::fs::write(
        &script,
        "import sys, json\nfor line in sys.stdin:\n    m = json.loads(line)\n    if m.get('method') == 'server/discover':\n        print(json.dumps({'jsonrpc':'2.0','id':m['id'],'error':{'code':-32601,'message':'no'}}), flush=True)\n    elif m.get('method') == 'initialize':\n        print(json.dumps({'jsonrpc':'2.0','id':m['id'],'result':{'protocolVersion':'2025-06-18','capabilities':{'tools':{}},'serverInfo':{'name':'flood','version':'1'}}}), flush=True)\n    elif m.get('method') == 'tools/list':\n        sys.stdout.write('{\"x\":\"' + 'a' * (65 * 1024 * 1024)); sys.stdout.flush()\n",
    )
    .unwrap();
    let yaml = demo_member_yaml("      - server: flood\n        prefix: f_\n").replace(
        "virtual_servers:",
        &format!(
            "  - name: flood\n    command: python3\n    args: [{}]\nvirtual_servers:",
            serde_json::to_string(&script.display().to_string()).unwrap()
        ),
    );
    let cfg = write_config(dir.path(), &yaml);
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let (s, list) = legacy.request(1, "tools/list", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(
        tool_names(&list),
        vec!["add", "countdown", "echo"],
        "the flooding member's tools are missing: {list}"
    );
    assert!(gh.logged("over the size limit"), "the flood was detected");
    assert_eq!(legacy.echo(2, "fine").await, "fine");
}
