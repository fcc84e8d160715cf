//! Progress relay on SSE responses and cancellation reaching the backend.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn progress_is_relayed_on_the_response_stream() {
    let gh = Gatehouse::start(&[]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"countdown","arguments":{"seconds":2},"_meta":{"progressToken":"tok-1"}}});
    let resp = legacy.post_raw(&body).await;
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    let msgs: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let progress: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{msgs:?}");
    assert_eq!(
        progress[0]["params"]["progressToken"], "tok-1",
        "client's own token restored"
    );
    assert_eq!(progress[1]["params"]["progress"], 2.0);
    let last = msgs.last().unwrap();
    assert_eq!(last["id"], 7);
    assert_eq!(
        last["result"]["content"][0]["text"],
        "countdown of 2 s finished"
    );
}

#[tokio::test]
async fn cancellation_reaches_the_backend() {
    let gh = Gatehouse::start(&[]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let session = Legacy {
        url: legacy.url.clone(),
        session: legacy.session.clone(),
        http: client(),
    };
    let started = Instant::now();
    let call = tokio::spawn(async move {
        session
            .request(
                5,
                "tools/call",
                json!({"name":"countdown","arguments":{"seconds":30}}),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5,"reason":"user"}});
    let (s, _, _) = post(
        &legacy.http,
        &legacy.url,
        &[
            ("mcp-session-id", &legacy.session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        &cancel,
    )
    .await;
    assert_eq!(s, 202);
    // The aborted request's HTTP exchange ends promptly, the backend hears of it (the demo
    // server writes to stderr, which the gateway logs), and the backend stays healthy.
    let _ = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("cancelled call ends");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(5), || gh
            .logged("countdown cancelled by the client"))
        .await,
        "backend never saw the cancellation"
    );
    assert_eq!(legacy.echo(6, "after").await, "after");
}

#[tokio::test]
async fn dropped_stream_resumes_with_last_event_id() {
    let gh = Gatehouse::start(&[]);
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let body = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"countdown","arguments":{"seconds":3},"_meta":{"progressToken":"p"}}});
    let mut resp = legacy.post_raw(&body).await;
    // Read the first event (the first progress notification), note its id, hang up.
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        seen.push_str(&String::from_utf8_lossy(
            &resp.chunk().await.unwrap().unwrap(),
        ));
    }
    let first_id = seen
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("events carry ids")
        .to_string();
    assert!(seen.contains("notifications/progress"), "{seen}");
    drop(resp);
    // Resume: the rest of the stream, ending with the response, arrives on the GET.
    let resumed = legacy
        .http
        .get(&legacy.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &legacy.session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", &first_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), resumed.text())
        .await
        .expect("stream ends after the response")
        .unwrap();
    let msgs: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        !text.contains(&format!("id: {first_id}\n")),
        "already-seen event not replayed: {text}"
    );
    let progress = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    assert_eq!(progress, 2, "the two later progress events: {text}");
    let last = msgs.last().unwrap();
    assert_eq!(last["id"], 9);
    assert_eq!(
        last["result"]["content"][0]["text"], "countdown of 3 s finished",
        "the call kept running while disconnected"
    );
}

/// A legacy HTTP+SSE client that POSTs calls but never reads its stream cannot make the
/// gateway hold their results: past `gateway.sse_queue_bytes` the stream ends with an error
/// event the client sees when it reads, and later POSTs are refused with a specific error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_sse_client_that_does_not_read_is_cut_off_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "gateway:\n  sse_queue_bytes: 1048576\nadmin:\n  listen: 127.0.0.1:0\n{}",
        demo_member_yaml("")
    );
    let cfg = write_config(dir.path(), &yaml);
    let gh = Gatehouse::start(&["--config", cfg.to_str().unwrap()]);
    let http = client();
    let (sse, post_url) = legacy_sse(&http, &gh, "/mcp").await;
    let baseline = rss_kib(gh.child.id());
    // 100 calls with 1 MiB results each: 100 MiB the client never reads.
    let text = "x".repeat(1024 * 1024);
    let mut refused = None;
    for i in 1..=100 {
        let call = json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}});
        let (status, _, body) = post(&http, &post_url, &[], &call).await;
        if status != 202 {
            refused = Some((i, status, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (at, status, body) = refused.expect("every POST was accepted: nothing bounds the stream");
    assert!(at < 40, "refused only at call {at}");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gateway.sse_queue_bytes"),
        "{body}"
    );
    let grown = rss_kib(gh.child.id()).saturating_sub(baseline);
    assert!(grown < 48 * 1024, "RSS grew by {grown} KiB");
    // The client, reading at last, sees why its stream ended.
    let rest = tokio::time::timeout(Duration::from_secs(10), sse.text())
        .await
        .expect("the stream ends")
        .unwrap_or_default();
    assert!(
        rest.contains("sse_queue_bytes"),
        "{}",
        &rest[rest.len().saturating_sub(400)..]
    );
    let metrics = http
        .get(gh.banner_url("metrics:"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "gatehouse_streams_closed_total{transport=\"legacy_sse\",reason=\"slow_reader\"} 1"
        ),
        "{metrics}"
    );
}
