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
