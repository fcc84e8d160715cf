//! Revocation of DELETEd sessions in the shared store: the one session state every process
//! shares. A sealed id opens on any process with the key, so a DELETE is written to the store
//! before it is acknowledged; a process checks an id it has not served yet against the store
//! once, and follows the table (by its never-reused `seq`) to end the sessions it already
//! serves that another process revoked.

use std::collections::HashSet;
use std::sync::Mutex;

use gatehouse_store::{SessionRevocations, StoreError};
use tokio::sync::OnceCell;

/// How old (by the database's clock) a revocation must be before the cursor passes it. Rows
/// are numbered when their insert starts and become visible when it commits, so a lower
/// number can appear after a higher one; an insert of one row takes far less than this.
const SETTLE_SECS: i64 = 10;

/// Most revocations read per poll. Past it, newer rows wait until the older ones settle.
const BATCH: i64 = 1000;

/// How often expired revocations are deleted (by every process: the delete is idempotent).
const PRUNE_EVERY_SECS: u64 = 60;

/// The follower of the revocation table for one [`super::SessionStore`].
#[derive(Debug)]
pub(super) struct Follower {
    revocations: SessionRevocations,
    /// Where following starts: the table's end when this process first needed it. Set before
    /// the first id is checked against the store, so every later revocation is either seen by
    /// that check or read by a poll.
    start: OnceCell<i64>,
    cursor: Mutex<Cursor>,
}

#[derive(Debug, Default)]
struct Cursor {
    /// Every revocation up to here is read and settled.
    settled: Option<i64>,
    /// Revocations above `settled` already acted on.
    seen: HashSet<i64>,
    last_prune: u64,
}

impl Follower {
    pub(super) fn new(revocations: SessionRevocations) -> Follower {
        Follower {
            revocations,
            start: OnceCell::new(),
            cursor: Mutex::default(),
        }
    }

    async fn start(&self) -> Result<i64, StoreError> {
        self.start
            .get_or_try_init(|| self.revocations.latest())
            .await
            .copied()
    }

    /// Whether the id with `digest` was revoked (first sight of a sealed id on this process).
    pub(super) async fn is_revoked(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        self.start().await?;
        self.revocations.is_revoked(digest).await
    }

    /// Records a revocation; returns once it is committed.
    pub(super) async fn revoke(
        &self,
        digest: &[u8; 32],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let expires_at = i64::try_from(expires_at).unwrap_or(i64::MAX);
        self.revocations.revoke(digest, expires_at).await
    }

    /// Reads the revocations written since the last poll; returns the digests not seen before.
    /// Deletes expired revocations about once a minute (`now_unix` is the current time).
    pub(super) async fn poll(&self, now_unix: u64) -> Result<HashSet<[u8; 32]>, StoreError> {
        let start = self.start().await?;
        let (after, prune) = {
            let c = self.cursor.lock().expect("revocation cursor lock");
            (
                c.settled.unwrap_or(start),
                now_unix >= c.last_prune + PRUNE_EVERY_SECS,
            )
        };
        if prune {
            let now = i64::try_from(now_unix).unwrap_or(i64::MAX);
            let n = self.revocations.prune(now).await?;
            if n > 0 {
                tracing::debug!(revocations = n, "expired session revocations pruned");
            }
            self.cursor
                .lock()
                .expect("revocation cursor lock")
                .last_prune = now_unix;
        }
        let rows = self.revocations.since(after, SETTLE_SECS, BATCH).await?;
        let mut c = self.cursor.lock().expect("revocation cursor lock");
        let mut fresh = HashSet::new();
        for r in &rows {
            if c.seen.insert(r.seq) {
                fresh.insert(r.digest);
            }
        }
        let mut settled = after;
        for r in rows.iter().take_while(|r| r.settled) {
            settled = r.seq;
        }
        c.settled = Some(settled);
        c.seen.retain(|seq| *seq > settled);
        Ok(fresh)
    }
}
