//! The Sentinel sink (Azure Monitor Logs Ingestion API), fed from a real journal through the
//! `SinkRunner`, against test doubles of the ingestion endpoint and Entra ID's token
//! endpoint (neither can run here; see `support/receivers/`).

mod support;

use std::time::{Duration, Instant};

use gatehouse_audit::sinks::sentinel::SentinelSink;
use serde_json::{Value, json};
use support::receivers::{Expected, Fail, Receiver, sentinel};
use support::{Fixture, config, drain};

const SECRET: &str = "Xq8Q~client.secret~value-1234";

async fn receiver() -> Receiver {
    sentinel(Expected {
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        client_secret: SECRET.into(),
        expires_in: 3599,
        ..Expected::default()
    })
    .await
}

fn sink(fx: &Fixture, r: &Receiver, secret: &str, extra: Value) -> gatehouse_config::SinkConfig {
    let mut v = json!({
        "name": "sentinel", "type": "sentinel", "url": r.url(), "authority": r.url(),
        "tenant_id": "tenant-1", "client_id": "11111111-2222-3333-4444-555555555555",
        "client_secret": fx.secret_file("sentinel.secret", secret),
        "dcr_id": "dcr-0123456789abcdef", "batch_size": 500, "max_backoff": "200ms",
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config(v)
}

#[tokio::test]
async fn rows_arrive_once_in_order_split_under_1mb_with_one_token_refresh_on_401() {
    let fx = Fixture::new().await;
    // ~60 KB per event: 40 events are well over one 1 MB call.
    fx.append_with(40, 60_000).await;
    let r = receiver().await;
    // The first call finds its token revoked (as if expired early): 401, one refresh.
    r.script([Fail::ExpireToken]);
    let mut runner = fx.runner(sink(&fx, &r, SECRET, json!({})));
    let start = Instant::now();
    let pass = drain(&mut runner).await;
    assert_eq!(pass.delivered, 41);

    let seen = r.snapshot();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(seen.ids, fx.ids(), "every row once, in journal order");
    assert_eq!(
        seen.tokens.len(),
        2,
        "the first token, and one refresh after the 401"
    );
    let statuses: Vec<u16> = seen.requests.iter().map(|q| q.2).collect();
    assert_eq!(statuses[0], 401);
    assert!(statuses[1..].iter().all(|&s| s == 204), "{statuses:?}");
    assert!(
        statuses.len() >= 4,
        "split into several calls: {statuses:?}"
    );
    assert!(seen.requests.iter().all(|q| q.1 <= 1024 * 1024));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a refresh is not a backoff"
    );

    // The row: TimeGenerated and the documented flat columns, the event as dynamic.
    let events = fx.events();
    let row = &seen.accepted[2];
    let e = &events[2];
    assert_eq!(row["TimeGenerated"], e.event.time.as_str());
    assert_eq!(row["EventId"], e.id.as_str());
    assert_eq!(row["EventType"], "mcp.request");
    assert_eq!(row["Outcome"], "ok");
    assert_eq!(row["Subject"], "user-1");
    assert_eq!(row["UserEmail"], "user-1@example.com");
    assert_eq!(row["Tenant"], "acme");
    assert_eq!(row["ClientIp"], "10.0.0.1");
    assert_eq!(row["VirtualServer"], "dev");
    assert_eq!(row["Server"], "github");
    assert_eq!(row["Method"], "tools/call");
    assert_eq!(row["Target"], "tool_1");
    assert_eq!(row["Operation"], "read");
    assert_eq!(row["LatencyMs"], 1.001);
    assert_eq!(row["PolicyDecision"], "allow");
    assert_eq!(row["TraceId"], e.event.trace_id.as_deref().unwrap());
    assert_eq!(row["Event"]["id"], e.id.as_str());
    assert_eq!(row["Event"]["seq"], e.seq);
}

#[tokio::test]
async fn the_token_is_cached_and_429_waits_for_retry_after() {
    let fx = Fixture::new().await;
    fx.append(30).await;
    let r = receiver().await;
    r.script([Fail::Status(429, Some(1)), Fail::Status(503, Some(1))]);
    let mut runner = fx.runner(sink(
        &fx,
        &r,
        SECRET,
        json!({"batch_size": 10, "max_backoff": "5s"}),
    ));
    let start = Instant::now();
    assert_eq!(drain(&mut runner).await.delivered, 31);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "Retry-After not honored: {took:?}"
    );
    let seen = r.snapshot();
    assert_eq!(seen.ids, fx.ids());
    assert_eq!(seen.tokens.len(), 1, "one token for every call");
    let statuses: Vec<u16> = seen.requests.iter().map(|q| q.2).collect();
    assert_eq!(statuses, [429, 503, 204, 204, 204, 204]);
    let err = fx.status("sentinel").await.last_error.unwrap();
    assert!(err.contains("503"), "{err}");
    assert!(!err.contains("token-1"), "the bearer token leaked: {err}");
}

#[tokio::test]
async fn a_413_splits_the_call_and_an_oversized_event_is_dead_lettered() {
    let fx = Fixture::new().await;
    fx.append_with(6, 100).await;
    fx.append_with(1, 40_000).await;
    fx.append_with(3, 100).await;
    let ids = fx.ids();
    let r = receiver().await;
    r.script([Fail::TooLarge]);
    let cfg = sink(&fx, &r, SECRET, json!({}));
    // A 32 KB limit stands in for the API's 1 MB, so the 40 KB event is too large alone.
    let s = SentinelSink::new(&cfg).unwrap().with_max_request(32 * 1024);
    let mut runner = fx.runner_with(cfg, Box::new(s));
    let pass = drain(&mut runner).await;
    assert_eq!((pass.delivered, pass.rejected), (10, 1));
    let seen = r.snapshot();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    let mut want = ids.clone();
    let big = want.remove(7);
    assert_eq!(seen.ids, want, "in order, once");
    let statuses: Vec<u16> = seen.requests.iter().map(|q| q.2).collect();
    assert_eq!(statuses[0], 413);
    assert_eq!(
        statuses.len(),
        4,
        "413, both halves, then the rest: {statuses:?}"
    );
    let dead = fx.dead_letters("sentinel");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], big.as_str());
}

#[tokio::test]
async fn a_wrong_client_secret_is_named_without_being_shown() {
    let fx = Fixture::new().await;
    fx.append(2).await;
    let r = receiver().await;
    let wrong = "wrong~secret~value";
    let mut runner = fx.runner(sink(&fx, &r, wrong, json!({"max_backoff": "100ms"})));
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move { runner.catch_up(&mut stop).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop_tx.send(true).unwrap();
    assert_eq!(task.await.unwrap().delivered, 0);
    let status = fx.status("sentinel").await;
    let err = status.last_error.unwrap();
    assert!(
        err.contains("AADSTS7000215") && err.contains("invalid_client"),
        "{err}"
    );
    assert!(!err.contains(wrong) && !err.contains(SECRET), "{err}");
    assert!(fx.dead_letters("sentinel").is_empty());
    assert!(
        r.snapshot().requests.is_empty(),
        "nothing sent without a token"
    );
}

#[tokio::test]
async fn a_retry_resumes_after_the_calls_that_went_through() {
    // The Logs Ingestion API has no de-duplication: when the second call of a batch is
    // throttled, the retry must not send the first call's rows again.
    let fx = Fixture::new().await;
    fx.append_with(20, 2_000).await;
    let r = receiver().await;
    r.script([Fail::Nothing, Fail::Status(429, Some(1))]);
    let cfg = sink(&fx, &r, SECRET, json!({"max_backoff": "5s"}));
    let s = SentinelSink::new(&cfg).unwrap().with_max_request(16 * 1024);
    let mut runner = fx.runner_with(cfg, Box::new(s));
    let start = Instant::now();
    assert_eq!(drain(&mut runner).await.delivered, 21);
    assert!(start.elapsed() >= Duration::from_millis(950));
    let seen = r.snapshot();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(seen.ids, fx.ids(), "exactly once, in order");
    let statuses: Vec<u16> = seen.requests.iter().map(|q| q.2).collect();
    assert_eq!(statuses[..3], [204, 429, 204]);
    assert!(statuses.len() >= 4, "{statuses:?}");
}
