//! The journal on a real file system: concurrent appends, rotation, restarts, and every kind
//! of tampering that `verify` must name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::segments::{list, segment_name};
use gatehouse_audit::{
    AuditEvent, DamageKind, EventKind, Journal, JournalOptions, Outcome, TargetRecord, verify,
};
use gatehouse_config::{Durability, OnFailure};

fn options(dir: &Path, durability: Durability, segment_bytes: u64) -> JournalOptions {
    JournalOptions {
        dir: dir.join("audit"),
        durability,
        on_failure: OnFailure::Refuse,
        segment_bytes,
        signer: CheckpointSigner::load_or_create(&dir.join("keys/audit.key"), true).unwrap(),
        sync_interval: Duration::from_millis(100),
        max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
    }
}

fn event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
    e.method = Some("tools/call".into());
    e.target = Some(TargetRecord {
        kind: "tool".into(),
        name: format!("tool_{}", i % 7),
        operation: Some("read".into()),
    });
    e.arguments = Some(serde_json::json!({"n": i, "text": "x".repeat(i % 300)}));
    e
}

/// Writes `n` events from 8 concurrent tasks and closes the journal.
async fn write(dir: &Path, n: usize, durability: Durability, segment_bytes: u64) -> String {
    let journal = Journal::open(options(dir, durability, segment_bytes)).unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let j = journal.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..n).step_by(8) {
                j.append(&event(i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = journal.stats();
    assert_eq!(
        stats.written,
        n as u64 + 1,
        "every event plus journal.start"
    );
    assert_eq!(stats.failed, 0);
    let instance = journal.instance().to_string();
    journal.close().await.unwrap();
    assert!(journal.append(&event(0)).await.is_err(), "closed");
    instance
}

fn segment(dir: &Path, instance: &str, n: u32) -> PathBuf {
    dir.join("audit").join(segment_name(instance, n))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn put_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn only_damage(dir: &Path) -> gatehouse_audit::Damage {
    let report = verify(&dir.join("audit"), None).unwrap();
    assert_eq!(report.damages.len(), 1, "{:#?}", report.damages);
    report.damages[0].clone()
}

#[tokio::test]
async fn concurrent_appends_form_one_intact_chain_of_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let instance = write(dir.path(), 2000, Durability::Process, 64 * 1024 * 1024).await;
    let all = lines(&segment(dir.path(), &instance, 1));
    assert_eq!(all.len(), 2001);
    for (i, line) in all.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], i as u64 + 1);
        assert_eq!(v["instance"], instance.as_str());
        assert_eq!(v["id"], format!("{instance}-{}", i + 1));
    }
    let first: serde_json::Value = serde_json::from_str(&all[0]).unwrap();
    assert_eq!(first["type"], "journal.start");
    assert!(first["detail"]["previous"].is_null());
    let report = verify(&dir.path().join("audit"), None).unwrap();
    assert!(report.intact(), "{:#?}", report.damages);
    assert_eq!(report.events, 2001);
    assert!(report.checkpoints >= 1, "close signs a checkpoint");
}

#[tokio::test]
async fn fsync_mode_and_rotation_keep_the_chain_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let instance = write(dir.path(), 1500, Durability::Fsync, 64 * 1024).await;
    let segments = &list(&dir.path().join("audit")).unwrap()[&instance];
    assert!(segments.len() >= 3, "{} segments", segments.len());
    let report = verify(&dir.path().join("audit"), None).unwrap();
    assert!(report.intact(), "{:#?}", report.damages);
    assert_eq!(report.events, 1501);
    // Each rotation signs a checkpoint of the segment it closes.
    assert!(report.checkpoints as usize >= segments.len());

    // A missing segment in the middle is named.
    std::fs::remove_file(segment(dir.path(), &instance, 2)).unwrap();
    let report = verify(&dir.path().join("audit"), None).unwrap();
    assert!(
        report
            .damages
            .iter()
            .any(|d| d.kind == DamageKind::Deleted && d.file == segment_name(&instance, 2)),
        "{:#?}",
        report.damages
    );
}

#[tokio::test]
async fn an_edited_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let instance = write(dir.path(), 50, Durability::Process, 1 << 26).await;
    let path = segment(dir.path(), &instance, 1);
    let mut all = lines(&path);
    all[19] = all[19].replace("\"outcome\":\"ok\"", "\"outcome\":\"denied\"");
    put_lines(&path, &all);
    let d = only_damage(dir.path());
    assert_eq!(d.kind, DamageKind::Edited);
    assert_eq!(d.file, segment_name(&instance, 1));
    assert_eq!(d.line, 21, "reported where the chain breaks");
    assert!(d.detail.contains("line 20 was changed"), "{}", d.detail);
}

#[tokio::test]
async fn an_edited_last_line_is_caught_by_the_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let instance = write(dir.path(), 30, Durability::Process, 1 << 26).await;
    let path = segment(dir.path(), &instance, 1);
    let mut all = lines(&path);
    let last = all.len() - 1;
    all[last] = all[last].replace("tool_", "tool-");
    put_lines(&path, &all);
    let d = only_damage(dir.path());
    assert_eq!(d.kind, DamageKind::Edited);
    assert_eq!(d.line, 31);
    assert!(d.detail.contains("signed checkpoint"), "{}", d.detail);
}

#[tokio::test]
async fn a_deleted_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let instance = write(dir.path(), 50, Durability::Process, 1 << 26).await;
    let path = segment(dir.path(), &instance, 1);
    let mut all = lines(&path);
    all.remove(10);
    put_lines(&path, &all);
    let d = only_damage(dir.path());
    assert_eq!(d.kind, DamageKind::Deleted);
    assert_eq!(d.line, 11);
    assert!(d.detail.contains("seq 12 follows seq 10"), "{}", d.detail);
}

#[tokio::test]
async fn reordered_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let instance = write(dir.path(), 50, Durability::Process, 1 << 26).await;
    let path = segment(dir.path(), &instance, 1);
    let mut all = lines(&path);
    all.swap(5, 6);
    put_lines(&path, &all);
    let report = verify(&dir.path().join("audit"), None).unwrap();
    assert!(
        report
            .damages
            .iter()
            .any(|d| d.kind == DamageKind::Reordered && d.line == 7),
        "{:#?}",
        report.damages
    );
}

#[tokio::test]
async fn a_truncated_end_is_caught_by_the_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let instance = write(dir.path(), 50, Durability::Process, 1 << 26).await;
    let path = segment(dir.path(), &instance, 1);
    let mut all = lines(&path);
    all.truncate(40);
    put_lines(&path, &all);
    let d = only_damage(dir.path());
    assert_eq!(d.kind, DamageKind::Truncated);
    assert!(d.detail.contains("ends at seq 40"), "{}", d.detail);
}

#[tokio::test]
async fn a_forged_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let instance = write(dir.path(), 10, Durability::Process, 1 << 26).await;
    let cps = dir
        .path()
        .join("audit/checkpoints")
        .join(format!("{instance}.jsonl"));
    let mut all = lines(&cps);
    let mut cp: serde_json::Value = serde_json::from_str(&all[0]).unwrap();
    cp["seq"] = serde_json::json!(5);
    all[0] = cp.to_string();
    put_lines(&cps, &all);
    let report = verify(&dir.path().join("audit"), None).unwrap();
    assert!(
        report
            .damages
            .iter()
            .any(|d| d.kind == DamageKind::BadSignature && d.line == 1),
        "{:#?}",
        report.damages
    );
    // Pinning another key rejects every checkpoint.
    let other = CheckpointSigner::load_or_create(&dir.path().join("other.key"), true).unwrap();
    let pem = dir.path().join("other.pub");
    std::fs::write(&pem, other.public_pem()).unwrap();
    let pinned = gatehouse_audit::chain::read_public_key(&pem).unwrap();
    let report = verify(&dir.path().join("audit"), Some(&pinned)).unwrap();
    assert!(
        report
            .damages
            .iter()
            .all(|d| d.kind == DamageKind::BadSignature)
    );
    assert!(!report.damages.is_empty());
}

#[tokio::test]
async fn chains_link_across_restarts_so_cutting_or_deleting_an_old_one_shows() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(dir.path(), 20, Durability::Process, 1 << 26).await;
    // Instance ids sort by their start second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = write(dir.path(), 20, Durability::Process, 1 << 26).await;
    let start: serde_json::Value =
        serde_json::from_str(&lines(&segment(dir.path(), &second, 1))[0]).unwrap();
    assert_eq!(start["detail"]["previous"]["instance"], first.as_str());
    assert_eq!(start["detail"]["previous"]["seq"], 21);
    let report = verify(&dir.path().join("audit"), None).unwrap();
    assert!(report.intact(), "{:#?}", report.damages);
    assert_eq!(report.chains, 2);

    // Cutting the first chain's last line *and* its checkpoints is still evident.
    let path = segment(dir.path(), &first, 1);
    let mut all = lines(&path);
    all.pop();
    put_lines(&path, &all);
    std::fs::remove_file(
        dir.path()
            .join("audit/checkpoints")
            .join(format!("{first}.jsonl")),
    )
    .unwrap();
    let d = only_damage(dir.path());
    assert_eq!(d.kind, DamageKind::Truncated);
    assert!(
        d.detail.contains("recorded that it ended at seq 21"),
        "{}",
        d.detail
    );

    // Deleting the first chain entirely is evident too.
    std::fs::remove_file(&path).unwrap();
    let d = only_damage(dir.path());
    assert_eq!(d.kind, DamageKind::Deleted);
    assert!(
        d.detail.contains("whose files are all missing"),
        "{}",
        d.detail
    );
}

#[tokio::test]
async fn dropping_the_last_handle_flushes_and_signs_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path(), Durability::Process, 1 << 26);
    // No periodic checkpoint can happen during the test: only the final one.
    options.sync_interval = Duration::from_secs(3600);
    let journal = Journal::open(options).unwrap();
    let instance = journal.instance().to_string();
    for i in 0..10 {
        journal.append(&event(i)).await.unwrap();
    }
    drop(journal);
    let cps = dir
        .path()
        .join("audit/checkpoints")
        .join(format!("{instance}.jsonl"));
    let mut signed = false;
    for _ in 0..50 {
        if std::fs::read_to_string(&cps).is_ok_and(|t| t.contains("\"seq\":11")) {
            signed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        signed,
        "the writer signs the head when the last handle goes"
    );
    let path = segment(dir.path(), &instance, 1);
    let mut all = lines(&path);
    all.pop();
    put_lines(&path, &all);
    assert_eq!(only_damage(dir.path()).kind, DamageKind::Truncated);
}
