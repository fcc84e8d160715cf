//! The Elasticsearch/OpenSearch sink, fed from a real journal through the `SinkRunner`,
//! against a test double of the `_bulk` API (no Elasticsearch can run here; see
//! `support/receivers/`).

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use gatehouse_audit::sinks::elastic::ElasticSink;
use serde_json::json;
use support::receivers::{Expected, Fail, elastic};
use support::{Fixture, config, drain};

const API_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";

#[tokio::test]
async fn bulk_creates_by_event_id_and_retries_a_throttled_item_without_duplicates() {
    let fx = Fixture::new().await;
    fx.append(30).await;
    let ids = fx.ids();
    let es = elastic(Expected {
        authorization: format!("ApiKey {API_KEY}"),
        ..Expected::default()
    })
    .await;
    // Item 3 of the first request is throttled (es_rejected_execution_exception): the batch
    // goes again and its other items come back as 409 conflicts.
    es.script([Fail::ItemBusy(3)]);
    es.poison(&ids[17]);
    let mut runner = fx.runner(config(json!({
        "name": "es", "type": "elasticsearch", "url": es.url(),
        "token": fx.secret_file("es.key", API_KEY), "batch_size": 10, "max_backoff": "100ms",
    })));
    let pass = drain(&mut runner).await;
    assert_eq!((pass.delivered, pass.rejected), (30, 1));

    let seen = es.snapshot();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    let mut want = ids.clone();
    want.remove(17);
    // Elasticsearch indexes the other items of a bulk request when one is throttled, so
    // the throttled one lands after the rest of its batch; every other one keeps its order.
    let mut arrival = want.clone();
    let late = arrival.remove(3);
    arrival.insert(9, late);
    assert_eq!(seen.ids, arrival, "each document created once");
    assert_eq!(seen.indices.iter().collect::<Vec<_>>(), ["gatehouse-audit"]);
    assert_eq!(
        seen.requests.len(),
        5,
        "three batches, one sent twice: {:?}",
        seen.requests
    );
    let doc = &seen.accepted[0];
    assert_eq!(doc["event"]["id"], ids[0].as_str());
    assert_eq!(doc["@timestamp"], fx.events()[0].event.time.as_str());

    let dead = fx.dead_letters("es");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], ids[17].as_str());
    let status = fx.status("es").await;
    assert_eq!((status.delivered, status.rejected), (30, 1));
    // The throttled item was retried; the refused one is the status's last word.
    let err = status.last_error.unwrap();
    assert!(
        err.contains("1 event(s) refused for good") && err.contains("document_parsing_exception"),
        "{err}"
    );
    assert!(
        status.failing_since.is_none(),
        "a refusal does not make the sink failing"
    );
    assert!(!err.contains(API_KEY));
}

#[tokio::test]
async fn a_redelivered_journal_is_all_conflicts_and_counts_as_delivered() {
    let fx = Fixture::new().await;
    fx.append(10).await;
    let es = elastic(Expected {
        authorization: format!("ApiKey {API_KEY}"),
        ..Expected::default()
    })
    .await;
    let sink = |name: &str| {
        config(json!({
            "name": name, "type": "elasticsearch", "url": es.url(), "index": "logs-gatehouse-default",
            "token": fx.secret_file("es.key", API_KEY),
        }))
    };
    assert_eq!(drain(&mut fx.runner(sink("first"))).await.delivered, 11);
    // A second sink (its own cursor from the start) to the same index: every create is a 409.
    let pass = drain(&mut fx.runner(sink("second"))).await;
    assert_eq!((pass.delivered, pass.rejected), (11, 0));
    let seen = es.snapshot();
    assert_eq!(seen.ids, fx.ids(), "no document twice");
    assert_eq!(seen.requests.len(), 2);
    assert_eq!(
        seen.indices.iter().collect::<Vec<_>>(),
        ["logs-gatehouse-default"]
    );
}

#[tokio::test]
async fn basic_auth_requests_stay_under_the_byte_limit_and_whole_request_429_waits() {
    let fx = Fixture::new().await;
    fx.append_with(40, 600).await;
    let password = "s3cr3t-elastic-pw";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("gatehouse:{password}"));
    let es = elastic(Expected {
        authorization: format!("Basic {basic}"),
        ..Expected::default()
    })
    .await;
    es.script([Fail::Status(429, Some(1))]);
    let cfg = config(json!({
        "name": "es", "type": "elasticsearch", "url": es.url(), "username": "gatehouse",
        "password": fx.secret_file("es.pw", password), "batch_size": 500,
    }));
    let limit = 2048;
    let sink = ElasticSink::new(&cfg).unwrap().with_max_request(limit);
    let mut runner = fx.runner_with(cfg, Box::new(sink));
    let start = Instant::now();
    assert_eq!(drain(&mut runner).await.delivered, 41);
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 not honored"
    );

    let seen = es.snapshot();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(seen.ids, fx.ids());
    assert_eq!(seen.requests[0].2, 429);
    let sizes: Vec<usize> = seen.requests.iter().map(|r| r.1).collect();
    assert!(sizes.len() > 4, "split into several requests: {sizes:?}");
    assert!(sizes.iter().all(|&n| n <= limit), "{sizes:?}");
    let err = fx.status("es").await.last_error.unwrap();
    assert!(!err.contains(password) && !err.contains(&basic), "{err}");
}

#[tokio::test]
async fn wrong_credentials_are_a_config_error_not_a_dead_letter() {
    let fx = Fixture::new().await;
    fx.append(3).await;
    let es = elastic(Expected {
        authorization: format!("ApiKey {API_KEY}"),
        ..Expected::default()
    })
    .await;
    let cfg = config(json!({
        "name": "es", "type": "elasticsearch", "url": es.url(),
        "token": fx.secret_file("es.key", "d3JvbmctaWQ6d3Jvbmcta2V5"), "max_backoff": "100ms",
    }));
    let mut runner = fx.runner(cfg);
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move { runner.catch_up(&mut stop).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(true).unwrap();
    let pass = task.await.unwrap();
    assert_eq!(pass.delivered + pass.rejected, 0);
    assert!(fx.dead_letters("es").is_empty());
    let err = fx.status("es").await.last_error.unwrap();
    assert!(
        err.contains("401") && err.contains("security_exception"),
        "{err}"
    );
    assert!(!err.contains("d3JvbmctaWQ6d3Jvbmcta2V5"));
}
