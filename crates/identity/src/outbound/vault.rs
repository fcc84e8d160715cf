//! The vault: secrets sealed with XChaCha20-Poly1305 in the store's `credentials` table —
//! users' refresh tokens (`user_oauth`) and the platform's own secrets (`gatehouse secret`,
//! read by `store:NAME` references). Every replica reads the same keys, from the same key file
//! (a mounted Kubernetes Secret, `--secrets-key-file`) or `GATEHOUSE_VAULT_KEY`.
//!
//! Each row records the id of the key that sealed it, so a rotation ([`Vault::rotate`]) can
//! re-seal row by row while every row stays readable: the key file holds the new key first and
//! the old one after it until nothing sealed with the old one is left.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use gatehouse_store::{CredentialKey, CredentialRecord, Credentials};

use super::vault_keys::{self, Key, Ring, Stamp};
use crate::cache::unix_now;
use crate::error::{CredentialError, IdentityError};

/// Environment variable holding the vault key (base64url, 32 bytes).
pub const VAULT_KEY_ENV: &str = "GATEHOUSE_VAULT_KEY";
/// The credentials-table identity of the platform's own secrets (`gatehouse secret`): no user
/// can be this issuer, so they never mix with users' tokens.
const PLATFORM_ISSUER: &str = "gatehouse:platform";
const PLATFORM_SUBJECT: &str = "secrets";
const PLATFORM_KIND: &str = "platform_secret";

/// Where the vault's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultKeySource {
    /// `GATEHOUSE_VAULT_KEY`: fixed for the process's life.
    Env,
    /// A key file, re-read when another process rewrites it (a rotation); created with a fresh
    /// key on first start when `create` is set (the data directory's default file).
    File {
        /// The file.
        path: PathBuf,
        /// Whether a missing file is created.
        create: bool,
    },
}

impl VaultKeySource {
    /// The source a process uses: the key file it was given (`--secrets-key-file`, which
    /// must exist), else `GATEHOUSE_VAULT_KEY`, else `<data_dir>/keys/vault.key` (created on
    /// first start). Both a file and the variable is an error: one of them would be ignored.
    pub fn choose(data_dir: &Path, key_file: Option<&Path>) -> Result<Self, IdentityError> {
        let env = std::env::var_os(VAULT_KEY_ENV).is_some();
        match key_file {
            Some(_) if env => Err(IdentityError::Config {
                reason: format!(
                    "both a vault key file and {VAULT_KEY_ENV} are set; keep one of them"
                ),
            }),
            Some(path) => Ok(VaultKeySource::File {
                path: path.to_path_buf(),
                create: false,
            }),
            None if env => Ok(VaultKeySource::Env),
            None => Ok(VaultKeySource::File {
                path: data_dir.join("keys").join("vault.key"),
                create: true,
            }),
        }
    }
}

/// What a [`Vault::rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRotation {
    /// Id of the key that sealed before.
    pub old_key_id: String,
    /// Id of the key that seals now.
    pub new_key_id: String,
    /// Rows re-sealed with the new key.
    pub resealed: usize,
    /// Rows no key of the file opens (sealed with a key that was lost): left as they are.
    pub unreadable: usize,
}

/// Encrypted storage of secrets in the store's `credentials` table.
pub struct Vault {
    credentials: Credentials,
    ring: RwLock<Arc<Ring>>,
    source: VaultKeySource,
    /// The key file's version last read, to notice a rotation by another process.
    stamp: Mutex<Option<Stamp>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("key_id", &self.key_id())
            .field("source", &self.source)
            .finish()
    }
}

impl Vault {
    /// Opens the vault with the keys of [`VaultKeySource::choose`]. Never from the config.
    pub fn open(
        data_dir: &Path,
        key_file: Option<&Path>,
        credentials: Credentials,
    ) -> Result<Vault, IdentityError> {
        Vault::from_source(VaultKeySource::choose(data_dir, key_file)?, credentials)
    }

    /// Opens the vault with the keys `source` holds.
    pub fn from_source(
        source: VaultKeySource,
        credentials: Credentials,
    ) -> Result<Vault, IdentityError> {
        let (ring, stamp) = match &source {
            VaultKeySource::Env => {
                let text = std::env::var(VAULT_KEY_ENV).unwrap_or_default();
                let ring =
                    vault_keys::parse_env(&text).map_err(|reason| IdentityError::Config {
                        reason: format!("{VAULT_KEY_ENV}: {reason}"),
                    })?;
                (ring, None)
            }
            VaultKeySource::File { path, create } => {
                let ring = vault_keys::read_file(path, *create)?;
                (ring, vault_keys::stamp(path))
            }
        };
        Ok(Vault {
            credentials,
            ring: RwLock::new(Arc::new(ring)),
            source,
            stamp: Mutex::new(stamp),
        })
    }

    /// A vault with an explicit key (tests).
    pub fn with_key(key: &[u8; 32], credentials: Credentials) -> Vault {
        Vault {
            credentials,
            ring: RwLock::new(Arc::new(Ring {
                keys: vec![Key::new(*key)],
            })),
            source: VaultKeySource::Env,
            stamp: Mutex::new(None),
        }
    }

    fn ring(&self) -> Arc<Ring> {
        self.ring.read().expect("vault ring lock").clone()
    }

    /// Id of the key that seals now.
    pub fn key_id(&self) -> String {
        self.ring().current().id.clone()
    }

    /// Re-reads the key file when another process rewrote it (a rotation); `Ok(true)` when
    /// the keys changed. A no-op for keys from the environment.
    pub fn reload_keys(&self) -> Result<bool, IdentityError> {
        let VaultKeySource::File { path, .. } = &self.source else {
            return Ok(false);
        };
        let now = vault_keys::stamp(path);
        let mut seen = self.stamp.lock().expect("vault stamp lock");
        if now == *seen {
            return Ok(false);
        }
        let ring = vault_keys::read_file(path, false)?;
        let ids = |r: &Ring| r.keys.iter().map(|k| k.id.clone()).collect::<Vec<_>>();
        let changed = ids(&ring) != ids(&self.ring());
        *self.ring.write().expect("vault ring lock") = Arc::new(ring);
        *seen = now;
        if changed {
            tracing::info!(key_file = %path.display(), key_id = %self.key_id(), "vault keys re-read");
        }
        Ok(changed)
    }

    pub(super) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.ring().current().seal(aad, plaintext)
    }

    /// Opens something sealed without a recorded key id (an OAuth state): any key may have
    /// sealed it.
    pub(super) fn open_sealed(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        self.ring().keys.iter().find_map(|k| k.open(aad, sealed))
    }

    /// Opens a row sealed with the key `key_id`; a key this process does not hold yet makes it
    /// re-read the key file once (another replica may have rotated).
    fn open_row(&self, aad: &[u8], key_id: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if let Some(k) = self.ring().by_id(key_id) {
            return k.open(aad, sealed);
        }
        if let Err(e) = self.reload_keys() {
            tracing::warn!(error = %e, "cannot re-read the vault keys");
        }
        self.ring().by_id(key_id)?.open(aad, sealed)
    }

    fn aad(key: &CredentialKey) -> Vec<u8> {
        // Binds the ciphertext to its row: a row copied to another user does not open.
        format!(
            "{}\n{}\n{}\n{}",
            key.issuer, key.subject, key.server, key.kind
        )
        .into_bytes()
    }

    fn store_error(e: impl std::fmt::Display) -> CredentialError {
        CredentialError::Vault {
            reason: e.to_string(),
        }
    }

    /// Stores a secret for `key`.
    pub async fn put(
        &self,
        key: CredentialKey,
        secret: &str,
        expires_at: Option<i64>,
    ) -> Result<(), CredentialError> {
        let ring = self.ring();
        let ciphertext = ring.current().seal(&Self::aad(&key), secret.as_bytes());
        self.credentials
            .upsert(&CredentialRecord {
                key,
                key_id: ring.current().id.clone(),
                ciphertext,
                expires_at,
            })
            .await
            .map_err(Self::store_error)
    }

    /// The secret stored for `key`, if any (and readable with the vault's keys).
    pub async fn get(&self, key: &CredentialKey) -> Result<Option<String>, CredentialError> {
        let row = self.credentials.get(key).await.map_err(Self::store_error)?;
        let Some(row) = row else { return Ok(None) };
        if row.record.expires_at.is_some_and(|e| e <= unix_now()) {
            return Ok(None);
        }
        match self.open_row(&Self::aad(key), &row.record.key_id, &row.record.ciphertext) {
            Some(p) => Ok(String::from_utf8(p).ok()),
            None => {
                tracing::warn!(server = %key.server, key_id = %row.record.key_id, "a stored credential does not open with the vault's keys; set it again (a user authorizes again)");
                Ok(None)
            }
        }
    }

    /// Where the platform's own secret `name` (a `store:NAME` reference) is kept.
    pub fn platform_secret(name: &str) -> CredentialKey {
        CredentialKey::new(PLATFORM_ISSUER, PLATFORM_SUBJECT, name, PLATFORM_KIND)
    }

    /// The platform's stored secrets: name, when it was last set (unix seconds) and a version
    /// that changes when the value does — a digest of the value, kept in memory only, so a
    /// rotation that re-seals the same value is no change. Never their values.
    pub async fn platform_secret_names(
        &self,
    ) -> Result<Vec<(String, i64, String)>, CredentialError> {
        let rows = self
            .credentials
            .list(PLATFORM_ISSUER, PLATFORM_SUBJECT, PLATFORM_KIND)
            .await
            .map_err(Self::store_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for (name, at, _) in rows {
            let version = match self.get(&Self::platform_secret(&name)).await? {
                Some(value) => {
                    let d = crate::cache::sha256(format!("{name}\n{value}").as_bytes());
                    d[..12].iter().map(|b| format!("{b:02x}")).collect()
                }
                None => "unreadable".to_string(),
            };
            out.push((name, at, version));
        }
        Ok(out)
    }

    /// Forgets the secret stored for `key`.
    pub async fn delete(&self, key: &CredentialKey) -> Result<(), CredentialError> {
        self.credentials
            .delete(key)
            .await
            .map(|_| ())
            .map_err(Self::store_error)
    }

    /// Re-seals with the current key every row sealed with another key of the ring; returns
    /// (re-sealed, unreadable). A row replaced meanwhile (a new `set`) is left to its writer.
    pub async fn reseal(&self) -> Result<(usize, usize), CredentialError> {
        let ring = self.ring();
        let current = ring.current();
        let rows = self
            .credentials
            .sealed_with_other_keys(&current.id)
            .await
            .map_err(Self::store_error)?;
        let (mut resealed, mut unreadable) = (0, 0);
        for row in rows {
            let aad = Self::aad(&row.record.key);
            let Some(plain) = ring
                .by_id(&row.record.key_id)
                .and_then(|k| k.open(&aad, &row.record.ciphertext))
            else {
                unreadable += 1;
                continue;
            };
            let sealed = current.seal(&aad, &plain);
            if self
                .credentials
                .reseal(row.id, &row.record.key_id, &current.id, &sealed)
                .await
                .map_err(Self::store_error)?
            {
                resealed += 1;
            }
        }
        Ok((resealed, unreadable))
    }

    /// Replaces the sealing key: a fresh key goes first into the key file (the old ones stay
    /// to open what they sealed), every row is re-sealed with it, then the keys nothing is
    /// sealed with any more leave the file. An interrupted rotation is finished by the next.
    /// Other processes pick the new file up when they meet a row sealed with the new key, or
    /// within a few seconds (the secret watcher). Only for a key file.
    pub async fn rotate(&self) -> Result<KeyRotation, CredentialError> {
        let VaultKeySource::File { path, .. } = &self.source else {
            return Err(CredentialError::Vault {
                reason: format!(
                    "the vault key comes from {VAULT_KEY_ENV}, which Gatehouse cannot rewrite; keep the keys in a file (--secrets-key-file) to rotate them"
                ),
            });
        };
        let config = |e: IdentityError| CredentialError::Vault {
            reason: e.to_string(),
        };
        self.reload_keys().map_err(config)?;
        // Finish what an interrupted rotation left sealed with an older key.
        self.reseal().await?;
        let old = self.ring();
        let old_key_id = old.current().id.clone();
        let mut keys = vec![Key::generate()];
        keys.extend(old.keys.iter().map(|k| k.clone_key()));
        let ring = Ring { keys };
        vault_keys::replace_file(path, &ring).map_err(config)?;
        self.reload_keys().map_err(config)?;
        let (resealed, unreadable) = self.reseal().await?;
        // Keep only the keys something is still sealed with (none, unless a replica sealed
        // with the old key meanwhile: that one is kept and finished by the next rotation).
        let in_use = self
            .credentials
            .key_ids()
            .await
            .map_err(Self::store_error)?;
        let ring = self.ring();
        let kept = Ring {
            keys: ring
                .keys
                .iter()
                .enumerate()
                .filter(|(i, k)| *i == 0 || in_use.contains(&k.id))
                .map(|(_, k)| k.clone_key())
                .collect(),
        };
        vault_keys::replace_file(path, &kept).map_err(config)?;
        self.reload_keys().map_err(config)?;
        Ok(KeyRotation {
            old_key_id,
            new_key_id: self.key_id(),
            resealed,
            unreadable,
        })
    }
}
