//! The container engine the container tests run against: Podman as `podman system service`,
//! started (and installed) by `scripts/containers`, and its test images.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `scripts/containers ARGS` and returns what it printed; the engine must run here
/// (`scripts/test` installs it), so a failure fails the test with the script's words.
pub fn containers_script(args: &[&str]) -> String {
    let out = Command::new(repo().join("scripts/containers"))
        .args(args)
        .output()
        .expect("scripts/containers runs");
    assert!(
        out.status.success(),
        "scripts/containers {args:?} failed (the container tests need podman; scripts/containers engine installs and starts it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The engine's socket, started if needed.
pub fn engine() -> String {
    containers_script(&["engine"])
}

/// `podman ARGS` against the same storage as the service; stdout.
pub fn podman(args: &[&str]) -> String {
    let conf = std::fs::canonicalize(repo().join(".tools/containers.conf"))
        .or_else(|_| {
            std::env::var("HOME")
                .map(|h| PathBuf::from(h).join(".cache/gatehouse-tools/containers.conf"))
        })
        .unwrap();
    let out = Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .output()
        .expect("podman runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of the containers (running or not) a gateway with pid `pid` owns.
pub fn containers_of(pid: u32) -> Vec<String> {
    podman(&[
        "ps",
        "-a",
        "--filter",
        "label=io.gatehouse.managed=true",
        "--format",
        "{{.Names}} {{.Labels}}",
    ])
    .lines()
    .filter(|l| l.contains(&format!(":{pid}:")))
    .map(|l| l.split(' ').next().unwrap_or("").to_string())
    .collect()
}
