//! The store against real databases. Every test body runs on SQLite and on PostgreSQL.

mod common;

use common::{Kind, TestDb};
use gatehouse_store::{
    CredentialKey, CredentialRecord, Dialect, MIGRATIONS, SCHEMA_VERSION, Store, StoreError,
};

on_both_dialects!(
    migrations_apply_once_and_reopening_is_idempotent,
    a_newer_schema_is_refused,
    concurrent_opens_of_a_fresh_database_migrate_once,
    a_failed_migration_is_reported_and_rolled_back,
    credentials_round_trip_binary_ciphertext,
    upsert_updates_the_row_in_place,
    reseal_replaces_only_rows_still_sealed_with_the_old_key,
    delete_expired_removes_only_expired_rows,
    a_vanished_database_is_an_error_not_a_panic,
);

fn record(subject: &str, ciphertext: &[u8], expires_at: Option<i64>) -> CredentialRecord {
    CredentialRecord {
        key: CredentialKey::new("https://idp.example", subject, "github", "oauth_refresh"),
        key_id: "k1".into(),
        ciphertext: ciphertext.to_vec(),
        expires_at,
    }
}

fn expected_dialect(db: &TestDb) -> Dialect {
    match db.kind {
        Kind::Sqlite => Dialect::Sqlite,
        Kind::Postgres => Dialect::Postgres,
    }
}

async fn migrations_apply_once_and_reopening_is_idempotent(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.dialect(), expected_dialect(&db));
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    store
        .credentials()
        .upsert(&record("alice", b"x", None))
        .await
        .unwrap();
    store.close().await;

    for _ in 0..2 {
        let store = Store::open(&db.url).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
        let kept = store
            .credentials()
            .get(&record("alice", b"", None).key)
            .await;
        assert!(kept.unwrap().is_some(), "data survives a reopen");
        store.close().await;
    }
    let rows = db.scalar("SELECT COUNT(*) FROM gatehouse_schema").await;
    assert_eq!(
        rows,
        MIGRATIONS.len() as i64,
        "each migration recorded once"
    );
    for m in MIGRATIONS {
        let sql = format!(
            "SELECT COUNT(*) FROM gatehouse_schema WHERE version = {} AND name = '{}' \
             AND applied_at > 1700000000",
            m.version, m.name
        );
        assert_eq!(db.scalar(&sql).await, 1, "migration {} recorded", m.version);
    }
    if db.kind == Kind::Sqlite {
        let wal = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&wal)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        wal.close().await;
    }
}

async fn a_newer_schema_is_refused(db: TestDb) {
    Store::open(&db.url).await.unwrap().close().await;
    let future = SCHEMA_VERSION + 6;
    db.exec(&format!(
        "INSERT INTO gatehouse_schema (version, name, applied_at) VALUES ({future}, 'future', 0)"
    ))
    .await;

    let err = Store::open(&db.url).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported }
            if found == future && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "database schema version {future} is newer than this gatehouse binary supports \
             ({SCHEMA_VERSION}); upgrade gatehouse or use another database"
        )
    );
    let rows = db.scalar("SELECT COUNT(*) FROM gatehouse_schema").await;
    assert_eq!(rows, MIGRATIONS.len() as i64 + 1, "refusal changed nothing");
}

async fn concurrent_opens_of_a_fresh_database_migrate_once(db: TestDb) {
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    for open in opens {
        let store = open.await.unwrap().expect("every concurrent open succeeds");
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
        store.close().await;
    }
    let rows = db.scalar("SELECT COUNT(*) FROM gatehouse_schema").await;
    assert_eq!(rows, MIGRATIONS.len() as i64);
}

async fn a_failed_migration_is_reported_and_rolled_back(db: TestDb) {
    // A table in the way makes migration 1 fail half-way.
    db.exec("CREATE TABLE credentials (unrelated INTEGER)")
        .await;
    let err = Store::open(&db.url).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Migration {
                version: 1,
                name: "init",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("database migration 1 (init) failed: "),
        "{err}"
    );

    // Rolled back as a whole: once the obstacle is gone, the same migration applies cleanly.
    db.exec("DROP TABLE credentials").await;
    let store = Store::open(&db.url).await.expect("retry after the fix");
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    store.close().await;
    let rows = db.scalar("SELECT COUNT(*) FROM gatehouse_schema").await;
    assert_eq!(rows, MIGRATIONS.len() as i64);
}

async fn credentials_round_trip_binary_ciphertext(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let creds = store.credentials();
    let sealed: Vec<u8> = vec![0, 1, 0, 0, 255, 0, b'\'', b'"', 0x80, 0];
    let alice = record("alice", &sealed, Some(2_000_000_000));
    creds.upsert(&alice).await.unwrap();

    let got = creds.get(&alice.key).await.unwrap().expect("stored");
    assert_eq!(got.record, alice);
    assert_eq!(
        got.record.ciphertext.len(),
        10,
        "NUL bytes are not truncated"
    );
    assert!(got.created_at > 1_700_000_000 && got.updated_at == got.created_at);

    let mut other = alice.key.clone();
    other.kind = "api_key".into();
    assert!(
        creds.get(&other).await.unwrap().is_none(),
        "kind is part of the key"
    );
    other = alice.key.clone();
    other.subject = "bob".into();
    assert!(
        creds.get(&other).await.unwrap().is_none(),
        "subject is part of the key"
    );

    assert!(creds.delete(&alice.key).await.unwrap());
    assert!(
        !creds.delete(&alice.key).await.unwrap(),
        "second delete finds nothing"
    );
    assert!(creds.get(&alice.key).await.unwrap().is_none());
    store.close().await;
}

async fn upsert_updates_the_row_in_place(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let creds = store.credentials();
    let first = record("alice", b"old", Some(100));
    creds.upsert(&first).await.unwrap();
    creds.upsert(&record("bob", b"bob's", None)).await.unwrap();
    let before = creds.get(&first.key).await.unwrap().unwrap();

    let second = CredentialRecord {
        key_id: "k2".into(),
        ciphertext: b"new\0sealed".to_vec(),
        expires_at: None,
        ..first.clone()
    };
    creds.upsert(&second).await.unwrap();
    let after = creds.get(&first.key).await.unwrap().unwrap();
    assert_eq!(after.record, second);
    assert_eq!(after.id, before.id, "same row");
    assert_eq!(after.created_at, before.created_at);
    assert!(after.updated_at >= before.updated_at);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM credentials").await, 2);
    store.close().await;
}

async fn reseal_replaces_only_rows_still_sealed_with_the_old_key(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let creds = store.credentials();
    creds.upsert(&record("alice", b"a-k1", None)).await.unwrap();
    creds.upsert(&record("bob", b"b-k1", None)).await.unwrap();
    let carol = CredentialRecord {
        key_id: "k2".into(),
        ..record("carol", b"c-k2", None)
    };
    creds.upsert(&carol).await.unwrap();
    let ids = |v: &[gatehouse_store::StoredCredential]| {
        v.iter()
            .map(|c| c.record.key.subject.clone())
            .collect::<Vec<_>>()
    };
    let old = creds.sealed_with_other_keys("k2").await.unwrap();
    assert_eq!(ids(&old), ["alice", "bob"]);
    let before = creds.get(&old[0].record.key).await.unwrap().unwrap();
    assert!(creds.reseal(old[0].id, "k1", "k2", b"a-k2").await.unwrap());
    let after = creds.get(&old[0].record.key).await.unwrap().unwrap();
    assert_eq!(after.record.key_id, "k2");
    assert_eq!(after.record.ciphertext, b"a-k2");
    assert_eq!(
        after.updated_at, before.updated_at,
        "the value did not change"
    );
    // Bob was set again meanwhile (with k3): the re-seal of his old row does not overwrite it.
    creds
        .upsert(&CredentialRecord {
            key_id: "k3".into(),
            ..record("bob", b"b-k3", None)
        })
        .await
        .unwrap();
    assert!(!creds.reseal(old[1].id, "k1", "k2", b"b-k2").await.unwrap());
    assert_eq!(
        creds
            .get(&old[1].record.key)
            .await
            .unwrap()
            .unwrap()
            .record
            .ciphertext,
        b"b-k3"
    );
    let in_use = creds.key_ids().await.unwrap();
    assert_eq!(in_use.into_iter().collect::<Vec<_>>(), ["k2", "k3"]);
    store.close().await;
}

async fn delete_expired_removes_only_expired_rows(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let creds = store.credentials();
    for (who, expires) in [
        ("a", Some(100)),
        ("b", Some(150)),
        ("c", Some(200)),
        ("d", None),
    ] {
        creds
            .upsert(&record(who, who.as_bytes(), expires))
            .await
            .unwrap();
    }
    assert_eq!(creds.delete_expired(99).await.unwrap(), 0);
    assert_eq!(
        creds.delete_expired(150).await.unwrap(),
        2,
        "expiry is inclusive"
    );
    assert_eq!(creds.delete_expired(150).await.unwrap(), 0);
    for (who, kept) in [("a", false), ("b", false), ("c", true), ("d", true)] {
        let got = creds.get(&record(who, b"", None).key).await.unwrap();
        assert_eq!(got.is_some(), kept, "{who}");
    }
    assert_eq!(
        creds.delete_expired(i64::MAX).await.unwrap(),
        1,
        "never-expiring rows stay"
    );
    store.close().await;
}

async fn a_vanished_database_is_an_error_not_a_panic(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let alice = record("alice", b"x", None);
    store.credentials().upsert(&alice).await.unwrap();
    db.vanish(&store).await;

    let creds = store.credentials();
    assert!(matches!(
        creds.get(&alice.key).await,
        Err(StoreError::Query(_))
    ));
    assert!(matches!(
        creds.upsert(&alice).await,
        Err(StoreError::Query(_))
    ));
    assert!(matches!(
        creds.delete(&alice.key).await,
        Err(StoreError::Query(_))
    ));
    assert!(matches!(
        creds.delete_expired(0).await,
        Err(StoreError::Query(_))
    ));
    assert!(store.schema_version().await.is_err());
}

#[tokio::test]
async fn open_sqlite_in_creates_the_data_dir_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested/data");
    let store = Store::open_sqlite_in(&data_dir).await.unwrap();
    assert_eq!(store.dialect(), Dialect::Sqlite);
    assert!(data_dir.join("gatehouse.db").is_file());
    store.close().await;
    let again = Store::open_sqlite_in(&data_dir).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION);
    again.close().await;
}

#[tokio::test]
async fn unreachable_postgres_is_a_connect_error_without_the_password() {
    let err = Store::open("postgres://gh:hunter2@127.0.0.1:1/gatehouse")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(
        message.contains("postgres://gh:***@127.0.0.1:1/gatehouse"),
        "{message}"
    );
}

#[tokio::test]
async fn unknown_schemes_are_refused() {
    let err = Store::open("mysql://root:pw@localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err:?}");
    assert!(!err.to_string().contains(":pw@"), "{err}");
}
