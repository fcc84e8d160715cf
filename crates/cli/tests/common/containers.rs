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
    containers_script_env(args, &[])
}

/// As [`containers_script`], with `env` set (e.g. `ENGINE=docker`).
pub fn containers_script_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(repo().join("scripts/containers"))
        .args(args)
        .envs(env.iter().copied())
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

/// The `ps` arguments that list every managed container (running or not) with its labels;
/// the same for `podman` and `docker`.
pub const LIST_MANAGED: [&str; 6] = [
    "ps",
    "-a",
    "--filter",
    "label=io.gatehouse.managed=true",
    "--format",
    "{{.Names}} {{.Labels}}",
];

/// Names, from a [`LIST_MANAGED`] listing, of the containers the gateway with pid `pid` owns.
pub fn owned_by(listing: &str, pid: u32) -> Vec<String> {
    listing
        .lines()
        .filter(|l| l.contains(&format!(":{pid}:")))
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect()
}

/// Names of the containers (running or not) a gateway with pid `pid` owns on Podman.
pub fn containers_of(pid: u32) -> Vec<String> {
    owned_by(&podman(&LIST_MANAGED), pid)
}
