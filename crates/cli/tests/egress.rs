//! Egress allow-lists with the real binary, real bubblewrap and nftables, and the hostile
//! server (`fixtures/hostile_server.py`): the server asks, and every refusal is checked from
//! outside — the test host that logged no connection. The test hosts live in network
//! namespaces this test creates (`common/testnet.rs`), names come from the test's own DNS
//! server: nothing leaves this machine. Needs root, as the gateway does for allow-lists.

mod common;
#[path = "common/testnet.rs"]
mod testnet;

use std::time::Duration;

use common::hostile::{fixture, probe_at as probe};
use common::*;
use serde_json::json;
use testnet::{TestDns, TestHost};

/// A gateway with `hostile` (the allow-list) at `/mcp` and `closed` (`egress: []`) at
/// `/closed`, resolving names through `dns`.
fn start(egress: &[&str], dns: &TestDns) -> (tempfile::TempDir, Gatehouse) {
    let dir = tempfile::tempdir().unwrap();
    let egress = serde_json::to_string(egress).unwrap();
    let config = format!(
        "servers:
  - name: hostile
    command: python3
    args: [{script}]
    isolation:
      network: {{ egress: {egress} }}
      resources: {{ memory: 768Mi, pids: 64 }}
  - name: closed
    command: python3
    args: [{script}]
    isolation: {{ network: {{ egress: [] }} }}
virtual_servers:
  - name: open
    path: /mcp
    include: [{{ server: hostile }}]
  - name: closed
    path: /closed
    include: [{{ server: closed }}]
",
        script = fixture().display(),
    );
    let path = write_config(dir.path(), &config);
    let resolver = dns.addr.to_string();
    let gw = Gatehouse::start_env(
        &["--config", path.to_str().unwrap()],
        &[("GATEHOUSE_EGRESS_RESOLVER", &resolver)],
    );
    (dir, gw)
}

fn ok(report: &str, what: &str) {
    assert!(report.starts_with("ok"), "{what} should work: {report}");
}

fn refused(report: &str, what: &str) {
    assert!(
        report.starts_with("denied"),
        "{what} should be refused: {report}"
    );
}

#[tokio::test]
async fn an_allow_list_reaches_only_its_targets_and_every_refusal_holds_from_outside() {
    let allowed = TestHost::new(1, &[8080, 8081], 9999);
    let other = TestHost::new(2, &[8080], 9999);
    let (a, o) = (allowed.ip, other.ip);
    let dns = TestDns::start(&[
        ("allowed.test", &[a]),
        // Rebinding: an allowed address first, a forbidden one next.
        ("rebind.test", &[a, o]),
        ("other.test", &[o]),
    ]);
    let (_dir, gw) = start(
        &[
            "allowed.test:8080",
            "rebind.test:8080",
            "10.231.1.0/24:8080",
        ],
        &dns,
    );
    let host_loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let loopback_port = host_loopback.local_addr().unwrap().port();
    host_loopback.set_nonblocking(true).unwrap();

    // Allowed: the name on its port; the answer comes from the test host.
    let r = probe(&gw, "/mcp", "http", "allowed.test:8080").await;
    assert_eq!(r, format!("ok: hello from {a}:8080"));
    assert_eq!(allowed.log(), ["tcp 8080"]);
    // The sandbox resolves through the gateway's DNS: a pool address, never the real one.
    let r = probe(&gw, "/mcp", "resolve", "allowed.test").await;
    assert_eq!(r, "ok: 198.18.0.1");
    // A raw address in an allowed range, on its port.
    let r = probe(&gw, "/mcp", "http", &format!("{a}:8080")).await;
    assert_eq!(r, format!("ok: hello from {a}:8080"));
    assert_eq!(allowed.log(), ["tcp 8080", "tcp 8080"]);

    // Refused: the same host on another port, by name and by address.
    refused(
        &probe(&gw, "/mcp", "http", "allowed.test:8081").await,
        "another port",
    );
    refused(
        &probe(&gw, "/mcp", "http", &format!("{a}:8081")).await,
        "another port, raw",
    );
    // Another test host: its name does not resolve, its address is in no rule.
    refused(
        &probe(&gw, "/mcp", "resolve", "other.test").await,
        "another name",
    );
    refused(
        &probe(&gw, "/mcp", "http", &format!("{o}:8080")).await,
        "another host, raw",
    );
    // An allowed name's address, asked for as another host (domain fronting, another
    // virtual host behind the same address).
    refused(
        &probe(&gw, "/mcp", "http", "allowed.test:8080 other.test").await,
        "another Host",
    );
    // Rebinding: the first resolution reaches the allowed host, the second is refused.
    ok(
        &probe(&gw, "/mcp", "http", "rebind.test:8080").await,
        "rebind.test first",
    );
    refused(
        &probe(&gw, "/mcp", "http", "rebind.test:8080").await,
        "rebind.test next",
    );
    // The host's loopback: the server's 127.0.0.1 is its namespace's own.
    refused(
        &probe(
            &gw,
            "/mcp",
            "connect",
            &format!("127.0.0.1:{loopback_port}"),
        )
        .await,
        "the host's loopback",
    );
    // UDP other than DNS does not leave the namespace.
    refused(
        &probe(&gw, "/mcp", "udp", &format!("{a}:9999")).await,
        "UDP",
    );

    // Node's fetch ignores proxy variables: the kernel redirects it all the same.
    let r = probe(&gw, "/mcp", "fetch", "http://allowed.test:8080/").await;
    assert_eq!(r, format!("ok: hello from {a}:8080"));
    refused(
        &probe(&gw, "/mcp", "fetch", "http://allowed.test:8081/").await,
        "fetch, another port",
    );
    refused(
        &probe(&gw, "/mcp", "fetch", &format!("http://{o}:8080/")).await,
        "fetch, another host",
    );
    refused(
        &probe(&gw, "/mcp", "fetch", "http://other.test:8080/").await,
        "fetch, another name",
    );

    // From outside: the allowed host saw exactly the allowed connections (by name, raw, the
    // first rebind.test, Node's), the other host and the host's loopback nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(allowed.log(), ["tcp 8080"; 4]);
    assert_eq!(other.log(), Vec::<String>::new());
    assert!(
        host_loopback.accept().is_err(),
        "the host's loopback was reached"
    );
    // The DNS server was asked by the gateway only for the allowed names it connected to.
    let asked = dns.asked.lock().unwrap().clone();
    assert!(!asked.iter().any(|n| n == "other.test"), "{asked:?}");
    // Each refusal is logged with the server, the destination and the reason.
    assert!(
        gw.logged("DNS rebinding (rebind.test resolved to"),
        "rebinding not logged"
    );
    assert!(
        gw.logged(&format!("{o}:8080")),
        "the raw refusal is not logged"
    );
    // (Another port of an allowed name is refused by Landlock at the connect call already,
    // from ABI 4, or by the proxy: `names_ports_ranges_and_rebinding_are_decided_by_the_rules`.)
    assert!(gw.logged("egress allow-list in force"));

    // A server with `egress: []` still has no route out, not even to allowed targets.
    refused(
        &probe(&gw, "/closed", "http", &format!("{a}:8080")).await,
        "egress: []",
    );
    refused(
        &probe(&gw, "/closed", "resolve", "allowed.test").await,
        "egress: [] DNS",
    );
    refused(
        &probe(&gw, "/closed", "udp", &format!("{a}:9999")).await,
        "egress: [] UDP",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(allowed.log().len(), 4, "{:?}", allowed.log());
    assert!(!allowed.log().iter().any(|l| l.starts_with("udp")));
}

#[tokio::test]
async fn without_the_privilege_for_a_namespace_the_server_does_not_start_and_the_error_names_it() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "servers:
  - name: hostile
    command: python3
    args: [{}]
    isolation: {{ network: {{ egress: [\"allowed.test:8080\"] }} }}
virtual_servers:
  - name: open
    path: /mcp
    include: [{{ server: hostile }}]
",
        fixture().display()
    );
    let path = write_config(dir.path(), &config);
    let gw = Gatehouse::start_configured(
        &["--config", path.to_str().unwrap()],
        &[],
        tempfile::tempdir().unwrap(),
        |cmd| {
            // SAFETY: prctl with integer arguments between fork and exec. Root without these
            // two in its bounding set has neither after exec.
            unsafe {
                cmd.pre_exec(|| {
                    for cap in [21, 12] {
                        // CAP_SYS_ADMIN, CAP_NET_ADMIN
                        if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        },
    );
    let (_, v) = modern(
        &client(),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "probe", "arguments": {"action": "http", "target": "allowed.test:8080"}}),
    )
    .await;
    assert!(v.get("result").is_none_or(|r| r["isError"] == true), "{v}");
    assert!(
        eventually(Duration::from_secs(5), || gw.logged(
            "egress allow-lists need the gateway to run as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN"
        ))
        .await,
        "the start error does not name the requirement"
    );
    // Never a silent fallback: no process of the server runs.
    assert!(!gw.logged("started stdio server server=hostile"));
}

#[test]
fn validate_lists_the_effective_allow_list_and_what_enforcing_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "servers:
  - name: hostile
    command: python3
    args: [{}]
    isolation: {{ network: {{ egress: [\"API.example.com:443\", \"10.20.0.0/16:5432\"] }} }}
virtual_servers:
  - name: open
    path: /mcp
    include: [{{ server: hostile }}]
",
            fixture().display()
        ),
    );
    let (code, out, err) = gatehouse(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("note: server \"hostile\" may connect only to api.example.com:443, 10.20.0.0/16:5432 (TCP")
            && out.contains("CAP_NET_ADMIN and CAP_SYS_ADMIN"),
        "{out}"
    );
}

#[test]
fn validate_warns_when_a_config_url_names_a_host_that_resolves_inside() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "servers:
  - name: named
    url: http://localhost:9/mcp
  - name: literal
    url: http://127.0.0.1:9/mcp
  - name: unknown
    url: https://nothing.invalid/mcp
virtual_servers:
  - name: v
    path: /mcp
    include: [{ server: named }, { server: literal }, { server: unknown }]
",
    );
    let started = std::time::Instant::now();
    let (code, out, err) = gatehouse(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "a warning, not an error: {out}{err}");
    assert!(
        out.contains("warning: servers[0].url: host \"localhost\" resolves to 127.0.0.1, in the loopback (127.0.0.0/8) range"),
        "{out}"
    );
    // An address written as such is explicit; a name that does not resolve says nothing.
    assert_eq!(out.matches("warning:").count(), 1, "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
