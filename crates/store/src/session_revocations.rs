//! The `session_revocations` table: digests of session ids that were ended for good, kept until
//! the session would have expired anyway. Every process sharing the store refuses them: at the
//! first sight of an id ([`is_revoked`](SessionRevocations::is_revoked)) and, for sessions it
//! already serves, by following the table in `seq` order ([`since`](SessionRevocations::since)).

use crate::{Pool, StoreError, with_pool};

/// Length of a digest: SHA-256.
pub const DIGEST_LEN: usize = 32;

/// One revocation as a follower of the table sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Position in the table: increases with every insert and is never reused.
    pub seq: i64,
    /// The digest of the revoked id.
    pub digest: [u8; DIGEST_LEN],
    /// True once the row is older (by the database's clock) than the settling time asked for:
    /// no insert that drew a lower `seq` can still be in flight, so a follower's cursor may
    /// pass it.
    pub settled: bool,
}

/// Repository of revoked sessions, from
/// [`Store::session_revocations`](crate::Store::session_revocations). Cheap to clone: it shares
/// the store's connection pool.
#[derive(Debug, Clone)]
pub struct SessionRevocations {
    pool: Pool,
}

// A second DELETE of the same session (here or on another replica) changes nothing.
const REVOKE: &str = "INSERT INTO session_revocations (digest, expires_at) VALUES ($1, $2) \
    ON CONFLICT (digest) DO NOTHING";

const IS_REVOKED: &str = "SELECT COUNT(*) FROM session_revocations WHERE digest = $1";

const LATEST: &str = "SELECT COALESCE(MAX(seq), 0) FROM session_revocations";

// Each dialect reads its own clock: revoked_at was written by the same clock.
const SINCE_SQLITE: &str = "SELECT seq, digest, \
    revoked_at <= CAST(strftime('%s', 'now') AS INTEGER) - $2 \
    FROM session_revocations WHERE seq > $1 ORDER BY seq LIMIT $3";
const SINCE_POSTGRES: &str = "SELECT seq, digest, \
    revoked_at <= EXTRACT(EPOCH FROM clock_timestamp())::BIGINT - $2 \
    FROM session_revocations WHERE seq > $1 ORDER BY seq LIMIT $3";

const PRUNE: &str = "DELETE FROM session_revocations WHERE expires_at < $1";

impl SessionRevocations {
    pub(crate) fn new(pool: Pool) -> Self {
        SessionRevocations { pool }
    }

    /// Records that the session whose id has `digest` is ended, until `expires_at` (unix
    /// seconds). Returns once the row is committed; revoking twice is not an error.
    pub async fn revoke(
        &self,
        digest: &[u8; DIGEST_LEN],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        with_pool!(&self.pool, |p| sqlx::query(REVOKE)
            .bind(digest.as_slice())
            .bind(expires_at)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Whether the session whose id has `digest` was revoked (one lookup in the unique index).
    pub async fn is_revoked(&self, digest: &[u8; DIGEST_LEN]) -> Result<bool, StoreError> {
        let n: i64 = with_pool!(&self.pool, |p| sqlx::query_scalar(IS_REVOKED)
            .bind(digest.as_slice())
            .fetch_one(p)
            .await?);
        Ok(n > 0)
    }

    /// The highest `seq` so far (0 for an empty table): where a new follower starts.
    pub async fn latest(&self) -> Result<i64, StoreError> {
        Ok(with_pool!(&self.pool, |p| sqlx::query_scalar(LATEST)
            .fetch_one(p)
            .await?))
    }

    /// Up to `limit` revocations with a `seq` above `after`, in `seq` order; those written at
    /// least `settle_secs` ago are marked [`settled`](Revocation::settled).
    pub async fn since(
        &self,
        after: i64,
        settle_secs: i64,
        limit: i64,
    ) -> Result<Vec<Revocation>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, bool)> = match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query_as(SINCE_SQLITE)
                    .bind(after)
                    .bind(settle_secs)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
            Pool::Postgres(p) => {
                sqlx::query_as(SINCE_POSTGRES)
                    .bind(after)
                    .bind(settle_secs)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
        };
        rows.into_iter()
            .map(|(seq, digest, settled)| {
                let digest = digest
                    .try_into()
                    .map_err(|d: Vec<u8>| StoreError::Corrupt {
                        what: format!(
                            "session revocation {seq} has a digest of {} bytes, not {DIGEST_LEN}",
                            d.len()
                        ),
                    })?;
                Ok(Revocation {
                    seq,
                    digest,
                    settled,
                })
            })
            .collect()
    }

    /// Removes revocations that expired before `now` (unix seconds); returns how many.
    pub async fn prune(&self, now: i64) -> Result<u64, StoreError> {
        Ok(with_pool!(&self.pool, |p| sqlx::query(PRUNE)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()))
    }
}
