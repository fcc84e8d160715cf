//! `gatehouse validate` and `gatehouse schema`.

mod common;

use std::process::Command;

#[test]
fn validate_reports_every_problem_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_config(
        dir.path(),
        "servers:\n  - name: a\n    comand: x\n  - name: a\n    url: http://127.0.0.1:1/mcp\nvirtual_servers:\n  - name: v\n    path: /mcp\n    include:\n      - server: missing\n",
    );
    let out = Command::new(common::bin())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gatehouse.yaml:3:5"),
        "unknown key located: {err}"
    );
    assert!(err.contains("servers[0]"), "{err}");
    assert!(err.contains("did you mean \"command\""), "{err}");

    let good = common::write_config(dir.path(), &common::demo_member_yaml(""));
    let out = Command::new(common::bin())
        .args(["validate", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn validate_reports_semantic_problems_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_config(
        dir.path(),
        "servers:\n  - name: a\n    url: http://127.0.0.1:1/mcp\n  - name: a\n    url: http://127.0.0.1:2/mcp\nvirtual_servers:\n  - name: v\n    path: /mcp\n    include:\n      - server: missing\n",
    );
    let out = Command::new(common::bin())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("servers[1].name"), "duplicate name: {err}");
    assert!(
        err.contains("include[0].server"),
        "dangling reference: {err}"
    );
}

#[test]
fn schema_is_generated_json_schema() {
    let out = Command::new(common::bin()).arg("schema").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["properties"]["servers"].is_object(), "{v}");
    assert!(v.to_string().contains("2026-07-28"));
}

#[test]
fn schema_markdown_prints_the_configuration_reference() {
    let out = Command::new(common::bin())
        .args(["schema", "--markdown"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        gatehouse_config::reference_markdown()
    );
}
