//! Every anomaly detector fires on its scenario, once, and stays quiet on normal behaviour.
//!
//! Each test writes a synthetic history through a real journal (events stamped in the past),
//! indexes it into a real SQLite store with the detectors observing, and judges it at a fixed
//! "now" — the detectors take the time as an argument, so the history is exact.

use std::path::PathBuf;
use std::time::Duration;

use gatehouse_audit::anomaly::{Anomaly, Detectors, network};
use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::index::{CatchUp, catch_up_with, unix_micros};
use gatehouse_audit::{
    AuditEvent, ClientRecord, EventKind, Journal, JournalOptions, Outcome, PrincipalRecord,
    ResultRecord, TargetRecord,
};
use gatehouse_config::{AnomalyConfig, Durability, OnFailure};
use gatehouse_store::Store;

/// "Now" of every test: a Thursday, 10:30 UTC.
const NOW: &str = "2026-01-15T10:30:00Z";
const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

struct Env {
    _dir: tempfile::TempDir,
    audit: PathBuf,
    journal: Journal,
    store: Store,
    detectors: Detectors,
    now: i64,
}

fn now() -> i64 {
    unix_micros(NOW).unwrap()
}

async fn env(config: AnomalyConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    let journal = Journal::open(JournalOptions {
        dir: audit.clone(),
        durability: Durability::Process,
        on_failure: OnFailure::Refuse,
        segment_bytes: 1 << 20,
        signer: CheckpointSigner::load_or_create(&dir.path().join("k"), true).unwrap(),
        sync_interval: Duration::from_millis(100),
        max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
    })
    .unwrap();
    let store = Store::open_sqlite_in(dir.path()).await.unwrap();
    let detectors = Detectors::new(&store, config);
    Env {
        _dir: dir,
        audit,
        journal,
        store,
        detectors,
        now: now(),
    }
}

struct Call<'a> {
    user: &'a str,
    tool: &'a str,
    operation: &'a str,
    outcome: Outcome,
    ip: &'a str,
    server: &'a str,
}

fn call<'a>(user: &'a str, tool: &'a str) -> Call<'a> {
    Call {
        user,
        tool,
        operation: "read",
        outcome: Outcome::Ok,
        ip: "10.1.2.3",
        server: "jira",
    }
}

fn event(c: &Call, time_us: i64) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, c.outcome);
    e.time = humantime::format_rfc3339_micros(
        std::time::UNIX_EPOCH + Duration::from_micros(time_us as u64),
    )
    .to_string();
    e.principal = Some(PrincipalRecord {
        kind: "user".into(),
        subject: c.user.into(),
        issuer: "https://idp.example".into(),
        email: Some(format!("{}@example.com", c.user)),
        ..Default::default()
    });
    e.client = Some(ClientRecord {
        ip: Some(c.ip.into()),
        ..Default::default()
    });
    e.virtual_server = Some("tools".into());
    e.server = Some(c.server.into());
    e.method = Some("tools/call".into());
    e.target = Some(TargetRecord {
        kind: "tool".into(),
        name: c.tool.into(),
        operation: Some(c.operation.into()),
    });
    e.result = Some(ResultRecord {
        status: if c.outcome == Outcome::Ok {
            "ok"
        } else {
            "error"
        }
        .into(),
        error_code: None,
        error_message: None,
        bytes: 400,
        http_status: None,
    });
    e.latency_us = Some(2_000);
    e
}

impl Env {
    /// Appends `n` copies of `c`, spread over the minutes after `start`.
    async fn calls(&self, c: &Call<'_>, start: i64, n: i64) {
        for i in 0..n {
            let t = start + i * (50 * 60_000_000 / n.max(1));
            self.journal.append(&event(c, t)).await.unwrap();
        }
    }

    /// `days` of normal work for `user` before today: 25 calls an hour from 09:00 to 17:00
    /// UTC, two tools, no errors, from 10.1.2.0/24, on server jira.
    async fn history(&self, user: &str, days: i64) {
        let today = self.now.div_euclid(DAY) * DAY;
        for d in 1..=days {
            for h in 9..18 {
                let tool = if h % 2 == 0 { "search" } else { "get_issue" };
                let mut c = call(user, tool);
                c.ip = "10.1.2.40";
                let start = today - d * DAY + h * HOUR;
                self.calls(&c, start, 20).await;
                self.calls(&call(user, "search"), start + 60_000_000, 5)
                    .await;
            }
        }
    }

    /// Catches the index up with the detectors observing, and judges at `now`.
    async fn judge(&mut self) -> Vec<Anomaly> {
        self.journal.flush().await.unwrap();
        let mut obs = self.detectors.observations();
        catch_up_with(
            &self.store.audit_index(),
            &self.audit,
            CatchUp {
                observations: Some(&mut obs),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        self.detectors.run(obs, self.now).await.unwrap()
    }
}

fn fired(found: &[Anomaly]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = found
        .iter()
        .map(|a| {
            let d = a.event.detail.as_ref().unwrap();
            (
                a.detector.to_string(),
                format!(
                    "{}:{}",
                    d["scope"].as_str().unwrap(),
                    d["key"].as_str().unwrap()
                ),
            )
        })
        .collect();
    out.sort();
    out
}

fn this_hour() -> i64 {
    now().div_euclid(HOUR) * HOUR
}

#[tokio::test]
async fn normal_behaviour_fires_nothing() {
    let mut env = env(AnomalyConfig::default()).await;
    env.history("alice", 3).await;
    // The current hour looks like every other working hour.
    let mut c = call("alice", "search");
    c.ip = "10.1.2.99";
    env.calls(&c, this_hour(), 25).await;
    assert_eq!(fired(&env.judge().await), []);
    assert_eq!(fired(&env.judge().await), [], "nothing new, nothing judged");
}

#[tokio::test]
async fn volume_fires_for_the_user_and_the_server_once_per_hour() {
    let mut env = env(AnomalyConfig::default()).await;
    env.history("alice", 3).await;
    env.calls(&call("alice", "search"), this_hour(), 100).await;
    let found = env.judge().await;
    assert_eq!(
        fired(&found),
        [
            ("volume".into(), "server:jira".into()),
            ("volume".into(), "user:alice".into())
        ]
    );
    let user = found.iter().find(|a| a.event.principal.is_some()).unwrap();
    assert_eq!(user.event.kind, EventKind::Anomaly);
    assert_eq!(user.event.outcome, Outcome::Ok);
    let p = user.event.principal.as_ref().unwrap();
    assert_eq!(
        (p.subject.as_str(), p.email.as_deref()),
        ("alice", Some("alice@example.com"))
    );
    let d = user.event.detail.as_ref().unwrap();
    assert_eq!(d["observed"], 100);
    assert_eq!(d["baseline"], 25.0);
    assert_eq!(d["factor"], 3.0);
    assert_eq!(d["hours_observed"], 27);
    assert!(
        user.event
            .reason
            .as_deref()
            .unwrap()
            .starts_with("alice@example.com: 100 calls this hour"),
        "{:?}",
        user.event.reason
    );
    // More of the same within the hour: already reported.
    env.calls(&call("alice", "search"), this_hour() + 55 * 60_000_000, 50)
        .await;
    assert_eq!(fired(&env.judge().await), []);
    // The baseline is kept in the store for this hour.
    let b = env
        .store
        .anomalies()
        .baseline(gatehouse_store::Scope::User, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.as_of_hour, b.hours_observed),
        (this_hour() / 1_000_000, 27)
    );
    assert!((b.profile[10] - 1.0 / 9.0).abs() < 1e-9, "{:?}", b.profile);
    assert_eq!(b.profile[3], 0.0);
}

#[tokio::test]
async fn volume_waits_for_min_history() {
    let mut env = env(AnomalyConfig::default()).await;
    // Only hours from today: less than min_history (24h) of history.
    for h in 1..=3 {
        env.calls(&call("alice", "search"), this_hour() - h * HOUR, 5)
            .await;
    }
    env.calls(&call("alice", "search"), this_hour(), 100).await;
    assert_eq!(fired(&env.judge().await), []);
}

#[tokio::test]
async fn distinct_tools_and_error_rate_fire_on_their_own() {
    let mut env = env(AnomalyConfig::default()).await;
    env.history("alice", 3).await;
    env.history("bob", 3).await;
    // alice: her usual volume, but 12 different tools (baseline: about 2 per hour).
    for i in 0..12 {
        env.calls(&call("alice", &format!("tool_{i}")), this_hour(), 2)
            .await;
    }
    // bob: his usual volume, half of it failing (baseline: no errors).
    env.calls(&call("bob", "search"), this_hour(), 12).await;
    let mut failing = call("bob", "search");
    failing.outcome = Outcome::Error;
    env.calls(&failing, this_hour(), 12).await;
    let found = fired(&env.judge().await);
    assert!(
        found.contains(&("distinct_tools".into(), "user:alice".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&("error_rate".into(), "user:bob".into())),
        "{found:?}"
    );
    assert!(!found.iter().any(|(d, _)| d == "volume"), "{found:?}");
    assert!(
        !found.contains(&("error_rate".into(), "user:alice".into())),
        "{found:?}"
    );
    assert!(
        !found.contains(&("distinct_tools".into(), "user:bob".into())),
        "{found:?}"
    );
}

#[tokio::test]
async fn off_hours_fires_at_an_hour_never_used() {
    let mut env = env(AnomalyConfig {
        min_calls: 10,
        ..Default::default()
    })
    .await;
    env.history("alice", 3).await;
    // 03:30 UTC: alice never works at 03:00.
    env.now = unix_micros("2026-01-15T03:30:00Z").unwrap();
    let three = env.now.div_euclid(HOUR) * HOUR;
    env.calls(&call("alice", "search"), three, 20).await;
    let found = fired(&env.judge().await);
    assert!(
        found.contains(&("off_hours".into(), "user:alice".into())),
        "{found:?}"
    );
    assert!(!found.iter().any(|(d, _)| d == "volume"), "{found:?}");
}

#[tokio::test]
async fn first_delete_fires_once_per_principal_and_tool() {
    let mut env = env(AnomalyConfig::default()).await;
    let mut delete = call("alice", "delete_repo");
    delete.operation = "delete";
    env.calls(&delete, env.now - 2 * DAY, 3).await;
    env.calls(&call("bob", "search"), env.now - 2 * DAY, 3)
        .await;
    assert_eq!(
        fired(&env.judge().await),
        [("first_delete".into(), "user:alice".into())]
    );
    // alice again: not a first use. bob's first delete: fires. Reads: nothing.
    env.calls(&delete, env.now - HOUR, 2).await;
    let mut bob = call("bob", "delete_repo");
    bob.operation = "delete";
    env.calls(&bob, env.now - HOUR, 2).await;
    env.calls(&call("bob", "delete_repo_docs"), env.now - HOUR, 2)
        .await;
    let found = env.judge().await;
    assert_eq!(fired(&found), [("first_delete".into(), "user:bob".into())]);
    assert_eq!(
        found[0].event.detail.as_ref().unwrap()["tool"],
        "delete_repo"
    );
    // A delete older than the window only updates the state.
    let mut carol = call("carol", "drop_table");
    carol.operation = "delete";
    env.calls(&carol, env.now - 20 * DAY, 1).await;
    assert_eq!(fired(&env.judge().await), []);
    carol.tool = "drop_index";
    env.calls(&carol, env.now - 20 * DAY, 1).await;
    env.calls(&carol, env.now - HOUR, 1).await;
    assert_eq!(
        fired(&env.judge().await),
        [],
        "drop_index was first used 20 days ago"
    );
}

#[tokio::test]
async fn new_network_fires_for_a_principal_with_history() {
    let mut env = env(AnomalyConfig::default()).await;
    env.history("alice", 3).await;
    // carol is new: her second network within her first day is not judged.
    let mut carol = call("carol", "search");
    carol.ip = "192.0.2.10";
    env.calls(&carol, env.now - 3 * HOUR, 2).await;
    carol.ip = "198.51.100.7";
    env.calls(&carol, env.now - HOUR, 2).await;
    assert_eq!(fired(&env.judge().await), []);
    // alice from another address of her /24: same network.
    let mut alice = call("alice", "search");
    alice.ip = "10.1.2.250";
    env.calls(&alice, env.now - HOUR, 2).await;
    assert_eq!(fired(&env.judge().await), []);
    // alice from a new network (IPv6 and, separately, IPv4).
    alice.ip = "2001:db8:aa:1::5";
    env.calls(&alice, env.now - HOUR, 2).await;
    alice.ip = "203.0.113.9";
    env.calls(&alice, env.now - HOUR + 60_000_000, 2).await;
    let found = env.judge().await;
    assert_eq!(
        fired(&found),
        [("new_network".into(), "user:alice".into())],
        "once per hour, though two networks are new"
    );
    assert_eq!(
        found[0].event.detail.as_ref().unwrap()["network"],
        "2001:db8:aa::/48"
    );
    alice.ip = "2001:db8:aa:2::9";
    env.calls(&alice, env.now, 1).await;
    assert_eq!(fired(&env.judge().await), [], "same /48");
}

#[tokio::test]
async fn repeated_authorization_failures_fire_and_anomaly_events_are_ignored() {
    let mut env = env(AnomalyConfig::default()).await;
    let mut denied = call("mallory", "delete_repo");
    denied.outcome = Outcome::Denied;
    // Four within ten minutes: under the threshold (5).
    env.calls(&denied, env.now - 2 * HOUR, 4).await;
    // Five, but spread over 50 minutes: never five within ten.
    env.calls(&denied, env.now - HOUR, 5).await;
    assert_eq!(fired(&env.judge().await), []);
    // Anomaly events (what the detectors write) never feed a detector.
    for _ in 0..10 {
        let mut e = event(&denied, env.now - 10 * 60_000_000);
        e.kind = EventKind::Anomaly;
        env.journal.append(&e).await.unwrap();
    }
    assert_eq!(fired(&env.judge().await), []);
    let mut forbidden = call("mallory", "search");
    forbidden.outcome = Outcome::Forbidden;
    for i in 0..6 {
        let c = if i % 2 == 0 { &denied } else { &forbidden };
        env.journal
            .append(&event(c, env.now - 5 * 60_000_000 + i * 1_000_000))
            .await
            .unwrap();
    }
    let found = env.judge().await;
    assert_eq!(
        fired(&found),
        [("authz_failures".into(), "user:mallory".into())]
    );
    assert_eq!(found[0].event.detail.as_ref().unwrap()["observed"], 5);
    env.journal
        .append(&event(&denied, env.now - 60_000_000))
        .await
        .unwrap();
    assert_eq!(fired(&env.judge().await), [], "once per hour");
}

#[tokio::test]
async fn disabled_detectors_fire_nothing() {
    let mut env = env(AnomalyConfig {
        enabled: false,
        ..Default::default()
    })
    .await;
    env.history("alice", 3).await;
    let mut delete = call("alice", "delete_repo");
    delete.operation = "delete";
    env.calls(&delete, this_hour(), 100).await;
    assert_eq!(fired(&env.judge().await), []);
}

#[test]
fn networks_are_masked_to_the_configured_prefix() {
    assert_eq!(network("10.1.2.3", 24, 48).as_deref(), Some("10.1.2.0/24"));
    assert_eq!(network("10.1.2.3", 16, 48).as_deref(), Some("10.1.0.0/16"));
    assert_eq!(
        network("10.1.2.3:443", 24, 48).as_deref(),
        Some("10.1.2.0/24")
    );
    assert_eq!(
        network("2001:db8:1:2::1", 24, 48).as_deref(),
        Some("2001:db8:1::/48")
    );
    assert_eq!(
        network("[2001:db8:1:2::1]:8080", 24, 64).as_deref(),
        Some("2001:db8:1:2::/64")
    );
    assert_eq!(
        network("::ffff:192.0.2.7", 24, 48).as_deref(),
        Some("192.0.2.0/24")
    );
    assert_eq!(network("not-an-ip", 24, 48), None);
    assert_eq!(network("10.1.2.3", 0, 48).as_deref(), Some("0.0.0.0/0"));
}
