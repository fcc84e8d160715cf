//! The container runtime with the real binary and a real engine: Podman 4.3 as
//! `podman system service` (started by `scripts/containers engine`, which also installs it),
//! and test images built FROM scratch out of host files (`scripts/containers image`). The
//! hostile server's refusals are checked from outside too: the file's content and mtime, the
//! listener that logged no connection, what `podman inspect` shows.

mod common;
#[path = "common/testnet.rs"]
#[allow(dead_code)] // Shared with egress.rs, which also uses its DNS server.
mod testnet;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::containers::{containers_of, containers_script, engine, podman};
use common::hostile::{call_tool, counting_listener, probe, probe_json};
use common::*;
use serde_json::{Value, json};

const SECRET_ENV: &str = "GATEHOUSE_TEST_CONTAINER_SECRET";

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    gw: Gatehouse,
    config: PathBuf,
}

/// A gateway with the hostile server in a container (`isolation` lines added by `extra`) and
/// the demo server beside it.
fn start(command: &str, extra: &str) -> Setup {
    start_on(&engine(), command, extra, 24)
}

/// As [`start`], on the engine at `host`.
fn start_on(host: &str, command: &str, extra: &str, pids: u32) -> Setup {
    let image = containers_script(&["image", "hostile"]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    for sub in ["ro", "rw", "hidden"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    // The container's user (nobody) writes to its write grant.
    std::fs::set_permissions(
        root.join("rw"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(root.join("ro/granted.txt"), "readable grant").unwrap();
    std::fs::write(root.join("hidden/outside.txt"), "outside the grants").unwrap();
    std::fs::write(root.join("token"), "s3cret-file-value").unwrap();
    let config = format!(
        "servers:
  - name: hostile
    command: {command}
    isolation:
      runtime: container
      image: {image}
      filesystem: {{ read: [{ro}], write: [{rw}] }}
      resources: {{ memory: 96Mi, pids: {pids} }}
      secrets: {{ PROBE_SECRET: \"env:{SECRET_ENV}\" }}
      secret_files: {{ /run/secrets/token: \"file:token\" }}
{extra}  - name: demo
    command: {bin}
    args: [demo-server]
    isolation: {{ runtime: process }}
virtual_servers:
  - name: tools
    path: /mcp
    include: [{{ server: hostile }}, {{ server: demo }}]
",
        ro = root.join("ro").display(),
        rw = root.join("rw").display(),
        bin = bin().display(),
    );
    let config = write_config(&root, &config);
    let gw = Gatehouse::start_env(
        &["--config", config.to_str().unwrap()],
        &[
            (SECRET_ENV, "s3cret-env-value"),
            ("GATEHOUSE_CONTAINER_HOST", host),
        ],
    );
    Setup {
        _dir: dir,
        root,
        gw,
        config,
    }
}

const HOSTILE: &str = "/usr/bin/python3\n    args: [/srv/hostile_server.py]";

#[tokio::test]
async fn a_hostile_server_in_a_container_is_refused_outside_its_grants_and_the_refusals_hold_from_outside()
 {
    let Setup {
        _dir, root, mut gw, ..
    } = start(HOSTILE, "");
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
    let env = probe_json(&gw, "env").await;
    assert_eq!(env["PROBE_SECRET"], "s3cret-env-value");
    assert!(
        env.get(SECRET_ENV).is_none(),
        "the gateway's environment leaked in: {env}"
    );
    assert_eq!(env["HOME"], "/tmp");

    // Refused: the gateway's data dir and keys, the host's secrets and home, other files.
    let mut data_files = Vec::new();
    let mut todo = vec![gw.data_dir.path().to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else {
                data_files.push(e.path());
            }
        }
    }
    assert!(
        !data_files.is_empty(),
        "the gateway's data dir holds its keys"
    );
    for f in data_files.iter().map(|p| p.to_str().unwrap()).chain([
        "/etc/shadow",
        "/root/.bashrc",
        "/root/.cache",
        root.join("hidden/outside.txt").to_str().unwrap(),
        root.join("token").to_str().unwrap(),
    ]) {
        let r = probe(&gw, "read", f).await;
        assert!(r.starts_with("denied"), "{f}: {r}");
    }

    // Refused: writing to its read-only grant; content and mtime unchanged (outside check).
    let granted = root.join("ro/granted.txt");
    let before = std::fs::metadata(&granted).unwrap().modified().unwrap();
    let r = probe(&gw, "write", granted.to_str().unwrap()).await;
    assert!(r.starts_with("denied"), "{r}");
    assert_eq!(std::fs::read_to_string(&granted).unwrap(), "readable grant");
    assert_eq!(
        std::fs::metadata(&granted).unwrap().modified().unwrap(),
        before
    );
    // And its own root file system is read-only.
    let r = probe(&gw, "write", "/srv/hostile_server.py").await;
    assert!(r.starts_with("denied"), "{r}");

    // Refused: the host's loopback; the listener saw nothing (outside check).
    let r = probe(&gw, "connect", &format!("127.0.0.1:{port}")).await;
    assert!(r.starts_with("denied"), "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the container reached the host's loopback"
    );

    // Refused: ptrace, mount, new namespaces; no capabilities, no_new_privs, seccomp.
    for action in ["ptrace", "mount", "unshare"] {
        let r = probe(&gw, action, "").await;
        assert!(r.starts_with("denied"), "{action}: {r}");
    }
    let status = probe_json(&gw, "status").await;
    assert_eq!(status["CapEff"], "0000000000000000", "{status}");
    assert_eq!(status["CapBnd"], "0000000000000000", "{status}");
    assert_eq!(status["NoNewPrivs"], "1", "{status}");
    assert_eq!(status["Seccomp"], "2", "{status}");
    assert!(
        status["Uid"].as_str().unwrap().starts_with("65534"),
        "{status}"
    );

    // Limits: 24 processes, 96 MiB.
    let r = probe(&gw, "fork", "60").await;
    let started: usize = r.strip_prefix("ok: started ").unwrap().parse().unwrap();
    assert!(started < 24, "{r}");
    let r = probe(&gw, "alloc", "300").await;
    assert!(
        !r.contains("allocated"),
        "300 MiB fit under a 96 MiB limit: {r}"
    );

    // From outside: what the engine was told, and that no secret file value is in it.
    let pid = gw.child.id();
    let names = containers_of(pid);
    assert_eq!(names.len(), 1, "{names:?}");
    let inspect: Value = serde_json::from_str(&podman(&["inspect", &names[0]])).unwrap();
    let c = &inspect[0];
    let hc = &c["HostConfig"];
    assert_eq!(hc["PidsLimit"], 24, "{hc}");
    assert_eq!(hc["Memory"], 96 << 20, "{hc}");
    assert_eq!(hc["ReadonlyRootfs"], true, "{hc}");
    assert_eq!(hc["NetworkMode"], "none", "{hc}");
    assert_eq!(c["Config"]["Labels"]["io.gatehouse.server"], "hostile");
    let text = c.to_string();
    assert!(
        !text.contains("s3cret-file-value"),
        "a secret file's value is in inspect: {text}"
    );
    // A secret asked as a variable is in the container's configuration: the documented,
    // weaker form.
    assert!(text.contains("PROBE_SECRET=s3cret-env-value"));
    // The secret files live in memory, readable by the container's user only.
    let shm: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("gatehouse-secrets-{pid}-"))
        })
        .collect();
    assert_eq!(shm.len(), 1);

    // The gateway keeps serving its other server.
    assert_eq!(
        call_tool(&gw, "/mcp", "echo", json!({"text": "still here"})).await,
        "still here"
    );
    assert!(gw.logged("runtime=\"container\"") || gw.logged("runtime=container"));

    // A normal stop removes the container and its secrets.
    assert!(
        gw.terminate(Duration::from_secs(15)).is_some(),
        "the gateway stops on SIGTERM"
    );
    assert!(
        containers_of(pid).is_empty(),
        "a stopped gateway left {:?}",
        containers_of(pid)
    );
    assert!(
        !shm[0].path().exists(),
        "the secret folder outlived the gateway"
    );
}

#[tokio::test]
async fn after_kill_9_the_next_gateway_reaps_the_container_the_last_one_left() {
    // The server outlives its stdin (a shell sleeps after it), so only the reaper removes it.
    let cmd = "/bin/sh\n    args: [-c, \"/usr/bin/python3 /srv/hostile_server.py; sleep 600\"]";
    let Setup {
        _dir,
        mut gw,
        config,
        ..
    } = start(cmd, "");
    assert_eq!(
        probe(&gw, "read", "/run/secrets/token").await,
        "ok: s3cret-file-value"
    );
    let first = gw.child.id();
    assert_eq!(containers_of(first).len(), 1);
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    // The killed gateway removed nothing, and its container cannot end by itself (it sleeps
    // 600 s after the server): from here only a reaper removes it. Every gateway reaps at its
    // start — in a full test run that may be another test's gateway before this `next` one,
    // so the outside checks below do not ask which gateway did it.

    let host = engine();
    let next = Gatehouse::start_env(
        &["--config", config.to_str().unwrap()],
        &[
            (SECRET_ENV, "s3cret-env-value"),
            ("GATEHOUSE_CONTAINER_HOST", &host),
        ],
    );
    assert!(
        eventually(Duration::from_secs(20), || containers_of(first).is_empty()).await,
        "the next gateway did not reap {:?}",
        containers_of(first)
    );
    // The reaper removes the secret folders after the containers: give it that moment.
    let secret_folder_left = || {
        std::fs::read_dir("/dev/shm").unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("gatehouse-secrets-{first}-"))
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || !secret_folder_left()).await,
        "the killed gateway's secret folder is still there"
    );
    assert_eq!(
        call_tool(&next, "/mcp", "echo", json!({"text": "serving"})).await,
        "serving"
    );
}

#[tokio::test]
async fn a_runtime_class_the_engine_would_not_use_is_refused_and_the_gateway_keeps_serving() {
    // The default service runs runc whatever a container asks (Podman 4.3's API ignores it).
    let Setup { _dir, gw, .. } = start(HOSTILE, "      runtime_class: gatehouse-test-runc\n");
    let (_, v) = modern(
        &client(),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "probe", "arguments": {"action": "status"}}),
    )
    .await;
    assert!(
        !v.to_string().contains("NoNewPrivs"),
        "the server ran on the wrong runtime: {v}"
    );
    // The log is read from the gateway's stderr as it comes: give the line a moment.
    assert!(
        eventually(Duration::from_secs(5), || gw.logged(
            "asked for runtime class \"gatehouse-test-runc\", but the engine would run it with \"runc\""
        ))
        .await,
        "the refusal names both runtimes"
    );
    // Removed in the background once refused: give the engine that moment.
    assert!(
        eventually(Duration::from_secs(10), || containers_of(gw.child.id())
            .is_empty())
        .await,
        "the refused container was left"
    );
    assert_eq!(
        call_tool(&gw, "/mcp", "echo", json!({"text": "serving"})).await,
        "serving"
    );
}

/// Each runtime class through a Podman service whose runtime it is: `inspect` shows the
/// class as the container's OCI runtime, and the server works (gVisor included; its pid
/// limit counts gVisor's own threads too, which need more than 24: 128 here).
#[tokio::test]
async fn a_runtime_class_is_the_containers_oci_runtime_and_gvisor_runs_the_server() {
    for class in ["gatehouse-test-runc", "gatehouse-test-runsc"] {
        let host = containers_script(&["engine", class]);
        let Setup { _dir, mut gw, .. } = start_on(
            &host,
            HOSTILE,
            &format!("      runtime_class: {class}\n"),
            128,
        );
        let status = probe_json(&gw, "status").await;
        assert_eq!(status["CapEff"], "0000000000000000", "{class}: {status}");
        // gVisor's own kernel does not report no_new_privs; its seccomp (--oci-seccomp)
        // still refuses namespaces.
        for action in ["unshare", "mount"] {
            let r = probe(&gw, action, "").await;
            assert!(r.starts_with("denied"), "{class} {action}: {r}");
        }
        assert_eq!(
            probe(&gw, "read", "/run/secrets/token").await,
            "ok: s3cret-file-value",
            "{class}"
        );
        let pid = gw.child.id();
        let names = containers_of(pid);
        assert_eq!(names.len(), 1, "{names:?}");
        let runtime = podman(&["inspect", "--format", "{{.OCIRuntime}}", &names[0]]);
        assert_eq!(runtime.trim(), class);
        assert!(gw.terminate(Duration::from_secs(15)).is_some());
        assert!(containers_of(pid).is_empty());
    }
}

#[tokio::test]
async fn a_container_with_an_allow_list_reaches_only_its_targets_through_the_gateways_proxy() {
    // A test host in a namespace this test makes (10.231.3.2); nothing leaves the machine.
    let host = testnet::TestHost::new(3, &[8080, 8081], 9999);
    let a = host.ip;
    let Setup { _dir, gw, .. } = start(
        HOSTILE,
        "      network: { egress: [\"10.231.3.0/24:8080\", \"allowed.test:8080\"] }\n",
    );
    let (port, accepted) = counting_listener();
    assert_eq!(
        probe(&gw, "http", &format!("{a}:8080")).await,
        format!("ok: hello from {a}:8080")
    );
    assert_eq!(host.log(), ["tcp 8080"]);
    // Its resolv.conf names the namespace's DNS listener: an allowed name gets a pool address,
    // another name nothing.
    assert_eq!(
        probe(&gw, "resolve", "allowed.test").await,
        "ok: 198.18.0.1"
    );
    let r = probe(&gw, "resolve", "other.test").await;
    assert!(r.starts_with("denied"), "{r}");
    // Refused: another port of the same host, the host's loopback (outside checks).
    let r = probe(&gw, "http", &format!("{a}:8081")).await;
    assert!(r.starts_with("denied"), "{r}");
    let r = probe(&gw, "connect", &format!("127.0.0.1:{port}")).await;
    assert!(r.starts_with("denied"), "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(host.log(), ["tcp 8080"], "the refused port was reached");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the host's loopback was reached"
    );
    assert!(eventually(Duration::from_secs(5), || gw.logged("egress refused")).await);
    assert!(gw.logged("egress through the gateway's proxy"));
    // The engine joined the gateway's namespace for it.
    let names = containers_of(gw.child.id());
    assert_eq!(names.len(), 1, "{names:?}");
    let mode = podman(&[
        "inspect",
        "--format",
        "{{.HostConfig.NetworkMode}}",
        &names[0],
    ]);
    assert!(mode.trim().starts_with("ns:/proc/"), "{mode}");
}
