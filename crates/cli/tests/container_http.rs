//! Servers that speak Streamable HTTP in a container (`isolation.http`), with the real binary
//! and a real engine (Podman, started by `scripts/containers`): the hostile test server in
//! its HTTP mode. Each property is checked from outside too: the host's own socket table,
//! what `podman inspect` shows, the listener that logged no connection, the test host's log.

mod common;
#[path = "common/testnet.rs"]
#[allow(dead_code)] // Shared with egress.rs, which also uses its DNS server.
mod testnet;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::containers::{containers_of, containers_script, engine, podman};
use common::hostile::{call_tool, counting_listener, probe, probe_json};
use common::*;
use serde_json::json;

/// The port the server listens on inside its container; nothing on the host may listen on
/// it because of the container.
const PORT: u16 = 18931;

/// The hostile server in its HTTP mode on [`PORT`], as `command` and `args` lines of a server
/// entry.
const HOSTILE_HTTP: &str =
    "/usr/bin/python3\n    args: [/srv/hostile_server.py, --http, \"18931\"]";

/// A gateway with the hostile server speaking HTTP in a container (`isolation` lines added by
/// `extra`) and the demo server beside it.
fn start(extra: &str) -> (tempfile::TempDir, Gatehouse) {
    start_command(HOSTILE_HTTP, extra)
}

/// As [`start`], with `command` (and its `args` line) instead of the hostile server's.
fn start_command(command: &str, extra: &str) -> (tempfile::TempDir, Gatehouse) {
    let image = containers_script(&["image", "hostile"]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "servers:
  - name: hostile
    command: {command}
    isolation:
      runtime: container
      image: {image}
      http: {{ port: {PORT} }}
{extra}  - name: demo
    command: {bin}
    args: [demo-server]
    isolation: {{ runtime: process }}
virtual_servers:
  - name: tools
    path: /mcp
    include: [{{ server: hostile }}, {{ server: demo }}]
",
        bin = bin().display(),
    );
    let config = write_config(dir.path(), &config);
    let gw = Gatehouse::start_env(
        &["--config", config.to_str().unwrap()],
        &[("GATEHOUSE_CONTAINER_HOST", &engine())],
    );
    (dir, gw)
}

/// Whether a socket of the host's own network namespace listens on `port` (IPv4 or IPv6).
fn host_listens_on(port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // local address, then state 0A: LISTEN.
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&hex) && cols[3] == "0A"
            })
    })
}

/// The gateway's private socket folders for server `hostile` (`/tmp/gatehouse-hostile-PID-…`).
fn socket_dirs(pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("gatehouse-hostile-{pid}-"))
        })
        .map(|e| e.path())
        .collect()
}

#[tokio::test]
async fn an_http_server_in_a_container_is_reached_only_through_the_gateway_and_reaches_nothing() {
    let (_dir, mut gw) = start("");
    let (port, accepted) = counting_listener();

    // It serves through the gateway, with the container's protections.
    let status = probe_json(&gw, "status").await;
    assert_eq!(status["CapEff"], "0000000000000000", "{status}");
    assert_eq!(status["NoNewPrivs"], "1", "{status}");
    let r = probe(&gw, "read", "/etc/shadow").await;
    assert!(r.starts_with("denied"), "{r}");
    let r = probe(&gw, "write", "/srv/hostile_server.py").await;
    assert!(r.starts_with("denied"), "{r}");

    // It reaches nothing: the host's loopback saw no connection (outside check).
    let r = probe(&gw, "connect", &format!("127.0.0.1:{port}")).await;
    assert!(r.starts_with("denied"), "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the container reached the host's loopback"
    );

    // Nothing reaches it but the gateway: its port is not in the host's socket table, the
    // engine gave it no network and published nothing, and the gateway's socket into it is in
    // a folder only the gateway's user may enter.
    assert!(
        !host_listens_on(PORT),
        "the server's port {PORT} is open in the host's network namespace"
    );
    let pid = gw.child.id();
    let names = containers_of(pid);
    assert_eq!(names.len(), 1, "{names:?}");
    let mode = podman(&[
        "inspect",
        "--format",
        "{{.HostConfig.NetworkMode}} {{len .HostConfig.PortBindings}}",
        &names[0],
    ]);
    let (mode, published) = mode.trim().split_once(' ').unwrap();
    assert_eq!(mode, "none", "the engine gave it a network");
    assert_eq!(published, "0", "ports were published");
    let dirs = socket_dirs(pid);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let perms = std::fs::metadata(&dirs[0]).unwrap().permissions().mode();
    assert_eq!(perms & 0o777, 0o700, "{:?}", dirs[0]);
    assert!(gw.logged("own namespace with its loopback only"));

    // The server gives no session id: it was initialized once, not before every call (its own
    // log has one `notifications/initialized`, answered 202, for the calls above).
    assert!(
        eventually(Duration::from_secs(5), || gw.logged_times("\" 200 -") >= 5).await,
        "the server's request log did not reach the gateway log"
    );
    assert_eq!(gw.logged_times("\" 202 -"), 1, "initialized more than once");

    // A container that ends is started again by the next request.
    let first = names[0].clone();
    podman(&["kill", &first]);
    assert!(
        eventually(Duration::from_secs(10), || gw.logged("container ended")).await,
        "the gateway did not see the container end"
    );
    let r = probe(&gw, "read", "/etc/hostname").await;
    assert!(r.starts_with("ok"), "{r}");
    let now = containers_of(pid);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(
        now[0], first,
        "the same container answered after it was killed"
    );
    // The other member kept serving throughout.
    assert_eq!(
        call_tool(&gw, "/mcp", "echo", json!({"text": "serving"})).await,
        "serving"
    );

    // A stopped gateway leaves neither container nor socket folder.
    assert!(gw.terminate(Duration::from_secs(15)).is_some());
    assert!(containers_of(pid).is_empty(), "{:?}", containers_of(pid));
    assert!(socket_dirs(pid).is_empty(), "{:?}", socket_dirs(pid));
}

#[tokio::test]
async fn an_http_server_with_an_allow_list_reaches_only_its_targets() {
    // A test host in a namespace this test makes (10.231.4.2); nothing leaves the machine.
    let host = testnet::TestHost::new(4, &[8080, 8081], 9999);
    let a = host.ip;
    let (_dir, gw) = start("      network: { egress: [\"10.231.4.0/24:8080\"] }\n");
    assert_eq!(
        probe(&gw, "http", &format!("{a}:8080")).await,
        format!("ok: hello from {a}:8080")
    );
    let r = probe(&gw, "http", &format!("{a}:8081")).await;
    assert!(r.starts_with("denied"), "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(host.log(), ["tcp 8080"], "the refused port was reached");
    assert!(gw.logged("egress through the gateway's proxy"));
    assert!(!host_listens_on(PORT));
}

#[tokio::test]
async fn an_http_server_that_never_listens_fails_with_its_reason_and_the_gateway_keeps_serving() {
    // The server exits at once: the error says so instead of a connection error.
    let (_dir, gw) = start_command(
        "/bin/sh\n    args: [-c, \"echo going away >&2; exit 3\"]",
        "",
    );
    let (_, v) = modern(
        &client(),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "probe", "arguments": {"action": "status"}}),
    )
    .await;
    assert!(v["error"].is_object(), "{v}");
    assert!(
        eventually(Duration::from_secs(10), || gw.logged(&format!(
            "its container exited before it listened on port {PORT}"
        )))
        .await,
        "the start error names the cause"
    );
    assert!(
        eventually(Duration::from_secs(5), || gw.logged("going away")).await,
        "the server's own output reached the log"
    );
    assert!(
        eventually(Duration::from_secs(10), || containers_of(gw.child.id())
            .is_empty())
        .await,
        "the failed container was left"
    );
    assert_eq!(
        call_tool(&gw, "/mcp", "echo", json!({"text": "serving"})).await,
        "serving"
    );
}

#[test]
fn validate_says_how_the_gateway_reaches_the_server_and_what_that_needs() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "servers:
  - name: web
    command: /srv/server
    isolation: { runtime: container, image: localhost/mcp:1, http: { port: 8080 } }
virtual_servers:
  - name: v
    path: /mcp
    include: [{ server: web }]
",
    );
    let (code, out, err) = gatehouse(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "note: server \"web\" speaks Streamable HTTP on port 8080 (path /mcp) inside its container"
        ) && out.contains("only the gateway reaches")
            && out.contains("root or CAP_SYS_ADMIN"),
        "{out}"
    );
}
