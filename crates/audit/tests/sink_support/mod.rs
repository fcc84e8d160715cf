//! What the local sink tests share: a real journal in a temp dir, a SQLite store for the
//! cursors, and a runner draining the journal into a sink.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::sinks::SinkRunner;
use gatehouse_audit::sinks::runner::Pass;
use gatehouse_audit::{AuditEvent, EventKind, Journal, JournalOptions, Outcome, TargetRecord};
use gatehouse_config::{Durability, OnFailure, SinkConfig};
use gatehouse_store::Store;

/// A journal, its directory and a store, under one temp dir.
pub struct Bench {
    pub tmp: tempfile::TempDir,
    pub journal: Journal,
    pub store: Store,
}

impl Bench {
    pub async fn new() -> Bench {
        let tmp = tempfile::tempdir().unwrap();
        let journal = open_journal(tmp.path());
        let store = Store::open_sqlite_in(&tmp.path().join("data"))
            .await
            .unwrap();
        Bench {
            tmp,
            journal,
            store,
        }
    }

    pub fn audit_dir(&self) -> PathBuf {
        self.tmp.path().join("audit")
    }

    /// Appends `n` requests numbered from `from` (tool `tool_<i>`), and a flush.
    pub async fn append(&self, from: usize, n: usize) {
        for i in from..from + n {
            self.journal.append(&request(i)).await.unwrap();
        }
        self.journal.flush().await.unwrap();
    }

    /// A runner for `config` reading this journal with a fresh handle on the store.
    pub fn runner(&self, config: SinkConfig) -> SinkRunner {
        SinkRunner::new(config, self.audit_dir(), self.store.sink_cursors()).unwrap()
    }
}

pub fn open_journal(dir: &Path) -> Journal {
    Journal::open(JournalOptions {
        dir: dir.join("audit"),
        durability: Durability::Process,
        on_failure: OnFailure::Refuse,
        segment_bytes: 64 * 1024 * 1024,
        signer: CheckpointSigner::load_or_create(&dir.join("keys/audit.key"), true).unwrap(),
        sync_interval: Duration::from_millis(100),
    })
    .unwrap()
}

pub fn request(i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
    e.method = Some("tools/call".into());
    e.target = Some(TargetRecord {
        kind: "tool".into(),
        name: format!("tool_{i}"),
        operation: Some("read".into()),
    });
    e
}

pub fn config(v: serde_json::Value) -> SinkConfig {
    serde_json::from_value(v).unwrap()
}

/// Runs one catch-up pass.
pub async fn drain(runner: &mut SinkRunner) -> Pass {
    let (_tx, mut rx) = tokio::sync::watch::channel(false);
    runner.catch_up(&mut rx).await.unwrap()
}
