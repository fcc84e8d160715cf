//! The container runtime on Docker: a real Docker engine (Debian's docker.io, a `dockerd` of
//! the tests' own started by `scripts/containers docker`, no bridge and no iptables rules) and
//! the same FROM-scratch hostile image. Docker takes the seccomp profile inline and reports
//! what it was told in its own `inspect`; the refusals are checked from outside as on Podman.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::containers::{LIST_MANAGED, containers_script, containers_script_env, owned_by};
use common::hostile::{call_tool, counting_listener, probe, probe_json};
use common::*;
use serde_json::json;

/// The tests' Docker engine, started (and installed) if needed.
fn docker_engine() -> String {
    containers_script(&["docker"])
}

/// `docker ARGS` against that engine; stdout.
fn docker(host: &str, args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The containers (running or not) the gateway with pid `pid` owns on that engine.
fn docker_containers_of(host: &str, pid: u32) -> Vec<String> {
    owned_by(&docker(host, &LIST_MANAGED), pid)
}

#[tokio::test]
async fn on_docker_the_hostile_server_is_refused_outside_its_grants_an_http_server_is_reached_only_through_the_gateway_and_an_allow_list_is_refused()
 {
    let host = docker_engine();
    let image = containers_script_env(&["image", "hostile"], &[("ENGINE", "docker")]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("ro")).unwrap();
    std::fs::write(root.join("ro/granted.txt"), "readable grant").unwrap();
    std::fs::write(root.join("hidden.txt"), "outside the grants").unwrap();
    std::fs::write(root.join("token"), "s3cret-file-value").unwrap();
    let config = format!(
        "servers:
  - name: hostile
    command: /usr/bin/python3
    args: [/srv/hostile_server.py]
    isolation:
      runtime: container
      image: {image}
      filesystem: {{ read: [{ro}] }}
      resources: {{ memory: 96Mi, pids: 24 }}
      secret_files: {{ /run/secrets/token: \"file:token\" }}
  - name: web
    command: /usr/bin/python3
    args: [/srv/hostile_server.py, --http, \"18933\"]
    isolation: {{ runtime: container, image: {image}, http: {{ port: 18933 }} }}
  - name: out
    command: /usr/bin/python3
    args: [/srv/hostile_server.py]
    isolation: {{ runtime: container, image: {image}, network: {{ egress: [\"10.1.2.3:443\"] }} }}
  - name: demo
    command: {bin}
    args: [demo-server]
    isolation: {{ runtime: process }}
virtual_servers:
  - name: tools
    path: /mcp
    include: [{{ server: hostile }}, {{ server: web, prefix: web_ }}, {{ server: out, prefix: out_ }}, {{ server: demo }}]
",
        ro = root.join("ro").display(),
        bin = bin().display(),
    );
    let config = write_config(&root, &config);
    let mut gw = Gatehouse::start_env(
        &["--config", config.to_str().unwrap()],
        &[("GATEHOUSE_CONTAINER_HOST", &host)],
    );
    let (port, accepted) = counting_listener();

    assert_eq!(
        probe(&gw, "read", "/run/secrets/token").await,
        "ok: s3cret-file-value"
    );
    assert_eq!(
        probe(&gw, "read", root.join("ro/granted.txt").to_str().unwrap()).await,
        "ok: readable grant"
    );
    for f in [
        "/etc/shadow",
        root.join("hidden.txt").to_str().unwrap(),
        root.join("token").to_str().unwrap(),
    ] {
        let r = probe(&gw, "read", f).await;
        assert!(r.starts_with("denied"), "{f}: {r}");
    }
    let granted = root.join("ro/granted.txt");
    let before = std::fs::metadata(&granted).unwrap().modified().unwrap();
    let r = probe(&gw, "write", granted.to_str().unwrap()).await;
    assert!(r.starts_with("denied"), "{r}");
    assert_eq!(
        std::fs::metadata(&granted).unwrap().modified().unwrap(),
        before
    );
    for action in ["ptrace", "mount", "unshare"] {
        let r = probe(&gw, action, "").await;
        assert!(r.starts_with("denied"), "{action}: {r}");
    }
    let status = probe_json(&gw, "status").await;
    assert_eq!(status["CapEff"], "0000000000000000", "{status}");
    assert_eq!(status["NoNewPrivs"], "1", "{status}");
    assert_eq!(status["Seccomp"], "2", "{status}");
    let r = probe(&gw, "fork", "60").await;
    let started: usize = r.strip_prefix("ok: started ").unwrap().parse().unwrap();
    assert!(started < 24, "{r}");
    let r = probe(&gw, "connect", &format!("127.0.0.1:{port}")).await;
    assert!(r.starts_with("denied"), "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the host's loopback was reached"
    );

    // From outside: what Docker was told.
    let pid = gw.child.id();
    let names: Vec<String> = docker_containers_of(&host, pid)
        .into_iter()
        .filter(|n| n.starts_with("gatehouse-hostile-"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let seen = docker(
        &host,
        &[
            "inspect",
            "--format",
            "{{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.PidsLimit}}",
            &names[0],
        ],
    );
    assert_eq!(seen.trim(), "none true [ALL] 24");
    let opts = docker(
        &host,
        &[
            "inspect",
            "--format",
            "{{json .HostConfig.SecurityOpt}}",
            &names[0],
        ],
    );
    assert!(
        opts.contains("no-new-privileges") && opts.contains("seccomp="),
        "{opts}"
    );
    assert!(
        !opts.contains("s3cret"),
        "a secret reached the container's configuration"
    );

    // An HTTP server listens in the namespace Docker made for `none` and is reached through
    // the gateway; from there the host's loopback is out of reach too.
    assert_eq!(
        call_tool(
            &gw,
            "/mcp",
            "web_probe",
            json!({"action": "read", "target": "/etc/passwd"})
        )
        .await
        .lines()
        .next()
        .unwrap(),
        "ok: nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"
    );
    let r = call_tool(
        &gw,
        "/mcp",
        "web_probe",
        json!({"action": "connect", "target": format!("127.0.0.1:{port}")}),
    )
    .await;
    assert!(r.starts_with("denied"), "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the host's loopback was reached"
    );
    let web = docker_containers_of(&host, pid);
    assert_eq!(web.len(), 2, "{web:?}");
    for name in &web {
        let mode = docker(
            &host,
            &[
                "inspect",
                "--format",
                "{{.HostConfig.NetworkMode}} {{len .HostConfig.PortBindings}}",
                name,
            ],
        );
        assert_eq!(mode.trim(), "none 0", "{name}");
    }

    // An allow-list needs the engine to join the gateway's namespace, which Docker cannot:
    // refused, and the error says why.
    let (_, v) = modern(
        &client(),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "out_probe", "arguments": {"action": "status"}}),
    )
    .await;
    assert!(v["error"].is_object(), "{v}");
    assert!(
        eventually(Duration::from_secs(10), || gw
            .logged("which Docker cannot do"))
        .await,
        "the refusal names the engine's limit"
    );
    assert_eq!(
        call_tool(&gw, "/mcp", "echo", json!({"text": "serving"})).await,
        "serving"
    );

    // A stopped gateway leaves nothing on the engine.
    assert!(gw.terminate(Duration::from_secs(15)).is_some());
    assert!(
        docker_containers_of(&host, pid).is_empty(),
        "{:?}",
        docker_containers_of(&host, pid)
    );
}
