//! What the sink tests share: a real journal in a temp dir, a SQLite store for the cursors,
//! sink configs, test events, and running a [`SinkRunner`] until it has shipped everything.

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod receivers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::reader::{StoredEvent, read_lines, segment_files};
use gatehouse_audit::sinks::runner::Pass;
use gatehouse_audit::sinks::{Sink, SinkRunner};
use gatehouse_audit::{
    AuditEvent, ClientRecord, EventKind, Journal, JournalOptions, Outcome, PolicyRecord,
    PrincipalRecord, TargetRecord,
};
use gatehouse_config::{Durability, OnFailure, SinkConfig};
use gatehouse_store::Store;
use serde_json::{Value, json};
use tokio::sync::watch;

/// A journal directory with events in it, and a store for sink cursors.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub journal: Journal,
    pub store: Store,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(JournalOptions {
            dir: dir.path().join("audit"),
            durability: Durability::Process,
            on_failure: OnFailure::Refuse,
            segment_bytes: 64 * 1024 * 1024,
            signer: CheckpointSigner::load_or_create(&dir.path().join("keys/audit.key"), true)
                .unwrap(),
            sync_interval: Duration::from_millis(100),
            max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
        })
        .unwrap();
        let store = Store::open_sqlite_in(&dir.path().join("data"))
            .await
            .unwrap();
        Fixture {
            dir,
            journal,
            store,
        }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    /// Appends `n` varied events (tool calls, denials, errors) and flushes.
    pub async fn append(&self, n: usize) {
        self.append_with(n, 0).await;
    }

    /// Appends `n` plain tool calls numbered from `from` (tool `tool_<i>`, see [`request`]),
    /// and flushes.
    pub async fn append_requests(&self, from: usize, n: usize) {
        for i in from..from + n {
            self.journal.append(&request(i)).await.unwrap();
        }
        self.journal.flush().await.unwrap();
    }

    /// Appends `n` events whose arguments carry `pad` extra bytes each.
    pub async fn append_with(&self, n: usize, pad: usize) {
        for i in 0..n {
            self.journal.append(&event(i, pad)).await.unwrap();
        }
        self.journal.flush().await.unwrap();
    }

    /// Every event in the journal, in journal order.
    pub fn events(&self) -> Vec<StoredEvent> {
        let mut out = Vec::new();
        for s in segment_files(&self.journal_dir()).unwrap() {
            let (lines, _) = read_lines(&s.path, 0, usize::MAX).unwrap();
            out.extend(lines.iter().filter_map(|l| StoredEvent::parse(&l.bytes)));
        }
        out
    }

    /// Ids of every event in the journal, in order.
    pub fn ids(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.id).collect()
    }

    /// A file holding `value` (for `file:` secret references).
    pub fn secret_file(&self, name: &str, value: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, value).unwrap();
        format!("file:{}", p.display())
    }

    pub fn runner(&self, config: SinkConfig) -> SinkRunner {
        SinkRunner::new(config, self.journal_dir(), self.store.sink_cursors()).unwrap()
    }

    pub fn runner_with(&self, config: SinkConfig, sink: Box<dyn Sink>) -> SinkRunner {
        SinkRunner::with_sink(config, self.journal_dir(), self.store.sink_cursors(), sink)
    }

    pub fn dead_letters(&self, sink: &str) -> Vec<Value> {
        let p = gatehouse_audit::sinks::dead_letter_path(&self.journal_dir(), sink);
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub async fn status(&self, sink: &str) -> gatehouse_store::SinkStatus {
        self.store
            .sink_cursors()
            .status()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.sink == sink)
            .unwrap_or_else(|| panic!("no status row for {sink}"))
    }
}

/// Runs one catch-up pass to the end (the runner retries inside it), bounded in time.
pub async fn drain(runner: &mut SinkRunner) -> Pass {
    let (_stop_tx, mut stop) = watch::channel(false);
    tokio::time::timeout(Duration::from_secs(60), runner.catch_up(&mut stop))
        .await
        .expect("the runner did not finish within 60s")
        .unwrap()
}

/// A sink config from JSON (defaults as in a config file), with short backoff for tests.
pub fn config(v: Value) -> SinkConfig {
    let mut v = v;
    let o = v.as_object_mut().unwrap();
    o.entry("max_backoff").or_insert(json!("5s"));
    o.entry("timeout").or_insert(json!("5s"));
    serde_json::from_value(v).unwrap()
}

/// A plain tool call of tool `tool_<i>`.
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

/// The `i`th test event: varied kinds, outcomes and principals.
pub fn event(i: usize, pad: usize) -> AuditEvent {
    let outcome = match i % 5 {
        3 => Outcome::Denied,
        4 => Outcome::Error,
        _ => Outcome::Ok,
    };
    let mut e = AuditEvent::new(EventKind::Request, outcome);
    e.request_id = Some(format!("req-{i}"));
    e.method = Some("tools/call".into());
    e.principal = Some(PrincipalRecord {
        kind: "user".into(),
        subject: format!("user-{}", i % 3),
        issuer: "https://idp.example".into(),
        email: Some(format!("user-{}@example.com", i % 3)),
        tenant: Some("acme".into()),
        groups: vec!["eng".into()],
        client_id: None,
    });
    e.client = Some(ClientRecord {
        name: Some("claude-code".into()),
        version: Some("1.0".into()),
        ip: Some(format!("10.0.0.{}", i % 250)),
        user_agent: None,
    });
    e.virtual_server = Some("dev".into());
    e.server = Some("github".into());
    e.target = Some(TargetRecord {
        kind: "tool".into(),
        name: format!("tool_{}", i % 4),
        operation: Some("read".into()),
    });
    e.arguments = Some(json!({"n": i, "pad": "x".repeat(pad)}));
    e.latency_us = Some(1_000 + i as u64);
    e.policy = Some(PolicyRecord {
        decision: if outcome == Outcome::Denied {
            "deny"
        } else {
            "allow"
        }
        .into(),
        policies: vec!["base".into()],
        version: "v1".into(),
        engine: "cedar".into(),
        reason: None,
        obligations: vec![],
    });
    e.trace_id = Some(format!("{:032x}", 0xabc0_0000_u128 + i as u128));
    e
}

/// Whether `path` exists.
pub fn exists(path: &Path) -> bool {
    path.exists()
}
