//! A bounded cache whose entries expire at a deadline the caller gives (a token's `exp`), and
//! the SHA-256 that keys caches of values derived from a secret without storing the secret.

use std::collections::HashMap;
use std::sync::Mutex;

/// SHA-256 of a secret, the cache key.
pub type SecretHash = [u8; 32];

/// Hashes a secret for use as a key (SHA-256, aws-lc's assembly: this runs on every
/// authenticated request).
pub fn hash_secret(secret: &str) -> SecretHash {
    sha256(secret.as_bytes())
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Values that stay valid until a unix-second deadline.
#[derive(Debug)]
pub struct ExpiringCache<K, V> {
    entries: Mutex<HashMap<K, (V, i64)>>,
    capacity: usize,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> ExpiringCache<K, V> {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        ExpiringCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The value for `key` if its deadline is later than `now + margin`.
    pub fn get<Q>(&self, key: &Q, margin: i64) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (v, deadline) = entries.get(key)?;
        (*deadline > unix_now() + margin).then(|| v.clone())
    }

    /// Stores `value` until `deadline`. When full, expired entries go first, then arbitrary
    /// ones (a miss only costs a re-validation).
    pub fn insert(&self, key: K, value: V, deadline: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let now = unix_now();
            entries.retain(|_, (_, d)| *d > now);
            if entries.len() >= self.capacity {
                let drop: Vec<K> = entries
                    .keys()
                    .take(entries.len() / 2 + 1)
                    .cloned()
                    .collect();
                for k in drop {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key, (value, deadline));
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Number of entries (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let c = ExpiringCache::new(4);
        let now = unix_now();
        c.insert(hash_secret("a"), 1, now + 100);
        c.insert(hash_secret("old"), 2, now - 1);
        assert_eq!(c.get(&hash_secret("a"), 0), Some(1));
        assert_eq!(
            c.get(&hash_secret("a"), 200),
            None,
            "margin before the deadline"
        );
        assert_eq!(c.get(&hash_secret("old"), 0), None);
        for i in 0..20 {
            c.insert(hash_secret(&i.to_string()), i, now + 100);
        }
        assert!(c.len() <= 4);
    }
}
