//! A database of its own per test on the machine's PostgreSQL server, and `psql` for what the
//! tests check in it.

use std::process::Command;

/// Runs one SQL statement as the `postgres` superuser on the machine's PostgreSQL server.
pub fn psql(sql: &str) -> String {
    psql_in("postgres", sql)
}

/// Runs one SQL statement in database `db`; returns its output, trimmed.
pub fn psql_in(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAc", sql])
        .output()
        .expect("psql runs (PostgreSQL client)");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database of its own on the machine's PostgreSQL server, dropped with the value.
pub struct PostgresDb {
    pub name: String,
    pub url: String,
}

impl PostgresDb {
    pub fn create(prefix: &str) -> PostgresDb {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        psql(&format!("CREATE DATABASE {name}"));
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        PostgresDb { name, url }
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
