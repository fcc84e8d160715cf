//! Bounded client connections, against the real binary over real sockets: slow headers and
//! idle keep-alive connections are closed, connections are capped overall and per source
//! address, and a reserve of file descriptors keeps the gateway working at its cap.

mod common;

use std::time::Duration;

use common::raw::{self, HEALTHZ};
use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// The HTTP/2 connection preface and an empty SETTINGS frame: an h2c client that never
/// sends a request.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn slow_and_silent_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_with_gateway(
        &dir,
        "  connections:\n    header_timeout: 1s\n    idle_timeout: 60s\n",
    );
    let addr = gw.addr();
    let mut waits = Vec::new();
    // Headers trickling at 5 B/s, on new and on kept-alive connections.
    for reuse in [false, true] {
        for _ in 0..5 {
            waits.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                if reuse {
                    let r = raw::exchange(&mut s, HEALTHZ, Duration::from_secs(5)).await;
                    assert_eq!(raw::status(&r.unwrap()), 200);
                }
                let (mut read, mut write) = s.into_split();
                let trickle = tokio::spawn(async move {
                    for b in
                        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaa"
                    {
                        if write.write_all(&[*b]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                });
                let closed = raw::closed_within(&mut read, Duration::from_secs(3)).await;
                trickle.abort();
                closed
            }));
        }
    }
    // Connections that send nothing, and an h2c client that sends no request.
    for preface in [&b""[..], &b""[..], H2_PREFACE] {
        waits.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(preface).await.unwrap();
            let (mut read, _write) = s.into_split();
            raw::closed_within(&mut read, Duration::from_secs(3)).await
        }));
    }
    for w in waits {
        let closed = w.await.unwrap();
        let took = closed.expect("closed within 3× the header timeout");
        assert!(took >= Duration::from_millis(800), "closed early: {took:?}");
    }
    let metrics = gw.metrics().await;
    let closed = raw::metric(
        &metrics,
        r#"gatehouse_connections_closed_total{listener="gateway",reason="header_timeout"}"#,
    );
    assert_eq!(closed, Some(13.0), "{metrics}");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_but_open_streams_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_with_gateway(
        &dir,
        "  connections:\n    header_timeout: 10s\n    idle_timeout: 1s\n",
    );
    let addr = gw.addr();
    // A legacy HTTP+SSE stream: a response in flight for as long as the client reads.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /mcp/sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    // HTTP/1.1 keep-alive after one request.
    let mut h1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let r = raw::exchange(&mut h1, HEALTHZ, Duration::from_secs(5)).await;
    assert_eq!(raw::status(&r.unwrap()), 200);
    // HTTP/2 (h2c) after one request: no open stream is idle too.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);

    let took = raw::closed_within(&mut h1, Duration::from_secs(3))
        .await
        .expect("the idle HTTP/1.1 connection is closed within 3× idle_timeout");
    assert!(took >= Duration::from_millis(800), "closed early: {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        raw::closed_within(&mut stream, Duration::from_millis(200)).await,
        None,
        "a stream in flight outlives idle_timeout"
    );
    let metrics = gw.metrics().await;
    let value = |name: &str| raw::metric(&metrics, name).unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(
        value(r#"gatehouse_connections_closed_total{listener="gateway",reason="idle_timeout"}"#),
        2.0,
        "the HTTP/1.1 and the HTTP/2 connection"
    );
    assert_eq!(
        value(r#"gatehouse_connections_open{listener="gateway"}"#),
        1.0,
        "only the stream is left"
    );
}

/// Opens a keep-alive connection from `from` and returns it with its answer to a health
/// check (`200` when admitted, `503` with the reason when refused).
async fn open_from(from: &str, addr: std::net::SocketAddr) -> (tokio::net::TcpStream, String) {
    let mut s = raw::connect_from(from, addr).await;
    let r = raw::exchange(&mut s, HEALTHZ, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    (s, r)
}

#[tokio::test]
async fn connections_are_capped_per_source_address_and_overall() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_with_gateway(&dir, "  connections:\n    max: 6\n    max_per_ip: 3\n");
    let addr = gw.addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        let (s, r) = open_from("127.0.0.2", addr).await;
        assert_eq!(raw::status(&r), 200, "{r}");
        held.push(s);
    }
    let (_, r) = open_from("127.0.0.2", addr).await;
    assert_eq!(raw::status(&r), 503, "{r}");
    assert!(
        r.contains("too many connections from 127.0.0.2") && r.contains("max_per_ip"),
        "{r}"
    );
    // Another address still gets in, up to the overall cap.
    for _ in 0..3 {
        let (s, r) = open_from("127.0.0.3", addr).await;
        assert_eq!(raw::status(&r), 200, "{r}");
        held.push(s);
    }
    let (_, r) = open_from("127.0.0.4", addr).await;
    assert_eq!(raw::status(&r), 503, "{r}");
    assert!(r.contains("maximum of 6 connections"), "{r}");
    // A closed connection gives its place back.
    drop(held.remove(0));
    let mut admitted = false;
    for _ in 0..50 {
        let (s, r) = open_from("127.0.0.4", addr).await;
        if raw::status(&r) == 200 {
            held.push(s);
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a place freed by a closed connection is reused");

    let metrics = gw.metrics().await;
    let value = |name: &str| raw::metric(&metrics, name).unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(
        value(r#"gatehouse_connections_refused_total{listener="gateway",reason="per_ip"}"#),
        1.0
    );
    assert!(
        value(r#"gatehouse_connections_refused_total{listener="gateway",reason="max"}"#) >= 1.0
    );
    assert_eq!(
        value(r#"gatehouse_connections_open{listener="gateway"}"#),
        6.0
    );
}

/// Lowers the open-file limit of the gateway process (soft and hard) to `n`.
fn nofile(n: u64) -> impl FnOnce(&mut std::process::Command) {
    move |command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
}

#[tokio::test]
async fn the_descriptor_reserve_keeps_calls_and_the_audit_trail_working_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "gateway:\n  connections:\n    fd_reserve: 96\n{}",
            demo_member_yaml("")
        ),
    );
    let gw = Gatehouse::start_configured(
        &[
            "--config",
            path.to_str().unwrap(),
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &[],
        tempfile::tempdir().unwrap(),
        nofile(256),
    );
    let addr = gw.addr();
    // A client with a connection open before the flood (its pool keeps it).
    let legit = client();
    let r = legit.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let mut held = Vec::new();
    let mut refused = 0;
    let mut unanswered = 0;
    for _ in 0..300 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        match raw::exchange(&mut s, HEALTHZ, Duration::from_secs(1)).await {
            Some(r) if raw::status(&r) == 200 => held.push(s),
            Some(r) => {
                assert_eq!(raw::status(&r), 503, "{r}");
                assert!(r.contains("fd_reserve"), "{r}");
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            // Out of descriptors, the gateway cannot even accept: stop flooding.
            None => {
                unanswered += 1;
                if unanswered >= 3 {
                    break;
                }
            }
        }
    }
    assert!(
        refused >= 5,
        "connections past the cap are refused ({} held, {unanswered} unanswered)",
        held.len()
    );
    assert!(held.len() < 256 - 96, "{} held", held.len());

    // With every place taken, a call on the open connection still starts the stdio member
    // (pipes, a process) and is journaled.
    let (s, v) = modern(
        &legit,
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "at the cap"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "at the cap", "{v}");
    let metrics = gw.metrics().await;
    assert_eq!(
        raw::metric(
            &metrics,
            r#"gatehouse_connections_refused_total{listener="gateway",reason="fd_reserve"}"#
        ),
        Some(f64::from(refused)),
        "{metrics}"
    );
    // The journal has the call, and the index answers for it.
    let (code, out, err) = gatehouse(&[
        "audit",
        "query",
        "--data-dir",
        gw.data_dir.path().to_str().unwrap(),
        "--type",
        "mcp.request",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"echo\""), "{out}");
    assert!(
        !gw.logged("Too many open files") && !gw.logged("os error 24"),
        "nothing in the gateway ran out of descriptors"
    );
}

#[tokio::test]
async fn the_tls_listener_offers_http2_and_closes_silent_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl makes a certificate");
    let gw = start_with_gateway(
        &dir,
        "  tls: { cert: cert.pem, key: key.pem }\n  connections:\n    header_timeout: 1s\n",
    );
    assert!(gw.base.starts_with("https://"), "{}", gw.base);
    // The certificate is self-signed: this test is about protocols, not trust.
    let https = |builder: reqwest::ClientBuilder| {
        builder.danger_accept_invalid_certs(true).build().unwrap()
    };
    let h2 = https(reqwest::Client::builder());
    let r = h2.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, reqwest::Version::HTTP_2),
        "ALPN picks h2"
    );
    let (s, v) = modern(&h2, &gw.url("/mcp"), 1, "tools/list", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let h1 = https(reqwest::Client::builder().http1_only());
    let r = h1.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, reqwest::Version::HTTP_11)
    );

    // A client that connects and never starts the handshake.
    let mut silent = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let took = raw::closed_within(&mut silent, Duration::from_secs(3))
        .await
        .expect("closed within 3× the header timeout");
    assert!(took >= Duration::from_millis(800), "closed early: {took:?}");
    let metrics = gw.metrics().await;
    assert!(
        raw::metric(
            &metrics,
            r#"gatehouse_connections_closed_total{listener="gateway",reason="header_timeout"}"#
        ) >= Some(1.0),
        "{metrics}"
    );
}
