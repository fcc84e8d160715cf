//! A full disk under the real binary's journal (a 256 KiB tmpfs): `on_failure: refuse`
//! withholds results and refuses calls until space returns, and the chain still verifies;
//! `on_failure: serve` keeps serving and logs what it could not write.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A 256 KiB tmpfs (a real full disk; mounting it needs root, as CI has), unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(mounted.success(), "mounting a tmpfs needs root");
        SmallDisk { path, _dir: dir }
    }

    /// Writes until the disk is full; returns the filler file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let chunk = vec![b'x'; 4096];
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn journal_on(disk: &SmallDisk, extra: &str) -> (Gatehouse, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}audit:\n  dir: {}\n{extra}",
        demo_member_yaml(""),
        disk.path.join("audit").display()
    );
    let path = write_config(dir.path(), &yaml);
    (Gatehouse::start(&["--config", path.to_str().unwrap()]), dir)
}

async fn echo(gw: &Gatehouse, text: &str) -> (u16, Value) {
    modern(
        &client(),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": text}}),
    )
    .await
}

/// A full disk: calls are refused with a clear error instead of being served unaudited, and
/// served again once space returns; the chain stays intact.
#[tokio::test]
async fn a_full_disk_refuses_calls_until_space_returns() {
    let disk = SmallDisk::mount();
    let (gw, _config) = journal_on(&disk, "");
    assert_eq!(echo(&gw, "before").await.0, 200);
    let filler = disk.fill();
    // The segment's last page may still have room for a few events; then writes fail.
    let refused = |s: u16, v: &Value| {
        s == 503
            || v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("audit journal cannot be written"))
    };
    let mut first_refusal = None;
    for _ in 0..200 {
        let (s, v) = echo(&gw, "while full").await;
        if refused(s, &v) {
            first_refusal = Some(v);
            break;
        }
        assert_eq!(v["result"]["content"][0]["text"], "while full", "{v}");
    }
    let v = first_refusal.expect("a full disk refuses calls");
    // The first refused call had run: its result is withheld, not served unaudited.
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("result is withheld"),
        "{v}"
    );
    // Later calls are refused at the door, with the cause.
    let (s, v) = echo(&gw, "still full").await;
    assert_eq!(s, 503, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("audit journal cannot be written") && message.contains("No space left"),
        "{message}"
    );
    assert!(gw.logged("audit journal write failed"));
    // Space returns: calls are served again.
    std::fs::remove_file(&filler).unwrap();
    let mut served = false;
    for _ in 0..20 {
        let (s, v) = echo(&gw, "after").await;
        if s == 200 && v["result"]["content"][0]["text"] == "after" {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "calls are served again once the journal can be written"
    );
    let (code, out, _) = gatehouse(&[
        "audit",
        "verify",
        "--dir",
        disk.path.join("audit").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
}

/// `on_failure: serve` keeps serving on a full disk and logs each event it could not write.
#[tokio::test]
async fn with_on_failure_serve_a_full_disk_is_logged_not_refused() {
    let disk = SmallDisk::mount();
    let (gw, _config) = journal_on(&disk, "  on_failure: serve\n");
    disk.fill();
    for i in 0..100 {
        let text = format!("call {i}");
        let (s, v) = echo(&gw, &text).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["result"]["content"][0]["text"], text.as_str());
    }
    assert!(gw.logged("serving anyway (audit.on_failure: serve)"));
}
