//! `gatehouse up` and its store: SQLite in the data dir by default, PostgreSQL by URL (a real
//! server on this machine), and a database from a newer binary refused with the reason.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn default_store_is_sqlite_in_the_data_dir() {
    let gh = Gatehouse::start(&[]);
    assert!(gh.data_dir.path().join("gatehouse.db").exists());
}

#[tokio::test]
async fn postgres_store_by_url_is_migrated_on_start() {
    let pg = PostgresDb::create("gatehouse_cli");
    let gh = Gatehouse::start(&["--database-url", &pg.url]);
    assert_eq!(
        psql_in(&pg.name, "SELECT max(version) FROM gatehouse_schema"),
        gatehouse_store::SCHEMA_VERSION.to_string(),
        "schema recorded in PostgreSQL"
    );
    // The gateway still serves with its store on PostgreSQL.
    let legacy = Legacy::connect(&gh.url("/mcp")).await;
    let (s, _) = legacy.request(1, "tools/list", serde_json::json!({})).await;
    assert_eq!(s, 200);
    drop(gh);
}

#[test]
fn a_database_from_a_newer_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // First start creates and migrates the database.
    let mut first = Command::new(bin())
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let db = data.join("gatehouse.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !db.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = first.kill();
    let _ = first.wait();
    // A newer binary would have recorded a higher schema version.
    let bump = Command::new("python3")
        .arg("-c")
        .arg(format!("import sqlite3; c = sqlite3.connect({:?}); c.execute(\"INSERT INTO gatehouse_schema (version, name, applied_at) VALUES (99, 'future', 0)\"); c.commit()", db.display().to_string()))
        .status()
        .unwrap();
    assert!(bump.success());
    let out = Command::new(bin())
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "refused to start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("99") && err.contains("newer than this gatehouse binary supports"),
        "{err}"
    );
}
