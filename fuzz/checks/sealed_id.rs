//! Sealed ids: `gatehouse_gateway::seal::Keyring::open`, the session store and MRTR resume.
//!
//! The keyring is loaded (`Keyring::load_or_create`) from a key file with a fixed key and kid
//! `fuzz`, so that mutated seeds reach the decryption. The first input byte picks a mode:
//! - 0: the rest is a token nobody sealed (the seeds only look like sealed tokens: kid
//!   `fuzz`, base64url of nonce and ciphertext): it must not open for any purpose, must be
//!   `Unknown` to `SessionStore::get`, and must be refused as a `requestState` by
//!   `Parked::resume`;
//! - 1: seal the rest, open it back (same bytes), refuse it for the other purpose, and refuse
//!   it with any one character changed (the byte after the mode picks which);
//! - 2: seal the rest as a session id's claims and look it up: a lookup that succeeds has
//!   the virtual server and principal asked for and a known protocol version.

use std::sync::OnceLock;
use std::time::Duration;

use gatehouse_gateway::frontdoor::call::Parked;
use gatehouse_gateway::frontdoor::session::{SessionClaims, SessionLookup, SessionStore};
use gatehouse_gateway::seal::Keyring;
use gatehouse_wire::{Id, Message};

/// The purposes the gateway seals with (`frontdoor/session.rs`, `frontdoor/call.rs`).
const SESSION: &str = "gatehouse/session/v1";
const REQUEST_STATE: &str = "gatehouse/request-state/v1";
/// Prefix of gateway-minted `requestState` values (`frontdoor::call::STATE_PREFIX`).
const STATE_PREFIX: &str = gatehouse_gateway::frontdoor::call::STATE_PREFIX;
const VS: &str = "/mcp";
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

fn store() -> &'static SessionStore {
    static STORE: OnceLock<SessionStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = SessionStore::new(Duration::from_secs(3600));
        // One live session, so lookups also walk the live map.
        store.create(
            keys(),
            claims(serde_json::json!({})),
            "2025-06-18".parse().expect("known version"),
        );
        store
    })
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
        store()
            .get(keys(), token, VS, PRINCIPAL)
            .map(|s| s.id.clone()),
        Err(SessionLookup::Unknown),
        "a forged session id was accepted"
    );
    let retry = Message::request(Id::Number(1), "tools/call", None);
    for state in [token.to_string(), format!("{STATE_PREFIX}{token}")] {
        assert!(
            Parked::default()
                .resume(keys(), &state, &retry, VS, PRINCIPAL)
                .is_err(),
            "a forged requestState was accepted"
        );
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
}

fn sealed_claims(plaintext: &[u8]) {
    let token = keys().seal(SESSION, plaintext);
    let store = SessionStore::new(Duration::from_secs(100 * 365 * 24 * 3600));
    // Only the principal the claims name may use the session, on the virtual server they name.
    for principal in [PRINCIPAL, "https://idp.fuzz.invalid#mallory"] {
        if let Ok(session) = store.get(keys(), &token, VS, principal) {
            assert_eq!(session.claims.vs, VS);
            assert_eq!(session.claims.sub, principal);
            assert_eq!(session.version.as_str(), session.claims.v);
            assert_eq!(session.id, token);
        }
    }
}
