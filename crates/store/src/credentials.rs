//! The `credentials` table: ciphertext sealed by the identity layer, one row per
//! (principal issuer, principal subject, server, kind).

use crate::{Pool, StoreError, unix_now, with_pool};

/// Identifies one credential: whose it is, for which server, of which kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialKey {
    /// Issuer of the principal's identity (e.g. the OIDC `iss`).
    pub issuer: String,
    /// Subject of the principal within the issuer (e.g. the OIDC `sub`).
    pub subject: String,
    /// Name of the upstream server the credential is for.
    pub server: String,
    /// What the credential is, e.g. `"oauth_refresh"`.
    pub kind: String,
}

impl CredentialKey {
    /// Builds a key from its four parts.
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        server: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        CredentialKey {
            issuer: issuer.into(),
            subject: subject.into(),
            server: server.into(),
            kind: kind.into(),
        }
    }
}

/// A credential as the caller writes it: sealed bytes plus the id of the sealing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Which credential this is.
    pub key: CredentialKey,
    /// Id of the encryption key that sealed `ciphertext`.
    pub key_id: String,
    /// The sealed credential; opaque bytes to the store.
    pub ciphertext: Vec<u8>,
    /// When the credential stops being useful (unix seconds); `None` for never.
    pub expires_at: Option<i64>,
}

/// A credential as stored, with the bookkeeping the store adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// Row id assigned by the database; stable across updates of the same key.
    pub id: i64,
    /// The credential.
    pub record: CredentialRecord,
    /// When the row was first written (unix seconds).
    pub created_at: i64,
    /// When the row was last written (unix seconds).
    pub updated_at: i64,
}

/// Repository of the `credentials` table, from [`Store::credentials`](crate::Store::credentials).
/// Cheap to clone: it shares the store's connection pool.
#[derive(Debug, Clone)]
pub struct Credentials {
    pool: Pool,
}

const UPSERT: &str = "INSERT INTO credentials \
    (issuer, subject, server, kind, key_id, ciphertext, expires_at, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (issuer, subject, server, kind) DO UPDATE SET \
    key_id = excluded.key_id, ciphertext = excluded.ciphertext, \
    expires_at = excluded.expires_at, updated_at = excluded.updated_at";

const GET: &str = "SELECT id, key_id, ciphertext, expires_at, created_at, updated_at \
    FROM credentials WHERE issuer = $1 AND subject = $2 AND server = $3 AND kind = $4";

const DELETE: &str =
    "DELETE FROM credentials WHERE issuer = $1 AND subject = $2 AND server = $3 AND kind = $4";

const LIST_SERVERS: &str = "SELECT server, updated_at, ciphertext FROM credentials \
    WHERE issuer = $1 AND subject = $2 AND kind = $3 ORDER BY server";

const OTHER_KEYS: &str = "SELECT id, issuer, subject, server, kind, key_id, ciphertext, \
    expires_at, created_at, updated_at FROM credentials WHERE key_id <> $1 ORDER BY id";

const RESEAL: &str =
    "UPDATE credentials SET key_id = $1, ciphertext = $2 WHERE id = $3 AND key_id = $4";

const KEY_IDS: &str = "SELECT DISTINCT key_id FROM credentials";

const DELETE_EXPIRED: &str =
    "DELETE FROM credentials WHERE expires_at IS NOT NULL AND expires_at <= $1";

impl Credentials {
    pub(crate) fn new(pool: Pool) -> Self {
        Credentials { pool }
    }

    /// Inserts the credential, or replaces key id, ciphertext and expiry of the existing row
    /// with the same [`CredentialKey`] (keeping its id and `created_at`).
    pub async fn upsert(&self, record: &CredentialRecord) -> Result<(), StoreError> {
        let now = unix_now();
        let k = &record.key;
        with_pool!(&self.pool, |p| sqlx::query(UPSERT)
            .bind(k.issuer.as_str())
            .bind(k.subject.as_str())
            .bind(k.server.as_str())
            .bind(k.kind.as_str())
            .bind(record.key_id.as_str())
            .bind(record.ciphertext.as_slice())
            .bind(record.expires_at)
            .bind(now)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The credential stored under `key`, if any. Expired rows are returned until
    /// [`delete_expired`](Self::delete_expired) removes them; check `expires_at`.
    pub async fn get(&self, key: &CredentialKey) -> Result<Option<StoredCredential>, StoreError> {
        use sqlx::Row;
        with_pool!(&self.pool, |p| {
            let row = sqlx::query(GET)
                .bind(key.issuer.as_str())
                .bind(key.subject.as_str())
                .bind(key.server.as_str())
                .bind(key.kind.as_str())
                .fetch_optional(p)
                .await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(StoredCredential {
                id: row.try_get("id")?,
                record: CredentialRecord {
                    key: key.clone(),
                    key_id: row.try_get("key_id")?,
                    ciphertext: row.try_get("ciphertext")?,
                    expires_at: row.try_get("expires_at")?,
                },
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            }))
        })
    }

    /// Deletes the credential stored under `key`; `true` if there was one.
    pub async fn delete(&self, key: &CredentialKey) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |p| sqlx::query(DELETE)
            .bind(key.issuer.as_str())
            .bind(key.subject.as_str())
            .bind(key.server.as_str())
            .bind(key.kind.as_str())
            .execute(p)
            .await?
            .rows_affected());
        Ok(done > 0)
    }

    /// The `server` part, last update (unix seconds) and ciphertext of every credential of
    /// one issuer, subject and kind, by server.
    pub async fn list(
        &self,
        issuer: &str,
        subject: &str,
        kind: &str,
    ) -> Result<Vec<(String, i64, Vec<u8>)>, StoreError> {
        use sqlx::Row;
        with_pool!(&self.pool, |p| {
            let rows = sqlx::query(LIST_SERVERS)
                .bind(issuer)
                .bind(subject)
                .bind(kind)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get("server")?,
                        r.try_get("updated_at")?,
                        r.try_get("ciphertext")?,
                    ))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// Every credential sealed with a key other than `key_id` (what a key rotation re-seals).
    pub async fn sealed_with_other_keys(
        &self,
        key_id: &str,
    ) -> Result<Vec<StoredCredential>, StoreError> {
        use sqlx::Row;
        with_pool!(&self.pool, |p| {
            let rows = sqlx::query(OTHER_KEYS).bind(key_id).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(StoredCredential {
                        id: r.try_get("id")?,
                        record: CredentialRecord {
                            key: CredentialKey {
                                issuer: r.try_get("issuer")?,
                                subject: r.try_get("subject")?,
                                server: r.try_get("server")?,
                                kind: r.try_get("kind")?,
                            },
                            key_id: r.try_get("key_id")?,
                            ciphertext: r.try_get("ciphertext")?,
                            expires_at: r.try_get("expires_at")?,
                        },
                        created_at: r.try_get("created_at")?,
                        updated_at: r.try_get("updated_at")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// Replaces row `id`'s ciphertext with one sealed by `to_key_id`, only while it is still
    /// sealed with `from_key_id` (a concurrent write wins); keeps `updated_at`, since the
    /// value did not change. `true` when the row was re-sealed.
    pub async fn reseal(
        &self,
        id: i64,
        from_key_id: &str,
        to_key_id: &str,
        ciphertext: &[u8],
    ) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |p| sqlx::query(RESEAL)
            .bind(to_key_id)
            .bind(ciphertext)
            .bind(id)
            .bind(from_key_id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done > 0)
    }

    /// The ids of the keys that sealed the stored credentials.
    pub async fn key_ids(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        use sqlx::Row;
        with_pool!(&self.pool, |p| {
            let rows = sqlx::query(KEY_IDS).fetch_all(p).await?;
            rows.iter()
                .map(|r| r.try_get::<String, _>("key_id"))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// Deletes every credential whose `expires_at` is at or before `now` (unix seconds);
    /// returns how many.
    pub async fn delete_expired(&self, now: i64) -> Result<u64, StoreError> {
        Ok(with_pool!(&self.pool, |p| sqlx::query(DELETE_EXPIRED)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()))
    }
}
