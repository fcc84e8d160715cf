//! Signing keys of an issuer: fetched from a JWKS URL, a file, or found by discovery; cached,
//! refreshed in the background, and re-fetched (at most once per interval) when a token names
//! a key id the cache does not know — which is how key rotation shows up.
//!
//! Once keys are cached, a fetch failure keeps the old keys: an IdP outage does not stop the
//! gateway from validating tokens signed with known keys.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::discovery;
use crate::error::IdentityError;

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS URL.
    Url(String),
    /// A JWKS file (a SPIFFE trust bundle, say), re-read when its modification time changes.
    File(PathBuf),
    /// The `jwks_uri` of the issuer's discovery metadata.
    Discover(String),
}

/// One usable verification key.
pub struct VerifyKey {
    /// The key.
    pub key: DecodingKey,
    /// The algorithm the JWK pins, if it does.
    pub alg: Option<Algorithm>,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    loaded: bool,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    last_error: Option<String>,
    file_mtime: Option<SystemTime>,
}

/// Why a key could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    /// No keys were ever loaded (the IdP was unreachable since start): retry later.
    Unavailable(String),
    /// Keys are loaded, but none has this id (even after a refresh).
    UnknownKid,
}

/// The cached keys of one issuer.
pub struct Jwks {
    source: KeySource,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    refresh: tokio::sync::Mutex<RefreshState>,
    /// Minimum time between fetches caused by unknown key ids (and between cold-start retries
    /// that callers trigger).
    min_interval: Duration,
    /// Keys older than this are refreshed in the background.
    max_age: Duration,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("source", &self.source)
            .finish()
    }
}

impl Jwks {
    /// Default minimum interval between refreshes caused by unknown key ids.
    pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(30);
    /// Default age after which keys are refreshed in the background.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

    /// A cache for `source`; nothing is fetched until [`Jwks::refresh`] or a lookup.
    pub fn new(source: KeySource, client: reqwest::Client) -> Jwks {
        Jwks {
            source,
            client,
            keys: ArcSwap::from_pointee(KeySet::default()),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
            min_interval: Self::DEFAULT_MIN_INTERVAL,
            max_age: Self::DEFAULT_MAX_AGE,
        }
    }

    /// Sets the refresh intervals (tests use short ones).
    pub fn with_intervals(mut self, min_interval: Duration, max_age: Duration) -> Jwks {
        self.min_interval = min_interval;
        self.max_age = max_age;
        self
    }

    /// Whether keys have been loaded.
    pub fn is_loaded(&self) -> bool {
        self.keys.load().loaded
    }

    /// The key with id `kid`, refreshing (rate-limited) when it is unknown or nothing is loaded.
    pub async fn key(self: &Arc<Self>, kid: &str) -> Result<Arc<VerifyKey>, KeyLookup> {
        let set = self.keys.load();
        if let Some(k) = set.by_kid.get(kid) {
            self.refresh_if_stale();
            return Ok(k.clone());
        }
        let loaded = set.loaded;
        drop(set);
        // A cold cache retries sooner than a rotation check: until keys load, every
        // authenticated request fails.
        let interval = if loaded {
            self.min_interval
        } else {
            self.min_interval.min(Duration::from_secs(2))
        };
        let _ = self.refresh_at_most(interval).await;
        let set = self.keys.load();
        if let Some(k) = set.by_kid.get(kid) {
            return Ok(k.clone());
        }
        if set.loaded {
            Err(KeyLookup::UnknownKid)
        } else {
            let why = self.refresh.lock().await.last_error.clone();
            Err(KeyLookup::Unavailable(why.unwrap_or_else(|| {
                "signing keys are not loaded yet".into()
            })))
        }
    }

    fn refresh_if_stale(self: &Arc<Self>) {
        let Ok(state) = self.refresh.try_lock() else {
            return;
        };
        let stale = state
            .last_attempt
            .is_none_or(|t| t.elapsed() >= self.max_age);
        drop(state);
        if stale {
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.refresh_at_most(me.max_age).await;
            });
        }
    }

    /// Fetches the keys unless the last attempt was less than `interval` ago. Concurrent callers
    /// wait for one fetch.
    pub async fn refresh_at_most(&self, interval: Duration) -> Result<(), IdentityError> {
        let mut state = self.refresh.lock().await;
        if state.last_attempt.is_some_and(|t| t.elapsed() < interval) {
            return match &state.last_error {
                Some(e) if !self.is_loaded() => {
                    Err(IdentityError::Unavailable { reason: e.clone() })
                }
                _ => Ok(()),
            };
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch(&mut state).await {
            Ok(Some(set)) => {
                tracing::debug!(source = ?self.source, keys = set.by_kid.len(), "signing keys loaded");
                self.keys.store(Arc::new(set));
                state.last_success = Some(Instant::now());
                state.last_error = None;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                let reason = e.to_string();
                if self.is_loaded() {
                    tracing::warn!(source = ?self.source, error = %reason, "refreshing signing keys failed; keeping the cached keys");
                } else {
                    tracing::warn!(source = ?self.source, error = %reason, "cannot load signing keys; authenticated requests get 503 until they load");
                }
                state.last_error = Some(reason);
                Err(e)
            }
        }
    }

    /// Fetches now (used at start-up).
    pub async fn refresh(&self) -> Result<(), IdentityError> {
        self.refresh_at_most(Duration::ZERO).await
    }

    /// `Ok(None)` when a file source has not changed.
    async fn fetch(&self, state: &mut RefreshState) -> Result<Option<KeySet>, IdentityError> {
        let body = match &self.source {
            KeySource::File(path) => {
                let unavailable = |e: std::io::Error| IdentityError::Unavailable {
                    reason: format!("trust bundle {}: {e}", path.display()),
                };
                let mtime = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .map_err(unavailable)?;
                if self.is_loaded() && state.file_mtime == Some(mtime) {
                    return Ok(None);
                }
                state.file_mtime = Some(mtime);
                std::fs::read(path).map_err(unavailable)?
            }
            KeySource::Url(url) => self.get(url).await?,
            KeySource::Discover(issuer) => {
                let meta = discovery::discover(&self.client, issuer).await?;
                let url = meta.jwks_uri.ok_or_else(|| IdentityError::Unavailable {
                    reason: format!("the metadata of {issuer} has no jwks_uri"),
                })?;
                self.get(&url).await?
            }
        };
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| IdentityError::Unavailable {
                reason: format!("invalid JWKS from {:?}: {e}", self.source),
            })?;
        Ok(Some(key_set(&set)))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, IdentityError> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| IdentityError::Unavailable {
                reason: format!("JWKS {url}: {}", crate::http_error(&e)),
            })?;
        if !resp.status().is_success() {
            return Err(IdentityError::Unavailable {
                reason: format!("JWKS {url}: HTTP {}", resp.status().as_u16()),
            });
        }
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| IdentityError::Unavailable {
                reason: format!("JWKS {url}: {}", crate::http_error(&e)),
            })
    }
}

/// The signature keys of a JWKS with a key id; symmetric (`oct`) keys are never accepted: a
/// published key set is public, so an HMAC key in it would let anyone sign tokens.
fn key_set(set: &JwkSet) -> KeySet {
    let mut by_kid = HashMap::new();
    for jwk in &set.keys {
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            continue;
        }
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        by_kid.insert(kid.clone(), Arc::new(VerifyKey { key, alg }));
    }
    KeySet {
        by_kid,
        loaded: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A JWKS endpoint whose document the test changes, counting fetches. (A test double: the
    /// rotation timing is what is tested; real IdPs are used in the end-to-end tests.)
    async fn jwks_server(body: Arc<std::sync::Mutex<String>>, hits: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                hits.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let b = body.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                    b.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        url
    }

    fn doc(kids: &[&str]) -> String {
        let keys: Vec<serde_json::Value> = kids
            .iter()
            .map(|k| {
                serde_json::json!({"kty": "EC", "kid": k, "crv": "P-256", "alg": "ES256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    #[tokio::test]
    async fn an_unknown_kid_refreshes_at_most_once_per_interval_and_finds_a_rotated_key() {
        let body = Arc::new(std::sync::Mutex::new(doc(&["old"])));
        let hits = Arc::new(AtomicUsize::new(0));
        let url = jwks_server(body.clone(), hits.clone()).await;
        let jwks = Arc::new(
            Jwks::new(KeySource::Url(url), reqwest::Client::new())
                .with_intervals(Duration::from_millis(300), Duration::from_secs(600)),
        );
        assert!(jwks.key("old").await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // The IdP rotates; a token with the new kid arrives within the interval: no refetch yet.
        *body.lock().unwrap() = doc(&["old", "new"]);
        assert_eq!(jwks.key("new").await.err(), Some(KeyLookup::UnknownKid));
        assert_eq!(hits.load(Ordering::SeqCst), 1, "rate-limited");
        // After the interval, one refetch finds it.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(jwks.key("new").await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        // A flood of made-up kids does not hammer the IdP.
        for i in 0..20 {
            assert!(jwks.key(&format!("forged-{i}")).await.is_err());
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn symmetric_and_encryption_keys_are_ignored() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}))
        .unwrap();
        let ks = key_set(&set);
        assert!(ks.by_kid.contains_key("ec"));
        assert!(!ks.by_kid.contains_key("h"));
        assert!(!ks.by_kid.contains_key("enc"));
        assert_eq!(ks.by_kid["ec"].alg, Some(Algorithm::ES256));
    }
}
