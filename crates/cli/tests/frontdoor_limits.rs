//! Bounded request bodies and the DNS-rebinding Host check in every protocol version,
//! against the real binary: oversized declared lengths and absurd chunk sizes are refused at
//! once, stalled bodies time out, bodies in flight share a budget, and HTTP/2 `:authority`
//! and a missing Host are checked like a Host header.

mod common;

use std::time::{Duration, Instant};

use common::raw;
use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// The head of a stateless `POST` to `path` with `framing` (a `Content-Length` or
/// `Transfer-Encoding` line).
fn post_head(path: &str, framing: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\n{framing}\r\n\r\n"
    )
    .into_bytes()
}

/// Sends `head` then `body` on a new connection and waits up to `within` for the answer.
async fn send(
    gw: &Gatehouse,
    head: &[u8],
    body: &[u8],
    within: Duration,
) -> (Option<String>, Duration, tokio::net::TcpStream) {
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let start = Instant::now();
    s.write_all(head).await.unwrap();
    s.write_all(body).await.unwrap();
    let r = raw::read_response(&mut s, within).await;
    (r, start.elapsed(), s)
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_with_gateway(
        &dir,
        "  max_body_bytes: 65536\n  body_timeout: 10s\n  connections:\n    header_timeout: 10s\n",
    );
    // A declared length over the limit, on Streamable HTTP and on the legacy message path.
    for path in ["/mcp", "/mcp/message?sessionId=x"] {
        let head = post_head(path, "Content-Length: 2147483648");
        let (r, took, mut s) = send(&gw, &head, b"{", Duration::from_secs(1)).await;
        let r = r.unwrap_or_else(|| panic!("{path}: no answer within a second"));
        assert_eq!(raw::status(&r), 413, "{r}");
        assert!(
            r.contains("2147483648") && r.contains("gateway.max_body_bytes"),
            "{r}"
        );
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert!(
            raw::closed_within(&mut s, Duration::from_secs(2))
                .await
                .is_some(),
            "the connection is closed (the rest of the body is never read)"
        );
    }
    let refused = r#"gatehouse_request_bodies_refused_total{reason="too_large"}"#;
    assert_eq!(raw::metric_of(&gw, refused).await, 2.0);
}

#[tokio::test]
async fn chunked_bodies_are_refused_once_their_chunk_sizes_pass_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_with_gateway(
        &dir,
        "  max_body_bytes: 65536
  body_timeout: 10s
",
    );
    let head = post_head("/mcp", "Transfer-Encoding: chunked");
    // A chunk that declares 2^64-1 bytes.
    let (r, took, _) = send(&gw, &head, b"FFFFFFFFFFFFFFFF\r\n{", Duration::from_secs(1)).await;
    let r = r.expect("an absurd chunk size is answered within a second");
    assert_eq!(raw::status(&r), 413, "{r}");
    assert!(
        r.contains("18446744073709551615 bytes in its chunk sizes"),
        "{r}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Chunks that add up past the limit.
    let mut body = Vec::new();
    for _ in 0..3 {
        body.extend_from_slice(format!("{:x}\r\n", 30_000).as_bytes());
        body.extend(std::iter::repeat_n(b' ', 30_000));
        body.extend_from_slice(b"\r\n");
    }
    let (r, _, _) = send(&gw, &head, &body, Duration::from_secs(2)).await;
    assert_eq!(raw::status(&r.unwrap()), 413);

    let refused = r#"gatehouse_request_bodies_refused_total{reason="too_large"}"#;
    assert_eq!(raw::metric_of(&gw, refused).await, 2.0);
}

#[tokio::test]
async fn a_stalled_body_gets_408_after_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_with_gateway(&dir, "  body_timeout: 1s\n");
    let head = post_head("/mcp", "Content-Length: 100");
    let (r, took, mut s) = send(&gw, &head, b"{\"jsonrpc\":", Duration::from_secs(3)).await;
    let r = r.expect("answered within 3× the body timeout");
    assert_eq!(raw::status(&r), 408, "{r}");
    assert!(r.contains("gateway.body_timeout"), "{r}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(
        raw::closed_within(&mut s, Duration::from_secs(2))
            .await
            .is_some()
    );
    let refused = r#"gatehouse_request_bodies_refused_total{reason="timeout"}"#;
    assert_eq!(raw::metric_of(&gw, refused).await, 1.0);
}

#[tokio::test]
async fn bodies_being_read_share_a_budget() {
    let dir = tempfile::tempdir().unwrap();
    // Room for 10 bodies of 99,000 bytes.
    let gw = start_with_gateway(
        &dir,
        "  max_body_bytes: 100000\n  max_body_bytes_in_flight: 1000000\n  body_timeout: 3s\n",
    );
    let head = post_head("/mcp", "Content-Length: 99000");
    let start = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let gw_addr = gw.addr();
        let head = head.clone();
        stalled.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(gw_addr).await.unwrap();
            s.write_all(&head).await.unwrap();
            s.write_all(&[b' '; 1000]).await.unwrap();
            let r = raw::read_response(&mut s, Duration::from_secs(10)).await;
            (r.unwrap_or_default(), start.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = gw.metrics().await;
    assert_eq!(
        raw::metric(&during, "gatehouse_request_body_bytes_in_flight"),
        Some(990_000.0),
        "{during}"
    );
    let mut busy = 0;
    let mut timed_out = 0;
    for s in stalled {
        let (r, took) = s.await.unwrap();
        match raw::status(&r) {
            503 => {
                assert!(r.to_ascii_lowercase().contains("retry-after: 1"), "{r}");
                assert!(r.contains("gateway.max_body_bytes_in_flight"), "{r}");
                assert!(took < Duration::from_secs(1), "{took:?}");
                busy += 1;
            }
            408 => timed_out += 1,
            _ => panic!("{r}"),
        }
    }
    assert_eq!((busy, timed_out), (30, 10));
    let metrics = gw.metrics().await;
    let value = |name: &str| raw::metric(&metrics, name).unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(
        value(r#"gatehouse_request_bodies_refused_total{reason="budget"}"#),
        30.0
    );
    assert_eq!(value("gatehouse_request_body_bytes_in_flight"), 0.0);
}

fn tools_list() -> serde_json::Value {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}})
}

#[tokio::test]
async fn a_foreign_http2_authority_is_refused_like_a_foreign_host() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_with_gateway(&dir, "  max_body_bytes: 65536\n");
    let port = gw.addr().port();
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    // HTTP/2 with a loopback authority works.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("evil.example.com", gw.addr())
        .build()
        .unwrap();
    let (s, _, v) = post(&h2, &gw.url("/mcp"), &headers, &tools_list()).await;
    assert_eq!(s, 200, "{v}");
    // A foreign `:authority` (DNS rebinding: the name resolves to this machine) does not.
    let (s, _, v) = post(
        &h2,
        &format!("http://evil.example.com:{port}/mcp"),
        &headers,
        &tools_list(),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("evil.example.com"),
        "{v}"
    );
}

#[tokio::test]
async fn a_request_without_host_is_refused_on_a_loopback_listener() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_with_gateway(
        &dir,
        "  max_body_bytes: 65536
",
    );
    let body = tools_list().to_string();
    let request = format!(
        "POST /mcp HTTP/1.0\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (r, _, _) = send(&gw, request.as_bytes(), b"", Duration::from_secs(5)).await;
    let r = r.unwrap();
    assert_eq!(raw::status(&r), 403, "{r}");
    assert!(r.contains("names no host"), "{r}");
}
