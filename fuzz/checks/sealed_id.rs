//! Sealed ids: `gatehouse_gateway::seal::Keyring::open`, the session store, MRTR resume and
//! task handles.
//!
//! The keyring is loaded (`Keyring::load_or_create`) from a key file with a fixed key and kid
//! `fuzz`, so that mutated seeds reach the decryption. The first input byte picks a mode:
//! - 0: the rest is a token nobody sealed (the seeds only look like sealed tokens: kid
//!   `fuzz`, base64url of nonce and ciphertext): it must not open for any purpose, must be
//!   `Unknown` to `SessionStore::get`, must be refused as a `requestState` by
//!   `Parked::resume`, and must name no task (`tasks::open`);
//! - 1: seal the rest, open it back (same bytes), refuse it for the other purpose, and refuse
//!   it with any one character changed (the byte after the mode picks which); the same for a
//!   task handle naming the rest as a task id, which also must not open for another principal
//!   or virtual server and must seal to the same handle twice;
//! - 2: seal the rest as a session id's claims and look it up: a lookup that succeeds has
//!   the virtual server and principal asked for and a known protocol version.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gatehouse_gateway::frontdoor::call::CallStream;
use gatehouse_gateway::frontdoor::mrtr::{Parked, STATE_PREFIX};
use gatehouse_gateway::frontdoor::session::{
    SessionClaims, SessionLookup, SessionStore, SessionStoreConfig,
};
use gatehouse_gateway::seal::Keyring;
use gatehouse_gateway::tasks::{self, TaskScope};
use gatehouse_identity::{Caller, Principal};
use gatehouse_wire::{Id, Message};

/// The purposes the gateway seals with (`frontdoor/session/store.rs`, `frontdoor/mrtr.rs`).
const SESSION: &str = "gatehouse/session/v1";
const REQUEST_STATE: &str = "gatehouse/request-state/v1";
const VS: &str = "/mcp";
const ISSUER: &str = "https://idp.fuzz.invalid";
/// `PRINCIPAL`'s key (issuer and subject).
const PRINCIPAL: &str = "https://idp.fuzz.invalid#alice";

/// The fixed fuzzing key (base64url of bytes 0..32) under kid `fuzz`: public on purpose.
const KEY_FILE: &str =
    r#"{"keys":[{"kid":"fuzz","key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}]}"#;

fn keys() -> &'static Keyring {
    static KEYS: OnceLock<Keyring> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gatehouse-fuzz-seal-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("keys")).expect("key folder");
        std::fs::write(dir.join("keys/seal.json"), KEY_FILE).expect("key file");
        let keys = Keyring::load_or_create(&dir).expect("the fixed key file loads");
        let _ = std::fs::remove_dir_all(&dir);
        keys
    })
}

/// A caller authenticated by `ISSUER` as `subject`.
fn caller(subject: &str) -> Caller {
    let claims = serde_json::json!({"iss": ISSUER, "sub": subject});
    let principal = Principal::from_claims(
        claims.as_object().expect("an object").clone(),
        &gatehouse_config::ClaimMapping::default(),
        false,
    );
    Caller::for_principal(Arc::new(principal))
}

fn alice() -> &'static Caller {
    static ALICE: OnceLock<Caller> = OnceLock::new();
    ALICE.get_or_init(|| caller("alice"))
}

fn mallory() -> &'static Caller {
    static MALLORY: OnceLock<Caller> = OnceLock::new();
    MALLORY.get_or_init(|| caller("mallory"))
}

/// A session store with the default bounds, its sessions living `ttl`.
fn new_store(ttl: Duration) -> SessionStore {
    let mut config = SessionStoreConfig::new(
        &gatehouse_config::GatewayConfig::default(),
        None,
        gatehouse_telemetry::Metrics::new(),
    );
    config.ttl = ttl;
    config.build()
}

fn store() -> &'static SessionStore {
    static STORE: OnceLock<SessionStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = new_store(Duration::from_secs(3600));
        // One live session, so lookups also walk the live map.
        store.create(
            keys(),
            claims(serde_json::json!({})),
            "2025-06-18".parse().expect("known version"),
            alice(),
        );
        store
    })
}

/// Runs a lookup to completion: with no store behind it, `SessionStore::get` never waits.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime")
        })
        .block_on(f)
}

fn scope(principal: &str, vs: &str) -> TaskScope {
    TaskScope {
        principal: principal.into(),
        vs_path: vs.into(),
    }
}

fn claims(caps: serde_json::Value) -> SessionClaims {
    SessionClaims {
        vs: VS.into(),
        v: "2025-06-18".into(),
        caps,
        info: serde_json::json!({"name": "fuzz"}),
        up: Default::default(),
        iat: 0,
        sub: PRINCIPAL.into(),
    }
}

/// Runs the check on one input; panics when an invariant does not hold.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => forged(&String::from_utf8_lossy(rest)),
        1 => round_trip(rest),
        _ => sealed_claims(rest),
    }
}

fn forged(token: &str) {
    for purpose in [SESSION, REQUEST_STATE] {
        if let Ok(plaintext) = keys().open(purpose, token) {
            panic!("a token nobody sealed opened for {purpose}: {token:?} -> {plaintext:?}");
        }
    }
    assert_eq!(
        block_on(store().get(keys(), token, VS, alice())).map(|s| s.id.clone()),
        Err(SessionLookup::Unknown),
        "a forged session id was accepted"
    );
    let retry = Message::request(Id::Number(1), "tools/call", None);
    for state in [token.to_string(), format!("{STATE_PREFIX}{token}")] {
        assert!(
            Parked::<CallStream>::default()
                .resume(keys(), &state, &retry, VS, PRINCIPAL)
                .is_err(),
            "a forged requestState was accepted"
        );
    }
    for handle in [
        token.to_string(),
        format!("{}{token}", tasks::HANDLE_PREFIX),
    ] {
        if let Some(task) = tasks::open(keys(), &scope(PRINCIPAL, VS), &handle) {
            panic!("a task handle nobody sealed opened: {handle:?} -> {task:?}");
        }
    }
}

fn round_trip(data: &[u8]) {
    let (pick, plaintext) = data.split_first().map_or((0, data), |(p, r)| (*p, r));
    for (purpose, other) in [(SESSION, REQUEST_STATE), (REQUEST_STATE, SESSION)] {
        let token = keys().seal(purpose, plaintext);
        assert!(
            token.starts_with("fuzz."),
            "sealed with another kid: {token}"
        );
        assert_eq!(keys().open(purpose, &token).expect("opens"), plaintext);
        assert!(keys().open(other, &token).is_err(), "purpose not bound");
        let mut chars: Vec<char> = token.chars().collect();
        let i = usize::from(pick) % chars.len();
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(
            keys().open(purpose, &tampered).is_err(),
            "token opened with character {i} changed: {tampered}"
        );
    }
    task_round_trip(pick, &String::from_utf8_lossy(plaintext));
}

fn task_round_trip(pick: u8, task_id: &str) {
    let owner = scope(PRINCIPAL, VS);
    let handle = tasks::seal(keys(), &owner, "files", task_id);
    assert_eq!(
        tasks::seal(keys(), &owner, "files", task_id),
        handle,
        "a task handle is not deterministic"
    );
    assert_eq!(
        tasks::open(keys(), &owner, &handle),
        Some(("files".to_string(), task_id.to_string()))
    );
    for other in [
        scope("https://idp.fuzz.invalid#mallory", VS),
        scope(PRINCIPAL, "/other"),
    ] {
        assert_eq!(
            tasks::open(keys(), &other, &handle),
            None,
            "a task handle opened for {other:?}"
        );
    }
    let mut chars: Vec<char> = handle.chars().collect();
    let i = usize::from(pick) % chars.len();
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    assert_eq!(
        tasks::open(keys(), &owner, &tampered),
        None,
        "a task handle opened with character {i} changed: {tampered}"
    );
}

fn sealed_claims(plaintext: &[u8]) {
    let token = keys().seal(SESSION, plaintext);
    let store = new_store(Duration::from_secs(100 * 365 * 24 * 3600));
    // Only the principal the claims name may use the session, on the virtual server they name.
    for caller in [alice(), mallory()] {
        if let Ok(session) = block_on(store.get(keys(), &token, VS, caller)) {
            assert_eq!(session.claims.vs, VS);
            assert_eq!(session.claims.sub, caller.principal.key());
            assert_eq!(session.version.as_str(), session.claims.v);
            assert_eq!(session.id, token);
        }
    }
}
