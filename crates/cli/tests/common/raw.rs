//! Raw HTTP/1 over TCP, for what an HTTP client library would not send: trickled headers,
//! stalled bodies, absurd framing, chosen source addresses.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to `addr` from the loopback address `from` (e.g. `127.0.0.2`).
pub async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .expect("bind a loopback source address");
    socket.connect(addr).await.expect("connect")
}

/// A `GET /healthz` that keeps the connection open.
pub const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// One HTTP/1 response as text (head and body), read until its `content-length` is complete
/// or the peer closes; `None` if nothing complete arrives within `within`.
pub async fn read_response(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Some(text);
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into()),
            Err(_) => return None,
        }
    }
}

/// Sends `request` and reads its response.
pub async fn exchange(stream: &mut TcpStream, request: &[u8], within: Duration) -> Option<String> {
    stream.write_all(request).await.ok()?;
    read_response(stream, within).await
}

/// The status code of a response read by [`read_response`].
pub fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// How long until the peer closes `stream` (reading and discarding whatever it sends), or
/// `None` if it is still open after `within`.
pub async fn closed_within(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

/// The value of `name` in the gateway's metrics, or a panic showing them all.
pub async fn metric_of(gw: &super::Gatehouse, name: &str) -> f64 {
    let text = gw.metrics().await;
    metric(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// The value of `name` (e.g. `gatehouse_connections_open{listener="gateway"}`) in a
/// Prometheus exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
