//! Sealing: authenticated encryption (XChaCha20-Poly1305) of state the gateway hands to clients
//! — session ids and MRTR `requestState` — so any replica holding the key can open it and no
//! client can forge or read it.
//!
//! Keys live in `<data-dir>/keys/seal.json` as a list, newest first, each with a key id that is
//! part of every sealed token: rotating in a new key keeps tokens sealed with older keys valid.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Why the keyring could not be loaded or a token could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is not valid.
    #[error("key file {path} is invalid: {reason}")]
    InvalidKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The token is malformed, sealed with an unknown key, tampered with, or for another purpose.
    #[error("token cannot be opened")]
    Invalid,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    key: String,
}

struct Key {
    kid: String,
    cipher: XChaCha20Poly1305,
    /// Derives the nonces of deterministic seals (a key of its own, so a nonce reveals
    /// nothing about the plaintext to whoever lacks the key).
    nonce_key: [u8; 32],
}

impl Key {
    fn new(kid: String, raw: &[u8]) -> Key {
        use sha2::Digest;
        let nonce_key = sha2::Sha256::new()
            .chain_update(b"gatehouse/seal/deterministic-nonce/v1")
            .chain_update(raw)
            .finalize()
            .into();
        Key {
            kid,
            cipher: XChaCha20Poly1305::new_from_slice(raw).expect("32-byte key"),
            nonce_key,
        }
    }
}

/// The set of sealing keys; the first one seals, all of them open.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// Loads `<dir>/keys/seal.json`, creating it with a fresh key (mode 0600) if it does not exist.
    pub fn load_or_create(data_dir: &Path) -> Result<Keyring, SealError> {
        let dir = data_dir.join("keys");
        let path = dir.join("seal.json");
        let io = |source| SealError::Io {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            std::fs::create_dir_all(&dir).map_err(io)?;
            let file = KeyFile {
                keys: vec![new_stored_key()],
            };
            let text = serde_json::to_string_pretty(&file).expect("key file serialises");
            write_private(&path, text.as_bytes()).map_err(io)?;
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| SealError::InvalidKeyFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut keys = Vec::new();
        for k in file.keys {
            let raw = B64.decode(&k.key).map_err(|e| SealError::InvalidKeyFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if raw.len() != 32 || k.kid.is_empty() || k.kid.contains('.') {
                return Err(SealError::InvalidKeyFile {
                    path: path.clone(),
                    reason: format!("key {:?} must be 32 bytes with a kid without dots", k.kid),
                });
            }
            keys.push(Key::new(k.kid, &raw));
        }
        if keys.is_empty() {
            return Err(SealError::InvalidKeyFile {
                path,
                reason: "no keys".into(),
            });
        }
        Ok(Keyring { keys })
    }

    /// A keyring with one random key, kept in memory only (tests, ephemeral runs).
    pub fn ephemeral() -> Keyring {
        let k = new_stored_key();
        let raw = B64.decode(&k.key).expect("own encoding");
        Keyring {
            keys: vec![Key::new(k.kid, &raw)],
        }
    }

    /// Seals `plaintext` for `purpose` (bound as associated data, so a session id can never be
    /// replayed as a request state). Output: `<kid>.<base64url(nonce ‖ ciphertext)>`.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        self.seal_with_nonce(purpose, plaintext, nonce)
    }

    /// Seals like [`Keyring::seal`], but the same purpose and plaintext always give the same
    /// token (the nonce is a keyed hash of both, SIV-style): for handles a client compares,
    /// such as task ids that must match across a result and later notifications. Equal tokens
    /// reveal equal plaintexts and nothing more.
    pub fn seal_deterministic(&self, purpose: &str, plaintext: &[u8]) -> String {
        use sha2::Digest;
        let key = &self.keys[0];
        let digest = sha2::Sha256::new()
            .chain_update(key.nonce_key)
            .chain_update((purpose.len() as u64).to_be_bytes())
            .chain_update(purpose.as_bytes())
            .chain_update(plaintext)
            .finalize();
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&digest[..24]);
        self.seal_with_nonce(purpose, plaintext, nonce)
    }

    fn seal_with_nonce(&self, purpose: &str, plaintext: &[u8], nonce: [u8; 24]) -> String {
        let key = &self.keys[0];
        let ct = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose.as_bytes(),
                },
            )
            .expect("encryption does not fail");
        let mut out = Vec::with_capacity(24 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("{}.{}", key.kid, B64.encode(out))
    }

    /// Opens a token sealed by [`Keyring::seal`] with any key of this ring.
    pub fn open(&self, purpose: &str, token: &str) -> Result<Vec<u8>, SealError> {
        let (kid, body) = token.split_once('.').ok_or(SealError::Invalid)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(SealError::Invalid)?;
        let raw = B64.decode(body).map_err(|_| SealError::Invalid)?;
        if raw.len() < 24 + 16 {
            return Err(SealError::Invalid);
        }
        let (nonce, ct) = raw.split_at(24);
        key.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SealError::Invalid)
    }
}

fn new_stored_key() -> StoredKey {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let mut kid = [0u8; 6];
    rand::rng().fill_bytes(&mut kid);
    StoredKey {
        kid: hex::encode(kid),
        key: B64.encode(raw),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_rejects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::load_or_create(dir.path()).unwrap();
        let t = ring.seal("session", b"hello");
        assert_eq!(ring.open("session", &t).unwrap(), b"hello");
        assert!(ring.open("request-state", &t).is_err(), "purpose is bound");
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(ring.open("session", &bad).is_err());
        // A second load reads the same key: tokens survive a restart.
        let again = Keyring::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open("session", &t).unwrap(), b"hello");
    }

    #[test]
    fn deterministic_seals_are_stable_and_still_bound() {
        let ring = Keyring::ephemeral();
        let a = ring.seal_deterministic("task", b"alice:7");
        assert_eq!(a, ring.seal_deterministic("task", b"alice:7"));
        assert_ne!(a, ring.seal_deterministic("task", b"alice:8"));
        assert_ne!(a, ring.seal_deterministic("other", b"alice:7"));
        assert_eq!(ring.open("task", &a).unwrap(), b"alice:7");
        assert!(ring.open("other", &a).is_err(), "purpose is bound");
        let elsewhere = Keyring::ephemeral();
        assert_ne!(
            a.split_once('.').unwrap().1,
            elsewhere
                .seal_deterministic("task", b"alice:7")
                .split_once('.')
                .unwrap()
                .1,
            "the nonce depends on the key, not only on the plaintext"
        );
    }

    #[test]
    fn old_keys_keep_working_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::load_or_create(dir.path()).unwrap();
        let old = ring.seal("session", b"x");
        let path = dir.path().join("keys/seal.json");
        let mut file: KeyFile =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        file.keys.insert(0, new_stored_key());
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        let rotated = Keyring::load_or_create(dir.path()).unwrap();
        assert_eq!(rotated.open("session", &old).unwrap(), b"x");
        assert!(
            !rotated
                .seal("session", b"y")
                .starts_with(old.split('.').next().unwrap())
        );
    }
}
