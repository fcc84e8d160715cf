//! Bounded handshake-era sessions through the real binary: a DELETEd session stays refused
//! after a restart and on another gateway sharing the key and a PostgreSQL store; a principal
//! over its cap keeps only its newest sessions; an idle session expires. Each bound that bites
//! shows in `gatehouse_sessions_ended_total` and as a `session.end` audit event.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

async fn delete(session: &Legacy) -> u16 {
    session
        .http
        .delete(&session.url)
        .header("mcp-session-id", &session.session)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn status(session: &Legacy, id: i64) -> u16 {
    session.request(id, "tools/list", json!({})).await.0
}

/// The value of one series in the gateway's Prometheus metrics.
async fn metric(gh: &Gatehouse, series: &str) -> Option<u64> {
    let text = client()
        .get(gh.banner_url("metrics:"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn session_ends(data_dir: &Path, reason: &str) -> Vec<Value> {
    audit_events(data_dir)
        .into_iter()
        .filter(|e| e["type"] == "session.end" && e["reason"] == reason)
        .collect()
}

/// The demo member behind `/mcp`, with `gateway.sessions` set to `sessions`.
fn config_with(dir: &Path, sessions: &str) -> String {
    let yaml = format!("gateway:\n  sessions: {sessions}\n{}", demo_member_yaml(""));
    write_config(dir, &yaml).display().to_string()
}

#[tokio::test]
async fn a_deleted_session_stays_refused_after_a_restart() {
    let mut gh = Gatehouse::start(&[]);
    let kept = Legacy::connect(&gh.url("/mcp")).await;
    let deleted = Legacy::connect(&gh.url("/mcp")).await;
    assert_eq!(delete(&deleted).await, 200);
    assert_eq!(status(&deleted, 1).await, 404);
    let exit = gh.terminate(Duration::from_secs(15)).expect("exits");
    assert!(exit.success(), "{exit:?}");
    let data_dir = std::mem::replace(&mut gh.data_dir, tempfile::tempdir().unwrap());
    let gh = Gatehouse::start_in(&[], data_dir);
    let url = gh.url("/mcp");
    let kept = Legacy {
        url: url.clone(),
        ..kept
    };
    let deleted = Legacy { url, ..deleted };
    assert_eq!(status(&kept, 2).await, 200, "a live session survives");
    let (s, body) = deleted.request(3, "tools/list", json!({})).await;
    assert_eq!(s, 404, "the deleted one does not: {body}");
    assert_eq!(
        body["error"]["message"],
        "Session not found: it was deleted; initialize a new session"
    );
    assert_eq!(delete(&deleted).await, 404);
}

#[tokio::test]
async fn a_session_deleted_on_one_gateway_is_refused_by_another_sharing_the_store() {
    let db = PostgresDb::create("gh_sessions");
    let one = Gatehouse::start(&["--database-url", &db.url]);
    // The second gateway has its own data dir but the same sealing key, as replicas do.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::copy(
        one.data_dir.path().join("keys/seal.json"),
        dir.path().join("keys/seal.json"),
    )
    .unwrap();
    let two = Gatehouse::start_full(&["--database-url", &db.url], &[], dir);
    let on_two = |s: &Legacy| Legacy {
        url: two.url("/mcp"),
        session: s.session.clone(),
        http: s.http.clone(),
    };
    // One session the second gateway serves before the DELETE, one it first sees after.
    let served = Legacy::connect(&one.url("/mcp")).await;
    let unseen = Legacy::connect(&one.url("/mcp")).await;
    assert_eq!(status(&on_two(&served), 1).await, 200);
    assert_eq!(delete(&served).await, 200);
    assert_eq!(delete(&unseen).await, 200);
    assert_eq!(
        status(&on_two(&unseen), 2).await,
        404,
        "checked against the store at first sight"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut id = 3;
    while status(&on_two(&served), id).await != 404 {
        assert!(
            Instant::now() < deadline,
            "the second gateway still serves a session deleted on the first"
        );
        id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = psql_in(&db.name, "SELECT COUNT(*) FROM session_revocations");
    assert_eq!(stored, "2");
    let digests = psql_in(
        &db.name,
        "SELECT encode(digest, 'hex') FROM session_revocations",
    );
    assert!(
        !digests.contains(&served.session) && digests.lines().all(|d| d.len() == 64),
        "only SHA-256 digests are stored: {digests}"
    );
}

#[tokio::test]
async fn a_delete_the_store_cannot_record_fails_and_leaves_the_session_open() {
    let db = PostgresDb::create("gh_sessions_down");
    let gh = Gatehouse::start(&["--database-url", &db.url]);
    let session = Legacy::connect(&gh.url("/mcp")).await;
    psql(&format!("DROP DATABASE {} WITH (FORCE)", db.name));
    let resp = session
        .http
        .delete(&session.url)
        .header("mcp-session-id", &session.session)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "not acknowledged before it is durable");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Session not ended: the gateway could not record its end in its store; retry"
    );
    assert_eq!(status(&session, 1).await, 200, "the session stays open");
}

#[tokio::test]
async fn a_principal_over_its_cap_keeps_only_its_newest_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "{ max_per_principal: 3 }");
    let gh = Gatehouse::start(&["--config", &config, "--admin-listen", "127.0.0.1:0"]);
    let url = gh.url("/mcp");
    let mut opened = Vec::new();
    for _ in 0..5 {
        opened.push(Legacy::connect(&url).await);
    }
    // The anonymous caller is capped by its address: the two opened first were idle the longest.
    for (i, s) in opened.iter().enumerate() {
        let (status, body) = s.request(i as i64, "tools/list", json!({})).await;
        if i < 2 {
            assert_eq!(status, 404, "session {i}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("gateway.sessions.max_per_principal"),
                "{message}"
            );
        } else {
            assert_eq!(status, 200, "session {i}");
        }
    }
    assert_eq!(
        metric(
            &gh,
            "gatehouse_sessions_ended_total{reason=\"cap_principal\"}"
        )
        .await,
        Some(2)
    );
    // The gauge is refreshed every second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&gh, "gatehouse_active_sessions{virtual_server=\"default\"}").await != Some(3) {
        assert!(Instant::now() < deadline, "3 active sessions");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            session_ends(gh.data_dir.path(), "cap_principal").len() == 2
        })
        .await,
        "two session.end events"
    );
    let event = &session_ends(gh.data_dir.path(), "cap_principal")[0];
    assert_eq!(event["principal"]["kind"], "anonymous");
    assert_eq!(event["client"]["ip"], "127.0.0.1");
    assert_eq!(event["virtual_server"], "default");
    assert_eq!(event["session"].as_str().unwrap().len(), 16);
    let log = gh.log.lock().unwrap().clone();
    assert!(
        !log.contains(&opened[0].session),
        "the session id (a credential) is never logged"
    );
}

#[tokio::test]
async fn a_session_without_requests_expires_and_one_in_use_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "{ idle_timeout: 2s }");
    let gh = Gatehouse::start(&["--config", &config, "--admin-listen", "127.0.0.1:0"]);
    let url = gh.url("/mcp");
    let idle = Legacy::connect(&url).await;
    let busy = Legacy::connect(&url).await;
    let started = Instant::now();
    for id in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            status(&busy, id).await,
            200,
            "in use after {:?}",
            started.elapsed()
        );
    }
    // Ended by the sweep (within a second of its timeout) without a request of its own.
    assert!(
        eventually(Duration::from_secs(4), || {
            session_ends(gh.data_dir.path(), "idle").len() == 1
        })
        .await
    );
    let (status_idle, body) = idle.request(100, "tools/list", json!({})).await;
    assert_eq!(status_idle, 404);
    assert_eq!(
        body["error"]["message"],
        "Session not found: it saw no request for longer than gateway.sessions.idle_timeout; initialize a new session"
    );
    assert_eq!(
        metric(&gh, "gatehouse_sessions_ended_total{reason=\"idle\"}").await,
        Some(1)
    );
    assert_eq!(status(&busy, 101).await, 200);
}
