//! `gatehouse audit export` through the real binary, on a journal written by the library:
//! every layout, the time window, `sha256sum -c` (the real coreutils tool), the manifest's
//! signature against the key the journal publishes, damage reporting, and usage errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::gatehouse;
use gatehouse_audit::chain::{CheckpointSigner, read_public_key, verify_detached};
use gatehouse_audit::export::Manifest;
use gatehouse_audit::{AuditEvent, EventKind, Journal, JournalOptions, Outcome, TargetRecord};
use gatehouse_config::{Durability, OnFailure};
use serde_json::Value;

/// A data dir whose journal holds 30 requests, one per minute from 2025-01-01T10:00:00Z
/// (tool `tool_<i>`), signed with the key `gatehouse up` would use.
async fn journal() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let key = data.path().join("keys/audit-signing.key");
    let j = Journal::open(JournalOptions {
        dir: data.path().join("audit"),
        durability: Durability::Process,
        on_failure: OnFailure::Refuse,
        segment_bytes: 4096,
        signer: CheckpointSigner::load_or_create(&key, true).unwrap(),
        sync_interval: Duration::from_millis(50),
        max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
    })
    .unwrap();
    for i in 0..30 {
        let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
        e.time = format!("2025-01-01T10:{i:02}:00.000000Z");
        e.method = Some("tools/call".into());
        e.target = Some(TargetRecord {
            kind: "tool".into(),
            name: format!("tool_{i}"),
            operation: Some("read".into()),
        });
        j.append(&e).await.unwrap();
    }
    j.close().await.unwrap();
    data
}

fn export(data: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "audit",
        "export",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    gatehouse(&args)
}

fn manifest(out: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}

/// Every exported line, across the numbered files in order.
fn exported_lines(out: &Path, m: &Manifest) -> Vec<String> {
    m.files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(out.join(&f.name))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

const WINDOW: [&str; 4] = [
    "--since",
    "2025-01-01T10:05:00Z",
    "--until",
    "2025-01-01T10:15:00Z",
];

#[tokio::test]
async fn every_format_exports_exactly_the_window() {
    let data = journal().await;
    for format in ["jsonl", "ocsf", "ecs", "cef"] {
        let out = data.path().join(format!("export-{format}"));
        let mut args = WINDOW.to_vec();
        args.extend(["--format", format]);
        let (code, stdout, stderr) = export(data.path(), &out, &args);
        assert_eq!(code, 0, "{format}: {stdout}{stderr}");
        let m = manifest(&out);
        assert_eq!(m.events, 10, "{format}: minutes 5..15");
        assert_eq!(m.since.as_deref(), Some("2025-01-01T10:05:00.000000Z"));
        assert!(m.verify.as_ref().unwrap().intact);
        assert_eq!(m.chains.len(), 1);
        assert_eq!(m.chains[0].first_time, "2025-01-01T10:05:00.000000Z");
        assert_eq!(m.chains[0].last_time, "2025-01-01T10:14:00.000000Z");
        let lines = exported_lines(&out, &m);
        assert_eq!(lines.len(), 10);
        let tools: Vec<String> = lines
            .iter()
            .map(|l| match format {
                "jsonl" => serde_json::from_str::<Value>(l).unwrap()["target"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                "ocsf" => {
                    let v: Value = serde_json::from_str(l).unwrap();
                    assert_eq!(v["class_uid"], 6003);
                    v["resources"][0]["name"].as_str().unwrap().to_string()
                }
                "ecs" => serde_json::from_str::<Value>(l).unwrap()["gatehouse"]["target"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                _ => {
                    assert!(l.starts_with("CEF:0|Gatehouse|Gatehouse|"), "{l}");
                    let at = l.find("cs2=tool:").unwrap() + "cs2=tool:".len();
                    l[at..].split(' ').next().unwrap().to_string()
                }
            })
            .collect();
        let want: Vec<String> = (5..15).map(|i| format!("tool_{i}")).collect();
        assert_eq!(tools, want, "{format}");
    }
}

#[tokio::test]
async fn sha256sum_accepts_the_export_and_catches_an_edit() {
    let data = journal().await;
    let out = data.path().join("export");
    // Small files, so the export rolls over several.
    let (code, _, stderr) = export(data.path(), &out, &["--max-file-bytes", "2000"]);
    assert_eq!(code, 0, "{stderr}");
    let m = manifest(&out);
    assert!(m.files.len() > 2, "{:?}", m.files);
    assert_eq!(m.events, 31, "30 requests and journal.start");
    assert_eq!(m.files.iter().map(|f| f.events).sum::<u64>(), 31);
    assert_eq!(m.files[0].name, "events-000001.jsonl");
    let check = || {
        Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(&out)
            .output()
            .unwrap()
    };
    let ok = check();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let listed = String::from_utf8_lossy(&ok.stdout);
    assert!(listed.contains("manifest.json: OK") && listed.contains("manifest.json.sig: OK"));
    let first = out.join(&m.files[0].name);
    let mut text = std::fs::read_to_string(&first).unwrap();
    text = text.replacen("tool_", "tool-", 1);
    std::fs::write(&first, text).unwrap();
    assert!(!check().status.success(), "an edited file fails the check");
}

#[tokio::test]
async fn the_manifest_signature_verifies_with_the_published_key() {
    let data = journal().await;
    let out = data.path().join("export");
    let (code, _, stderr) = export(data.path(), &out, &["--format", "ecs"]);
    assert_eq!(code, 0, "{stderr}");
    let m = manifest(&out);
    let key_id = m.signature.key_id.clone().expect("signed");
    let published = data.path().join("audit/keys").join(format!("{key_id}.pem"));
    assert_eq!(m.signature.public_key.as_deref(), Some(published.as_path()));
    let key = read_public_key(&published).unwrap();
    let bytes = std::fs::read(out.join("manifest.json")).unwrap();
    let sig = std::fs::read_to_string(out.join("manifest.json.sig")).unwrap();
    assert!(verify_detached(&key, &bytes, &sig));
    let mut edited = bytes.clone();
    let at = edited.iter().position(|b| *b == b'3').unwrap();
    edited[at] = b'4';
    assert!(!verify_detached(&key, &edited, &sig), "an edit breaks it");
}

#[tokio::test]
async fn without_a_readable_key_the_manifest_says_it_is_unsigned() {
    let data = journal().await;
    let out = data.path().join("export");
    let missing = data.path().join("nope.key");
    let (code, _, stderr) = export(
        data.path(),
        &out,
        &["--signing-key", missing.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: the manifest is not signed"),
        "{stderr}"
    );
    let m = manifest(&out);
    assert!(m.signature.key_id.is_none());
    assert!(
        m.signature
            .unsigned
            .as_deref()
            .unwrap()
            .contains("nope.key")
    );
    assert!(!out.join("manifest.json.sig").exists());
}

#[tokio::test]
async fn a_damaged_journal_is_exported_and_reported_with_exit_1() {
    let data = journal().await;
    let seg = first_segment(&data.path().join("audit"));
    let text = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(&seg, text.replacen("tool_1\"", "tool_X\"", 1)).unwrap();
    let out = data.path().join("export");
    let (code, _, stderr) = export(data.path(), &out, &[]);
    assert_eq!(code, 1, "{stderr}");
    let v = manifest(&out).verify.unwrap();
    assert!(!v.intact && !v.damages.is_empty(), "{v:?}");
    // --no-verify skips it, and says so.
    let out2 = data.path().join("export2");
    let (code, _, _) = export(data.path(), &out2, &["--no-verify"]);
    assert_eq!(code, 0);
    assert!(manifest(&out2).verify.is_none());
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let data = journal().await;
    let out = data.path().join("export");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let (code, _, stderr) = export(data.path(), &out, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );

    let fresh = data.path().join("fresh");
    let (code, _, stderr) = export(data.path(), &fresh, &["--format", "xml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("xml"), "{stderr}");
    let (code, _, stderr) = export(data.path(), &fresh, &["--since", "yesterday-ish"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("neither a duration"), "{stderr}");
    let (code, _, stderr) = export(data.path(), &fresh, &["--since", "1h", "--until", "2h"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--since must be before --until"),
        "{stderr}"
    );
    assert!(!fresh.exists(), "nothing written on a usage error");
}

fn first_segment(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    names.sort();
    names.remove(0)
}
