//! Hot reload: a valid edit applies without restart; an invalid edit is rejected and the
//! running config keeps serving.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn config_edits_apply_live_and_invalid_ones_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &demo_member_yaml(""));
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let (_, list) = legacy.request(1, "tools/list", json!({})).await;
    assert_eq!(tool_names(&list), vec!["add", "countdown", "echo"]);
    let pid_before = children(gh.child.id());

    // Invalid edit: rejected, old config keeps serving.
    std::fs::write(&cfg, "servers: [oops\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, list) = legacy.request(2, "tools/list", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(tool_names(&list), vec!["add", "countdown", "echo"]);

    // Valid edit: a prefix, a rename, an allow-list and a description override.
    let edited = demo_member_yaml("").replace(
        "      - server: demo\n",
        "      - server: demo\n        tools: [echo, add]\n        prefix: demo_\n        rename: { echo: say }\n        describe: { add: \"Sum two numbers\" }\n",
    );
    std::fs::write(&cfg, edited).unwrap();
    let mut names = Vec::new();
    for i in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, list) = legacy.request(10 + i, "tools/list", json!({})).await;
        names = tool_names(&list);
        if names.contains(&"demo_say".to_string()) {
            let add = list["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == "demo_add")
                .unwrap()
                .clone();
            assert_eq!(add["description"], "Sum two numbers");
            break;
        }
    }
    assert_eq!(names, vec!["demo_add", "demo_say"]);
    let (_, r) = legacy
        .request(
            100,
            "tools/call",
            json!({"name":"demo_say","arguments":{"text":"renamed"}}),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "renamed");
    let (_, r) = legacy
        .request(
            101,
            "tools/call",
            json!({"name":"countdown","arguments":{"seconds":1}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32602, "filtered tool is gone: {r}");
    assert_eq!(
        children(gh.child.id()),
        pid_before,
        "unchanged server keeps its process across reloads"
    );
}

#[tokio::test]
async fn in_flight_call_survives_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &demo_member_yaml(""));
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    legacy.request(1, "tools/list", json!({})).await;
    let old = children(gh.child.id());
    assert_eq!(old.len(), 1);
    let session = Legacy {
        url: legacy.url.clone(),
        session: legacy.session.clone(),
        http: client(),
    };
    let call = tokio::spawn(async move {
        session
            .request(
                2,
                "tools/call",
                json!({"name":"countdown","arguments":{"seconds":3}}),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Change the server entry itself (its environment): the new snapshot gets a new process,
    // the in-flight call finishes on the old one.
    let changed = demo_member_yaml("").replace(
        "    args: [demo-server]\n",
        "    args: [demo-server]\n    env: { DEMO_GENERATION: \"2\" }\n",
    );
    std::fs::write(&cfg, changed).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || gh
            .logged("configuration reloaded"))
        .await
    );
    let (s, r) = call.await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        r["result"]["content"][0]["text"], "countdown of 3 s finished",
        "in-flight call completed on the old snapshot: {r}"
    );
    assert_eq!(legacy.echo(3, "new").await, "new");
    assert!(
        eventually(Duration::from_secs(5), || !alive(old[0])).await,
        "the retired process stops once its calls finished"
    );
}

/// The reload boundary: one edit changes a setting that follows reloads (`session_ttl`,
/// `max_body_bytes`) and a start-only one (`admin.listen`). The first applies to the running
/// process; the second keeps its running value, and both the log line and the `config.change`
/// audit event name it as waiting for a restart.
#[tokio::test]
async fn a_reload_applies_session_ttl_and_names_the_admin_listener_as_waiting_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!("gateway:\n  session_ttl: 24h\n{}", demo_member_yaml("")),
    );
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    assert_eq!(legacy.echo(1, "before").await, "before");
    let big = "x".repeat(4096);
    assert_eq!(
        legacy.echo(2, &big).await,
        big.as_str(),
        "4 KiB fits the default"
    );

    // A port nothing listens on; the reload must not make it listen.
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_addr = admin.local_addr().unwrap();
    drop(admin);
    std::fs::write(
        &cfg,
        format!(
            "gateway:\n  session_ttl: 1s\n  max_body_bytes: 2048\nadmin:\n  listen: {admin_addr}\n{}",
            demo_member_yaml("")
        ),
    )
    .unwrap();
    let waiting = "these settings keep their running values until a restart: admin.listen";
    assert!(
        eventually(Duration::from_secs(10), || gh.logged(waiting)).await,
        "the reload's log line names the start-only setting"
    );

    // Follows: the body limit at once, the session lifetime for the session already open.
    let (status, _) = legacy
        .request(
            3,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": big}}),
        )
        .await;
    assert_eq!(status, 413, "the reloaded gateway.max_body_bytes applies");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, body) = legacy.request(4, "ping", json!({})).await;
    assert_eq!(
        status, 404,
        "the session outlived the reloaded session_ttl: {body}"
    );

    // Start-only: nothing listens on the new admin address.
    assert!(
        std::net::TcpStream::connect_timeout(&admin_addr, Duration::from_millis(500)).is_err(),
        "admin.listen changed by a reload must wait for a restart"
    );
    let change = audit_events(gh.data_dir.path())
        .into_iter()
        .find(|e| e["type"] == "config.change" && e["outcome"] == "ok")
        .expect("a config.change event for the reload");
    assert_eq!(
        change["detail"]["restart_needed"],
        json!(["admin.listen"]),
        "{change}"
    );
}
