//! The Splunk HEC sink, fed from a real journal through the `SinkRunner`, against a test
//! double of the HTTP Event Collector (Splunk cannot run here; see `support/receivers/`).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::receivers::{Expected, Fail, splunk};
use support::{Fixture, config, drain};

const TOKEN: &str = "0b9f6a1e-5c2d-4e8a-9f3b-hec-secret";

fn expected() -> Expected {
    Expected {
        authorization: format!("Splunk {TOKEN}"),
        ..Expected::default()
    }
}

#[tokio::test]
async fn every_event_arrives_once_in_order_through_busy_and_throttled_collector() {
    let fx = Fixture::new().await;
    fx.append(25).await;
    let hec = splunk(expected(), None).await;
    // 503 "Server is busy" and 429, both with Retry-After: 1.
    hec.script([Fail::Status(503, Some(1)), Fail::Status(429, Some(1))]);
    let mut runner = fx.runner(config(json!({
        "name": "splunk", "type": "splunk_hec", "url": hec.url(),
        "token": fx.secret_file("hec.token", TOKEN), "index": "security", "batch_size": 10,
    })));
    let start = Instant::now();
    let pass = drain(&mut runner).await;
    let took = start.elapsed();

    let seen = hec.snapshot();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(seen.ids, fx.ids(), "every event once, in journal order");
    assert_eq!(pass.delivered, 26, "25 events and journal.start");
    // Two waits of the collector's 1s, not the runner's own 500ms first backoff.
    assert!(
        took >= Duration::from_millis(1900),
        "Retry-After not honored: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let statuses: Vec<u16> = seen.requests.iter().map(|r| r.2).collect();
    assert_eq!(statuses[..2], [503, 429]);
    assert!(seen.requests[1].0 - seen.requests[0].0 >= Duration::from_millis(950));

    // The HEC envelope: time from the event, host, defaults, index, indexed fields.
    let events = fx.events();
    let first = &seen.accepted[1];
    let e = &events[1];
    let time = first["time"].as_f64().unwrap();
    let want = humantime::parse_rfc3339(&e.event.time)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((time - want).abs() < 1e-5, "{time} vs {want}");
    assert_eq!(first["source"], "gatehouse");
    assert_eq!(first["sourcetype"], "gatehouse:audit");
    assert_eq!(first["index"], "security");
    assert!(!first["host"].as_str().unwrap().is_empty());
    assert_eq!(first["event"]["id"], e.id.as_str());
    assert_eq!(first["event"]["seq"], e.seq);
    assert_eq!(first["fields"]["event_type"], "mcp.request");
    assert_eq!(first["fields"]["outcome"], "ok");
    assert_eq!(first["fields"]["user"], "user-0");
    assert_eq!(first["fields"]["tool"], "tool_0");

    let status = fx.status("splunk").await;
    assert_eq!((status.delivered, status.rejected), (26, 0));
    let err = status.last_error.unwrap();
    assert!(err.contains("429"), "{err}");
    assert!(!err.contains(TOKEN));
    assert!(status.failing_since.is_none(), "recovered");
}

#[tokio::test]
async fn an_event_the_collector_refuses_is_dead_lettered_and_the_rest_delivered() {
    let fx = Fixture::new().await;
    fx.append(12).await;
    let ids = fx.ids();
    let hec = splunk(expected(), None).await;
    hec.poison(&ids[5]);
    let mut runner = fx.runner(config(json!({
        "name": "splunk", "type": "splunk_hec", "url": hec.url(),
        "token": fx.secret_file("hec.token", TOKEN), "batch_size": 500,
    })));
    let pass = drain(&mut runner).await;
    assert_eq!((pass.delivered, pass.rejected), (12, 1));

    let seen = hec.snapshot();
    let mut want = ids.clone();
    want.remove(5);
    assert_eq!(seen.unique_ids(), want);
    assert_eq!(
        seen.ids.len(),
        want.len(),
        "the events before the refused one are not sent again"
    );
    let dead = fx.dead_letters("splunk");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], ids[5].as_str());
    let status = fx.status("splunk").await;
    assert_eq!((status.delivered, status.rejected), (12, 1));
}

#[tokio::test]
async fn a_wrong_token_holds_the_events_back_until_it_is_fixed() {
    let fx = Fixture::new().await;
    fx.append(5).await;
    let hec = splunk(expected(), None).await;
    let secret = fx.secret_file("hec.token", "not-the-right-token");
    let mut runner = fx.runner(config(json!({
        "name": "splunk", "type": "splunk_hec", "url": hec.url(), "token": secret,
        "max_backoff": "200ms",
    })));
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let pass = runner.catch_up(&mut stop).await.unwrap();
        (runner, pass)
    });
    // Wait for the failure to show in the status, then fix the secret file.
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        let s = fx.store.sink_cursors().status().await.unwrap();
        if let Some(e) = s.first().and_then(|s| s.last_error.clone()) {
            break e;
        }
        assert!(Instant::now() < deadline, "no failure recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        err.contains("403") && err.contains("Invalid token"),
        "{err}"
    );
    assert!(err.contains("credentials"), "{err}");
    assert!(
        !err.contains("not-the-right-token"),
        "the token leaked: {err}"
    );
    assert!(
        fx.dead_letters("splunk").is_empty(),
        "a bad token must not dead-letter events"
    );
    assert!(hec.snapshot().ids.is_empty());

    fx.secret_file("hec.token", TOKEN);
    let (_runner, pass) = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    drop(stop_tx);
    assert_eq!(pass.delivered, 6);
    assert_eq!(hec.snapshot().ids, fx.ids());
}

#[tokio::test]
async fn nothing_is_lost_while_the_collector_is_down() {
    let fx = Fixture::new().await;
    fx.append(8).await;
    let addr = gatehouse_testkit::tools::free_port();
    let mut runner = fx.runner(config(json!({
        "name": "splunk", "type": "splunk_hec", "url": format!("http://{addr}"),
        "token": fx.secret_file("hec.token", TOKEN), "batch_size": 3, "max_backoff": "300ms",
    })));
    let (_stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move { runner.catch_up(&mut stop).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = fx.status("splunk").await;
    assert_eq!(status.delivered, 0);
    assert!(status.failing_since.is_some());
    assert!(status.last_error.unwrap().contains("splunk_hec splunk"));

    // The collector comes up; more events arrive meanwhile.
    let hec = splunk(expected(), Some(addr)).await;
    let pass = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pass.delivered, 9);
    fx.append(4).await;
    let mut again = fx.runner(config(json!({
        "name": "splunk", "type": "splunk_hec", "url": hec.url(),
        "token": fx.secret_file("hec.token", TOKEN), "batch_size": 3,
    })));
    assert_eq!(
        drain(&mut again).await.delivered,
        4,
        "a new runner starts at the cursor"
    );
    let seen = hec.snapshot();
    assert_eq!(seen.ids, fx.ids());
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
}

#[tokio::test]
async fn a_retry_after_a_partial_answer_does_not_send_indexed_events_again() {
    // HEC has no de-duplication: after it indexed events 0..5 and refused 5, a 503 on the
    // rest must not make the retry send 0..5 again.
    let fx = Fixture::new().await;
    fx.append(12).await;
    let ids = fx.ids();
    let hec = splunk(expected(), None).await;
    hec.poison(&ids[5]);
    hec.script([Fail::Nothing, Fail::Status(503, Some(1))]);
    let mut runner = fx.runner(config(json!({
        "name": "splunk", "type": "splunk_hec", "url": hec.url(),
        "token": fx.secret_file("hec.token", TOKEN),
    })));
    let pass = drain(&mut runner).await;
    assert_eq!((pass.delivered, pass.rejected), (12, 1));
    let seen = hec.snapshot();
    let mut want = ids.clone();
    want.remove(5);
    assert_eq!(seen.ids, want, "exactly once, no duplicates");
    let statuses: Vec<u16> = seen.requests.iter().map(|q| q.2).collect();
    assert_eq!(statuses, [400, 503, 200]);
    assert_eq!(fx.dead_letters("splunk").len(), 1);
}
