//! Runtime isolation with the real binary, real bubblewrap and a real hostile server
//! (`fixtures/hostile_server.py`, run by the python preset): every refusal the server reports
//! is also checked from outside the sandbox — the file's content and mtime, the listener that
//! logged no connection, the cgroup that holds every process.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::hostile::*;
use common::*;
use serde_json::{Value, json};

const SECRET_ENV: &str = "GATEHOUSE_TEST_GATEWAY_ONLY_SECRET";

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    gw: Gatehouse,
}

fn start(extra_env: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    for sub in ["ro", "rw", "hidden"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("ro/granted.txt"), "readable grant").unwrap();
    std::fs::write(root.join("hidden/outside.txt"), "outside the grants").unwrap();
    std::fs::write(root.join("token"), "s3cret-file-value").unwrap();
    let config = format!(
        "servers:
  - name: hostile
    command: python3
    args: [{script}]
    isolation:
      filesystem: {{ read: [{ro}], write: [{rw}] }}
      resources: {{ memory: 96Mi, pids: 24 }}
      secrets: {{ PROBE_SECRET: \"env:{SECRET_ENV}\" }}
      secret_files: {{ /run/secrets/token: \"file:token\" }}
  - name: demo
    command: {bin}
    args: [demo-server]
virtual_servers:
  - name: tools
    path: /mcp
    include: [{{ server: hostile }}, {{ server: demo }}]
",
        script = fixture().display(),
        ro = root.join("ro").display(),
        rw = root.join("rw").display(),
        bin = bin().display(),
    );
    let path = write_config(&root, &config);
    let mut env = vec![(SECRET_ENV, "s3cret-env-value")];
    env.extend_from_slice(extra_env);
    let gw = Gatehouse::start_env(&["--config", path.to_str().unwrap()], &env);
    Setup {
        _dir: dir,
        root,
        gw,
    }
}

#[tokio::test]
async fn a_hostile_server_is_refused_outside_its_grants_and_the_refusals_hold_from_outside() {
    let Setup { _dir, root, gw } = start(&[]);
    let (port, accepted) = counting_listener();

    // Allowed: its read grant, its write grant, its secret file and variable.
    assert_eq!(
        probe(&gw, "read", root.join("ro/granted.txt").to_str().unwrap()).await,
        "ok: readable grant"
    );
    let out = root.join("rw/out.txt");
    assert_eq!(probe(&gw, "write", out.to_str().unwrap()).await, "ok");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "written by the sandboxed server"
    );
    assert_eq!(
        probe(&gw, "read", "/run/secrets/token").await,
        "ok: s3cret-file-value"
    );
    let env: Value = probe_json(&gw, "env").await;
    assert_eq!(env["PROBE_SECRET"], "s3cret-env-value");
    // Nothing of the gateway's own environment leaks in.
    assert!(env.get(SECRET_ENV).is_none(), "{env}");
    assert_eq!(env["HOME"], "/tmp");

    // The secret is in no command line of the sandbox's processes (outside check).
    let server_pid = gw.child.id();
    for pid in descendants(server_pid) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(!cmdline.contains("s3cret"), "pid {pid}: {cmdline}");
    }

    // Refused: files outside its grants.
    let data_dir = gw.data_dir.path().to_path_buf();
    let mut gateway_files = Vec::new();
    for entry in walk(&data_dir) {
        gateway_files.push(entry);
    }
    assert!(
        !gateway_files.is_empty(),
        "the gateway's data dir holds its keys"
    );
    for f in &gateway_files {
        let r = probe(&gw, "read", f.to_str().unwrap()).await;
        assert!(r.starts_with("denied"), "{}: {r}", f.display());
    }
    for f in ["/etc/shadow", "/root/.bashrc", "/root/.cache"] {
        let r = probe(&gw, "read", f).await;
        assert!(r.starts_with("denied"), "{f}: {r}");
    }
    let hidden = root.join("hidden/outside.txt");
    let r = probe(&gw, "read", hidden.to_str().unwrap()).await;
    assert!(r.starts_with("denied"), "{r}");
    let r = probe(&gw, "list", root.to_str().unwrap()).await;
    assert!(
        !r.contains("hidden") && !r.contains("token"),
        "the config folder shows only its grants: {r}"
    );

    // Refused: writing to its read-only grant; the file is unchanged (outside check).
    let granted = root.join("ro/granted.txt");
    let before = std::fs::metadata(&granted).unwrap().modified().unwrap();
    let r = probe(&gw, "write", granted.to_str().unwrap()).await;
    assert!(r.starts_with("denied"), "{r}");
    assert_eq!(std::fs::read_to_string(&granted).unwrap(), "readable grant");
    assert_eq!(
        std::fs::metadata(&granted).unwrap().modified().unwrap(),
        before
    );

    // Refused: the host's loopback; the listener saw nothing (outside check).
    let r = probe(&gw, "connect", &format!("127.0.0.1:{port}")).await;
    assert!(r.starts_with("denied"), "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the sandbox reached the host's loopback"
    );

    // Refused: ptrace, mount, new namespaces; no capabilities, no_new_privs, seccomp filter.
    for action in ["ptrace", "mount", "unshare"] {
        let r = probe(&gw, action, "").await;
        assert_eq!(r, "denied: EPERM", "{action}");
    }
    let status: Value = probe_json(&gw, "status").await;
    assert_eq!(status["CapEff"], "0000000000000000", "{status}");
    assert_eq!(status["CapBnd"], "0000000000000000", "{status}");
    assert_eq!(status["NoNewPrivs"], "1", "{status}");
    assert_eq!(status["Seccomp"], "2", "{status}");

    // Limits: 24 processes and threads, 96 MiB, enforced by a cgroup that holds every
    // process of the sandbox (outside check).
    let r = probe(&gw, "fork", "60").await;
    let started: usize = r.strip_prefix("ok: started ").unwrap().parse().unwrap();
    assert!(started < 24, "{r}");
    let r = probe(&gw, "alloc", "300").await;
    assert!(
        !r.contains("allocated"),
        "300 MiB fit under a 96 MiB limit: {r}"
    );
    let sandbox = hostile_pids(server_pid);
    assert!(!sandbox.is_empty());
    for pid in &sandbox {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(
            cgroups
                .lines()
                .any(|l| l.contains("pids") && l.contains("gatehouse-servers/hostile-"))
                || cgroups
                    .lines()
                    .any(|l| l.starts_with("0::") && l.contains("gatehouse-servers/hostile-")),
            "pid {pid} is outside the server's cgroup: {cgroups}"
        );
    }

    // The gateway keeps serving its other server (also sandboxed, by default).
    let (s, v) = modern(
        &client(),
        &gw.url("/mcp"),
        2,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "still here"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "still here");
    assert!(gw.logged("server \"demo\" has no isolation block, so it runs in the sandbox"));
    assert!(gw.logged("landlock ABI"));
}

#[tokio::test]
async fn with_an_older_landlock_the_mount_namespace_still_hides_the_host_and_the_log_says_so() {
    let Setup { _dir, root, gw } = start(&[("GATEHOUSE_LANDLOCK_MAX_ABI", "2")]);
    let r = probe(
        &gw,
        "read",
        root.join("hidden/outside.txt").to_str().unwrap(),
    )
    .await;
    assert!(r.starts_with("denied"), "{r}");
    let r = probe(&gw, "write", root.join("ro/granted.txt").to_str().unwrap()).await;
    assert!(r.starts_with("denied"), "{r}");
    assert_eq!(
        std::fs::read_to_string(root.join("ro/granted.txt")).unwrap(),
        "readable grant"
    );
    assert!(
        eventually(Duration::from_secs(5), || gw
            .logged("landlock ABI 2 (filesystem only"))
        .await,
        "the start log names the Landlock level in force"
    );
}

#[test]
fn validate_names_the_profile_a_server_without_isolation_now_gets() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "servers:\n  - name: files\n    command: node\n    args: [server.js]\n  - name: old\n    command: node\n    isolation: { runtime: process }\nvirtual_servers:\n  - name: v\n    path: /mcp\n    include: [{ server: files }, { server: old }]\n",
    );
    let (code, out, err) = gatehouse(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("note: server \"files\" has no isolation block, so it runs in the sandbox with the minimal profile: no network"), "{out}");
    assert!(out.contains("isolation: { runtime: process }"), "{out}");
    assert!(
        !out.contains("server \"old\""),
        "an explicit runtime gets no note: {out}"
    );
}

/// The cgroup folders of the hostile server's sandbox processes (from `/proc/PID/cgroup`).
fn sandbox_cgroups(pids: &[u32]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for pid in pids {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !path.contains("gatehouse-servers/hostile-") {
                continue;
            }
            let base = if controllers.is_empty() {
                PathBuf::from("/sys/fs/cgroup")
            } else {
                Path::new("/sys/fs/cgroup").join(
                    controllers
                        .split(',')
                        .find(|c| *c == "pids" || *c == "memory")
                        .unwrap_or(controllers),
                )
            };
            dirs.push(base.join(path.trim_start_matches('/')));
        }
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

#[tokio::test]
async fn a_killed_gateway_leaves_no_sandbox_and_the_next_start_removes_its_cgroups() {
    let Setup { _dir, root, mut gw } = start(&[]);
    let r = probe(&gw, "status", "").await;
    assert!(r.starts_with("ok"), "{r}");
    let sandbox = hostile_pids(gw.child.id());
    assert!(!sandbox.is_empty());
    let cgroups = sandbox_cgroups(&sandbox);
    assert!(
        !cgroups.is_empty(),
        "the sandbox runs in a cgroup of its own"
    );

    unsafe_kill(gw.child.id() as i32, 9);
    let _ = gw.child.wait();
    assert!(
        eventually(Duration::from_secs(10), || sandbox
            .iter()
            .all(|p| !alive(*p)))
        .await,
        "sandbox processes outlived the gateway: {:?}",
        sandbox.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );

    // A new gateway with the same config reaps the cgroups the killed one left.
    let path = root.join("gatehouse.yaml");
    let next = Gatehouse::start_env(&["--config", path.to_str().unwrap()], &[(SECRET_ENV, "x")]);
    assert!(
        eventually(Duration::from_secs(10), || cgroups
            .iter()
            .all(|d| !d.exists()))
        .await,
        "stale cgroups left: {cgroups:?}"
    );
    drop(next);
}

#[tokio::test]
async fn without_bubblewrap_a_server_does_not_start_and_the_error_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "servers:\n  - name: needs-sandbox\n    command: {bin}\n    args: [demo-server]\n    isolation: {{ runtime: sandbox }}\nvirtual_servers:\n  - name: tools\n    path: /mcp\n    include: [{{ server: needs-sandbox }}]\n",
        bin = bin().display()
    );
    let path = write_config(dir.path(), &config);
    // A PATH without bwrap: the machine has no sandbox.
    let gw = Gatehouse::start_env(
        &["--config", path.to_str().unwrap()],
        &[("PATH", "/nonexistent")],
    );
    let (s, v) = modern(
        &client(),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "x"}}),
    )
    .await;
    assert!(
        v.get("result").is_none_or(|r| r["isError"] == true) || s != 200,
        "the call ran without a sandbox: {v}"
    );
    assert!(
        eventually(Duration::from_secs(5), || gw
            .logged("apt install bubblewrap"))
        .await,
        "the log names the package to install"
    );
    assert!(
        !gw.logged("started stdio server"),
        "the server must not start unisolated"
    );
}

#[tokio::test]
async fn a_default_sandboxed_server_that_fails_to_start_is_told_the_limits_it_ran_under() {
    let dir = tempfile::tempdir().unwrap();
    let needed = dir.path().canonicalize().unwrap().join("needed.conf");
    std::fs::write(&needed, "x").unwrap();
    let script = dir.path().join("server.sh");
    // Reads a file next to it (not granted), then would serve: under the sandbox it exits.
    std::fs::write(
        &script,
        format!(
            "cat {} >/dev/null || exit 3\nexec {} demo-server\n",
            needed.display(),
            bin().display()
        ),
    )
    .unwrap();
    let config = format!(
        "servers:\n  - name: legacy\n    command: /bin/sh\n    args: [{}]\nvirtual_servers:\n  - name: tools\n    path: /mcp\n    include: [{{ server: legacy }}]\n",
        script.display()
    );
    let path = write_config(dir.path(), &config);
    let gw = Gatehouse::start(&["--config", path.to_str().unwrap()]);
    let _ = modern(&client(), &gw.url("/mcp"), 1, "tools/list", json!({})).await;
    assert!(
        eventually(Duration::from_secs(10), || gw
            .logged("it ran in the sandbox by default, with no network"))
        .await,
        "the failure names the default profile"
    );
    assert!(gw.logged("isolation: { runtime: process }"));
}
