//! `gatehouse audit retention` and the `--config` forms of `audit verify` and `audit query`,
//! through the real binary, on a journal with a synthetic history written by the library.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::gatehouse;
use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::{AuditEvent, EventKind, Journal, JournalOptions, Outcome};
use gatehouse_config::{Durability, OnFailure};

/// One chain of `n` tool calls `days_ago` old, signed with the data directory's default key.
async fn chain(data: &Path, audit: &Path, n: usize, days_ago: u64) -> String {
    let journal = Journal::open(JournalOptions {
        dir: audit.to_path_buf(),
        durability: Durability::Process,
        on_failure: OnFailure::Refuse,
        segment_bytes: 4096,
        signer: CheckpointSigner::load_or_create(&data.join("keys/audit-signing.key"), true)
            .unwrap(),
        sync_interval: Duration::from_millis(50),
        max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
    })
    .unwrap();
    let t = SystemTime::now() - Duration::from_secs(days_ago * 86_400);
    for i in 0..n {
        let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
        e.time = humantime::format_rfc3339_micros(t).to_string();
        e.method = Some("tools/call".into());
        e.request_id = Some(format!("{}-{i}", if days_ago > 0 { "old" } else { "new" }));
        journal.append(&e).await.unwrap();
    }
    let instance = journal.instance().to_string();
    journal.close().await.unwrap();
    instance
}

#[tokio::test]
async fn retention_shows_then_removes_expired_segments_and_the_journal_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let audit = tmp.path().join("journal");
    let old = chain(&data, &audit, 150, 40).await;
    let _new = chain(&data, &audit, 3, 0).await;
    let cfg = tmp.path().join("g.yaml");
    std::fs::write(
        &cfg,
        "audit:\n  dir: journal\n  retention: { default: 400d, tool_call: 30d }\n",
    )
    .unwrap();
    let (cfg, data) = (cfg.to_str().unwrap(), data.to_str().unwrap());
    let segments = |instance: &str| {
        std::fs::read_dir(&audit)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(instance))
            .count()
    };
    let before = segments(&old);
    assert!(before > 3, "{before}");

    let (code, out, err) = gatehouse(&["audit", "retention", "--config", cfg, "--data-dir", data]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("{old}: {before} segment(s), 151 event(s)")),
        "{out}"
    );
    assert!(
        out.contains("(the whole chain)") && out.contains("--apply"),
        "{out}"
    );
    assert_eq!(segments(&old), before, "a dry run removes nothing");

    let (code, out, err) = gatehouse(&[
        "audit",
        "retention",
        "--config",
        cfg,
        "--data-dir",
        data,
        "--apply",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("removed {before} segment file(s), 151 event(s)")),
        "{out}"
    );
    assert_eq!(segments(&old), 0);

    let (code, out, err) = gatehouse(&["audit", "verify", "--config", cfg, "--data-dir", data]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("2 chain(s), 4 event(s)") && out.ends_with("intact\n"),
        "{out}"
    );

    // `audit query --config` reads the journal directory of the config.
    let (code, out, err) = gatehouse(&[
        "audit",
        "query",
        "--config",
        cfg,
        "--data-dir",
        data,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 4, "3 calls and journal.start:\n{out}");
    assert!(
        !out.contains("old-"),
        "the removed events are gone from the index too:\n{out}"
    );

    // Without a retention setting nothing is planned.
    std::fs::write(tmp.path().join("keep.yaml"), "audit:\n  dir: journal\n").unwrap();
    let keep = tmp.path().join("keep.yaml");
    let (code, out, _) = gatehouse(&["audit", "retention", "--config", keep.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("kept forever"), "{out}");
}
