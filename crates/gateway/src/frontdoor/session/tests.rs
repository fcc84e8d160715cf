//! The session store on a clock the tests move: expiry, both caps and their eviction order,
//! what ending a session does, and revocation through a real SQLite store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gatehouse_identity::{Caller, Principal};
use gatehouse_telemetry::Metrics;
use gatehouse_wire::ProtocolVersion;
use serde_json::json;

use super::clock::Clock;
use super::*;
use crate::seal::Keyring;

/// 2023-11-14T22:13:20Z: any fixed start works.
const START_UNIX_MS: u64 = 1_700_000_000_000;

struct Fixture {
    store: SessionStore,
    elapsed_ms: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    keys: Arc<Keyring>,
}

fn config(ttl: u64, idle: u64, per_principal: usize, max: usize) -> SessionStoreConfig {
    SessionStoreConfig {
        ttl: Duration::from_secs(ttl),
        idle_timeout: Duration::from_secs(idle),
        max_per_principal: per_principal,
        max,
        revocations: None,
        metrics: Metrics::new(),
    }
}

impl Fixture {
    fn new(config: SessionStoreConfig) -> Fixture {
        Self::with_keys(config, Arc::new(Keyring::ephemeral()))
    }

    fn with_keys(config: SessionStoreConfig, keys: Arc<Keyring>) -> Fixture {
        let elapsed_ms = Arc::new(AtomicU64::new(0));
        let metrics = config.metrics.clone();
        let store = config.build_with(Clock::Manual {
            start_unix_ms: START_UNIX_MS,
            elapsed_ms: elapsed_ms.clone(),
        });
        Fixture {
            store,
            elapsed_ms,
            metrics,
            keys,
        }
    }

    fn advance(&self, secs: u64) {
        self.elapsed_ms.fetch_add(secs * 1000, Ordering::Relaxed);
    }

    fn open(&self, caller: &Caller) -> Arc<Session> {
        let claims = SessionClaims {
            sub: caller.principal.key().to_string(),
            ..claims()
        };
        self.store
            .create(&self.keys, claims, ProtocolVersion::V2025_06_18, caller)
    }

    async fn get(&self, id: &str, caller: &Caller) -> Result<Arc<Session>, SessionLookup> {
        self.store.get(&self.keys, id, "/mcp", caller).await
    }

    fn ended(&self, reason: &str) -> u64 {
        let line = format!("gatehouse_sessions_ended_total{{reason=\"{reason}\"}} ");
        self.metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&line).map(|n| n.parse().unwrap()))
            .unwrap_or_else(|| panic!("no {line}"))
    }
}

fn claims() -> SessionClaims {
    SessionClaims {
        vs: "/mcp".into(),
        v: "2025-06-18".into(),
        caps: json!({}),
        info: json!({"name": "t"}),
        up: HashMap::from([(
            "echo".into(),
            UpstreamSession {
                id: "up-1".into(),
                version: "2025-06-18".into(),
            },
        )]),
        iat: 0,
        sub: "https://idp#alice".into(),
    }
}

fn user(name: &str) -> Caller {
    let claims = json!({"iss": "https://idp", "sub": name});
    let principal = Principal::from_claims(
        claims.as_object().unwrap().clone(),
        &gatehouse_config::ClaimMapping::default(),
        false,
    );
    let mut caller = Caller::authenticated(Arc::new(principal), format!("token-{name}"), None);
    caller.source_ip = Some("192.0.2.1".parse().unwrap());
    caller
}

fn anonymous_from(ip: &str) -> Caller {
    let mut caller = Caller::anonymous();
    caller.source_ip = Some(ip.parse::<IpAddr>().unwrap());
    caller
}

/// A call of `session` that runs until it is aborted.
fn running_call(session: &Session) -> tokio::task::JoinHandle<()> {
    let call = tokio::spawn(std::future::pending::<()>());
    let id = gatehouse_wire::Id::Number(session.inflight.lock().unwrap().len() as i64);
    session
        .inflight
        .lock()
        .unwrap()
        .insert(id, call.abort_handle());
    call
}

fn ids(sessions: &[Arc<Session>]) -> Vec<&str> {
    sessions.iter().map(|s| s.id.as_str()).collect()
}

#[tokio::test]
async fn another_replica_with_the_same_key_serves_the_session() {
    let keys = Arc::new(Keyring::ephemeral());
    let a = Fixture::with_keys(config(60, 60, 10, 10), keys.clone());
    let alice = user("alice");
    let s = a.open(&alice);
    let b = Fixture::with_keys(config(60, 60, 10, 10), keys);
    let again = b.get(&s.id, &alice).await.unwrap();
    assert_eq!(
        b.get(&s.id, &user("mallory")).await.unwrap_err(),
        SessionLookup::Unknown,
        "another principal cannot use the session"
    );
    assert_eq!(again.claims.up["echo"].id, "up-1");
    assert_eq!(again.version, ProtocolVersion::V2025_06_18);
    assert_eq!(
        b.store
            .get(&b.keys, &s.id, "/other", &alice)
            .await
            .unwrap_err(),
        SessionLookup::Unknown
    );
    assert_eq!(
        b.get(&s.id.replace('.', "x."), &alice).await.unwrap_err(),
        SessionLookup::Unknown
    );
    b.store.end(&s.id);
    assert_eq!(
        b.get(&s.id, &alice).await.unwrap_err(),
        SessionLookup::Gone(EndReason::Deleted)
    );
    assert_eq!(b.ended("deleted"), 1);
}

#[tokio::test]
async fn a_session_idle_too_long_expires_and_stays_refused_though_its_id_still_opens() {
    let f = Fixture::new(config(86_400, 600, 10, 10));
    let alice = user("alice");
    let s = f.open(&alice);
    f.advance(500);
    assert!(
        f.get(&s.id, &alice).await.is_ok(),
        "used within the timeout"
    );
    f.advance(590);
    assert!(
        f.get(&s.id, &alice).await.is_ok(),
        "idle counts from the last request, not from the start"
    );
    f.advance(601);
    assert_eq!(
        f.get(&s.id, &alice).await.unwrap_err(),
        SessionLookup::Gone(EndReason::Idle)
    );
    assert_eq!(s.end_reason(), Some(EndReason::Idle));
    assert_eq!(ids(&f.store.sweep()), vec![s.id.as_str()]);
    assert!(f.store.sweep().is_empty(), "handed over once");
    f.advance(1);
    assert_eq!(
        f.get(&s.id, &alice).await.unwrap_err(),
        SessionLookup::Gone(EndReason::Idle),
        "its sealed id still opens, but this process ended it"
    );
    assert_eq!(
        f.get(&s.id, &user("mallory")).await.unwrap_err(),
        SessionLookup::Unknown,
        "another principal learns nothing of it"
    );
    assert_eq!(f.store.len(), 0);
    assert_eq!(f.ended("idle"), 1);
}

#[tokio::test]
async fn the_sweep_ends_idle_and_expired_sessions_that_see_no_request() {
    let f = Fixture::new(config(3_600, 600, 10, 10));
    let (alice, bob) = (user("alice"), user("bob"));
    let idle = f.open(&alice);
    let busy = f.open(&bob);
    f.advance(500);
    assert!(f.store.sweep().is_empty());
    f.get(&busy.id, &bob).await.unwrap();
    f.advance(200);
    assert_eq!(ids(&f.store.sweep()), vec![idle.id.as_str()]);
    assert_eq!(idle.end_reason(), Some(EndReason::Idle));
    // In use all along, it still ends session_ttl after it opened.
    while f.elapsed_ms.load(Ordering::Relaxed) < 3_500_000 {
        f.advance(400);
        f.get(&busy.id, &bob).await.unwrap();
        assert!(f.store.sweep().is_empty());
    }
    f.advance(200);
    assert_eq!(ids(&f.store.sweep()), vec![busy.id.as_str()]);
    assert_eq!(busy.end_reason(), Some(EndReason::Ttl));
    assert_eq!((f.ended("idle"), f.ended("ttl")), (1, 1));
    assert!(f.store.count_by_virtual_server().is_empty());
}

#[tokio::test]
async fn a_session_is_not_idle_while_one_of_its_calls_runs() {
    let f = Fixture::new(config(86_400, 600, 10, 10));
    let alice = user("alice");
    let s = f.open(&alice);
    let call = running_call(&s);
    f.advance(3_000);
    assert!(f.store.sweep().is_empty(), "a long call keeps it open");
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    // The finished call's handle is still registered (its stream never ended): it is ignored.
    assert_eq!(ids(&f.store.sweep()), vec![s.id.as_str()]);
    assert_eq!(s.end_reason(), Some(EndReason::Idle));
}

#[tokio::test]
async fn a_principal_over_its_cap_loses_its_session_idle_the_longest() {
    let f = Fixture::new(config(86_400, 3_600, 3, 100));
    let (alice, bob) = (user("alice"), user("bob"));
    let a = f.open(&alice);
    f.advance(1);
    let b = f.open(&alice);
    f.advance(1);
    let c = f.open(&alice);
    let bobs = f.open(&bob);
    f.advance(1);
    f.get(&a.id, &alice).await.unwrap();
    f.advance(1);
    let d = f.open(&alice);
    assert_eq!(
        b.end_reason(),
        Some(EndReason::CapPrincipal),
        "idle the longest"
    );
    assert_eq!(
        f.get(&b.id, &alice).await.unwrap_err(),
        SessionLookup::Gone(EndReason::CapPrincipal)
    );
    // (Looked at without a request, which would count as use.)
    assert!([&a, &c, &d].iter().all(|s| s.end_reason().is_none()));
    assert!(bobs.end_reason().is_none(), "other principals keep theirs");
    f.advance(1);
    let e = f.open(&alice);
    assert_eq!(
        c.end_reason(),
        Some(EndReason::CapPrincipal),
        "then the next idle the longest"
    );
    assert_eq!(ids(&f.store.sweep()), vec![b.id.as_str(), c.id.as_str()]);
    assert!(e.end_reason().is_none());
    assert_eq!(f.store.len(), 4);
    assert_eq!(f.ended("cap_principal"), 2);
    assert_eq!(f.ended("cap_total"), 0);
}

#[tokio::test]
async fn anonymous_callers_are_capped_per_source_address() {
    let f = Fixture::new(config(86_400, 3_600, 2, 100));
    let (one, two) = (anonymous_from("10.0.0.1"), anonymous_from("10.0.0.2"));
    let first = f.open(&one);
    let other = f.open(&two);
    f.advance(1);
    f.open(&one);
    f.open(&one);
    assert_eq!(first.end_reason(), Some(EndReason::CapPrincipal));
    assert!(other.end_reason().is_none());
    assert_eq!(f.store.len(), 3);
}

#[tokio::test]
async fn the_process_cap_ends_the_sessions_idle_the_longest_in_order() {
    let f = Fixture::new(config(86_400, 86_400, 1_000, 100));
    let callers: Vec<Caller> = (0..160).map(|i| user(&format!("u{i}"))).collect();
    let first: Vec<Arc<Session>> = (0..100)
        .map(|i| {
            f.advance(1);
            f.open(&callers[i])
        })
        .collect();
    // The even ones are used again, later than every odd one, in order.
    for i in (0..100).step_by(2) {
        f.advance(1);
        f.get(&first[i].id, &callers[i]).await.unwrap();
    }
    let odd = (1..100).step_by(2);
    let even = (0..100).step_by(2);
    let expected: Vec<&str> = odd.chain(even).map(|i| first[i].id.as_str()).collect();
    for (n, caller) in callers[100..130].iter().enumerate() {
        f.advance(1);
        f.open(caller);
        assert_eq!(f.store.len(), 100, "after {n} more");
    }
    assert_eq!(ids(&f.store.sweep()), expected[..30]);
    // Using a session that is next in line saves it: the next after it goes instead.
    f.get(&first[61].id, &callers[61]).await.unwrap();
    for caller in &callers[130..160] {
        f.advance(1);
        f.open(caller);
    }
    let mut rest: Vec<&str> = expected[30..61].to_vec();
    rest.retain(|id| *id != first[61].id);
    assert_eq!(ids(&f.store.sweep()), rest);
    assert!(first[61].end_reason().is_none());
    assert_eq!(f.ended("cap_total"), 60);
}

#[tokio::test]
async fn ending_a_session_aborts_its_calls_and_hands_it_to_the_sweep_once() {
    let f = Fixture::new(config(86_400, 3_600, 1, 100));
    let alice = user("alice");
    let s = f.open(&alice);
    let call = running_call(&s);
    let newer = f.open(&alice);
    assert!(
        call.await.unwrap_err().is_cancelled(),
        "the call was aborted"
    );
    assert_eq!(ids(&f.store.sweep()), vec![s.id.as_str()]);
    assert!(f.store.touch(&newer));
    assert!(!f.store.touch(&s), "an ended session is not used again");
}

#[tokio::test]
async fn lowering_the_caps_by_a_reload_trims_at_the_next_sweep() {
    let f = Fixture::new(config(86_400, 3_600, 10, 10));
    let alice = user("alice");
    let opened: Vec<Arc<Session>> = (0..4)
        .map(|_| {
            f.advance(1);
            f.open(&alice)
        })
        .collect();
    let mut gateway = gatehouse_config::GatewayConfig::default();
    gateway.sessions.max_per_principal = 2;
    f.store.reconfigure(&gateway);
    assert_eq!(f.store.len(), 4, "nothing ends inside the reload");
    assert_eq!(ids(&f.store.sweep()), ids(&opened[..2]));
    assert_eq!(f.store.len(), 2);
}

/// Two processes sharing one store (a real SQLite file) and one sealing key.
async fn replicas() -> (tempfile::TempDir, gatehouse_store::Store, Fixture, Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let db = gatehouse_store::Store::open_sqlite_in(dir.path())
        .await
        .unwrap();
    let keys = Arc::new(Keyring::ephemeral());
    let replica = |db: &gatehouse_store::Store| {
        let mut c = config(86_400, 3_600, 10, 100);
        c.revocations = Some(db.session_revocations());
        Fixture::with_keys(c, keys.clone())
    };
    let (a, b) = (replica(&db), replica(&db));
    (dir, db, a, b)
}

#[tokio::test]
async fn a_deleted_session_is_refused_after_a_restart_and_ends_on_other_replicas() {
    let (_dir, db, a, b) = replicas().await;
    let alice = user("alice");
    let s = a.open(&alice);
    let on_b = b.get(&s.id, &alice).await.unwrap();
    b.store.follow_revocations().await.unwrap();
    a.store.delete(&s).await.unwrap();
    assert_eq!(
        a.get(&s.id, &alice).await.unwrap_err(),
        SessionLookup::Gone(EndReason::Deleted)
    );
    // A restart: a new store on the same database, first sight of the id.
    let mut c = config(86_400, 3_600, 10, 100);
    c.revocations = Some(db.session_revocations());
    let restarted = Fixture::with_keys(c, a.keys.clone());
    assert_eq!(
        restarted.get(&s.id, &alice).await.unwrap_err(),
        SessionLookup::Gone(EndReason::Deleted)
    );
    // B served it before the DELETE: it learns of it by following the table.
    assert!(b.get(&s.id, &alice).await.is_ok());
    b.store.follow_revocations().await.unwrap();
    assert_eq!(
        b.get(&s.id, &alice).await.unwrap_err(),
        SessionLookup::Gone(EndReason::Deleted)
    );
    assert_eq!(on_b.end_reason(), Some(EndReason::Deleted));
    assert_eq!(ids(&b.store.sweep()), vec![s.id.as_str()]);
    assert_eq!((a.ended("deleted"), b.ended("deleted")), (1, 1));
}

#[tokio::test]
async fn only_the_first_sight_of_an_id_asks_the_store() {
    let (_dir, db, a, b) = replicas().await;
    let alice = user("alice");
    let seen = a.open(&alice);
    let unseen = a.open(&alice);
    b.get(&seen.id, &alice).await.unwrap();
    db.close().await;
    for _ in 0..3 {
        assert!(
            b.get(&seen.id, &alice).await.is_ok(),
            "served from memory without the store"
        );
    }
    assert_eq!(
        b.get(&unseen.id, &alice).await.unwrap_err(),
        SessionLookup::Unverifiable,
        "an id the store cannot vouch for is refused"
    );
    assert!(
        a.store.delete(&seen).await.is_err(),
        "a DELETE that is not durable fails"
    );
    assert!(
        a.get(&seen.id, &alice).await.is_ok(),
        "and leaves the session open for a retry"
    );
}
