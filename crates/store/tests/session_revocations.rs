//! Revoked sessions against real databases (SQLite and PostgreSQL): a revocation is visible to
//! every store on the database, followers read new ones in order and know when their cursor may
//! pass them, and pruning never lets a new revocation take an old number.

mod common;

use common::{Kind, TestDb};
use gatehouse_store::{Store, StoreError};

on_both_dialects!(
    a_revocation_is_seen_by_another_store_and_revoking_twice_is_harmless,
    followers_read_revocations_in_order_and_settle_them_by_the_database_clock,
    pruning_removes_expired_rows_and_never_reuses_a_number,
    a_digest_of_the_wrong_length_is_reported,
);

const FAR: i64 = 4_000_000_000;

fn digest(n: u8) -> [u8; 32] {
    [n; 32]
}

async fn a_revocation_is_seen_by_another_store_and_revoking_twice_is_harmless(db: TestDb) {
    let a = Store::open(&db.url).await.unwrap();
    let b = Store::open(&db.url).await.unwrap();
    assert!(
        !b.session_revocations()
            .is_revoked(&digest(1))
            .await
            .unwrap()
    );
    a.session_revocations()
        .revoke(&digest(1), FAR)
        .await
        .unwrap();
    assert!(
        b.session_revocations()
            .is_revoked(&digest(1))
            .await
            .unwrap()
    );
    assert!(
        !b.session_revocations()
            .is_revoked(&digest(2))
            .await
            .unwrap()
    );
    // Two replicas ending the same session: the second insert is a no-op, not an error.
    b.session_revocations()
        .revoke(&digest(1), FAR)
        .await
        .unwrap();
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM session_revocations").await,
        1
    );
    a.close().await;
    b.close().await;
}

async fn followers_read_revocations_in_order_and_settle_them_by_the_database_clock(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let r = store.session_revocations();
    assert_eq!(r.latest().await.unwrap(), 0, "an empty table starts at 0");
    for n in 1..=3 {
        r.revoke(&digest(n), FAR).await.unwrap();
    }
    let all = r.since(0, 3600, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|x| x.digest[0]).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "in insertion order"
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        all.iter().all(|x| !x.settled),
        "rows written just now are not settled for an hour"
    );
    assert_eq!(r.latest().await.unwrap(), all[2].seq);
    let after_first = r.since(all[0].seq, 3600, 100).await.unwrap();
    assert_eq!(after_first.len(), 2);
    assert_eq!(after_first[0].digest, digest(2));
    assert_eq!(r.since(0, 3600, 1).await.unwrap().len(), 1, "limit applies");
    // Rows written two minutes ago (by the database's clock) have settled for one minute.
    db.exec("UPDATE session_revocations SET revoked_at = revoked_at - 120 WHERE seq <= 2")
        .await;
    let settled: Vec<bool> = r
        .since(0, 60, 100)
        .await
        .unwrap()
        .iter()
        .map(|x| x.settled)
        .collect();
    assert_eq!(settled, vec![true, true, false]);
    store.close().await;
}

async fn pruning_removes_expired_rows_and_never_reuses_a_number(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let r = store.session_revocations();
    r.revoke(&digest(1), FAR).await.unwrap();
    r.revoke(&digest(2), 1_000).await.unwrap();
    let highest = r.latest().await.unwrap();
    assert_eq!(r.prune(999).await.unwrap(), 0, "not expired yet");
    assert_eq!(r.prune(1_001).await.unwrap(), 1);
    assert!(r.is_revoked(&digest(1)).await.unwrap());
    assert!(!r.is_revoked(&digest(2)).await.unwrap());
    // The pruned row had the highest number; a follower whose cursor is there must still see
    // the next revocation.
    r.revoke(&digest(3), FAR).await.unwrap();
    let next = r.since(highest, 0, 10).await.unwrap();
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0].digest, digest(3));
    assert!(next[0].seq > highest);
    store.close().await;
}

async fn a_digest_of_the_wrong_length_is_reported(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    db.exec(match db.kind {
        Kind::Sqlite => "INSERT INTO session_revocations (digest, expires_at) VALUES (X'0102', 1)",
        Kind::Postgres => {
            "INSERT INTO session_revocations (digest, expires_at) VALUES ('\\x0102'::bytea, 1)"
        }
    })
    .await;
    let err = store
        .session_revocations()
        .since(0, 0, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { what } if what.contains("2 bytes")),
        "{err}"
    );
    store.close().await;
}
