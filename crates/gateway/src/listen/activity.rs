//! What one connection is doing, as its header and idle timers need to know: how many
//! requests are in flight, since when it has been idle, and whether the next request's head
//! has started arriving. The I/O wrapper, the per-request guard (held by the response body)
//! and the connection's watchdog share it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Version;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why the watchdog closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// The first request (or, on HTTP/1, the head of the next one) did not arrive in time.
    HeaderTimeout,
    /// No request in flight and none arriving for the idle timeout.
    IdleTimeout,
}

impl Expiry {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Expiry::HeaderTimeout => "header_timeout",
            Expiry::IdleTimeout => "idle_timeout",
        }
    }
}

#[derive(Debug)]
struct State {
    in_flight: u32,
    requests: u64,
    /// When the last request ended (or the connection was accepted).
    idle_since: Instant,
    /// On an idle HTTP/1 connection: when the first byte of the next request arrived.
    head_started: Option<Instant>,
    /// The connection speaks HTTP/1 (known from its first request). HTTP/2 carries pings and
    /// window updates between requests, so bytes there do not mean a request is arriving.
    http1: bool,
}

/// The shared state of one connection.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    changed: Notify,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Activity {
    pub(crate) fn new(header_timeout: Duration, idle_timeout: Duration) -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                requests: 0,
                idle_since: Instant::now(),
                head_started: None,
                http1: false,
            }),
            changed: Notify::new(),
            header_timeout,
            idle_timeout,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request's head arrived; the connection is busy until the returned guard drops
    /// (the response body holds it, so a long stream keeps the connection busy).
    pub(crate) fn begin(self: &Arc<Self>, version: Version) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.requests += 1;
        s.head_started = None;
        s.http1 = version <= Version::HTTP_11;
        InFlight(self.clone())
    }

    fn end(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.head_started = None;
            drop(s);
            self.changed.notify_one();
        }
    }

    fn bytes_read(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.requests > 0 && s.http1 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// When the connection must close, and why; `None` while a request is in flight.
    fn deadline(&self) -> Option<(Instant, Expiry)> {
        let s = self.lock();
        if s.in_flight > 0 {
            None
        } else if s.requests == 0 {
            // A new connection (TLS handshake included) has `header_timeout` to send its
            // first request, whatever the protocol.
            Some((s.idle_since + self.header_timeout, Expiry::HeaderTimeout))
        } else if let Some(started) = s.head_started {
            Some((started + self.header_timeout, Expiry::HeaderTimeout))
        } else {
            Some((s.idle_since + self.idle_timeout, Expiry::IdleTimeout))
        }
    }

    /// Resolves once the connection has been idle, or slow to send a request, for too long.
    pub(crate) async fn expired(&self) -> Expiry {
        loop {
            match self.deadline() {
                None => self.changed.notified().await,
                Some((at, why)) => {
                    if Instant::now() >= at {
                        return why;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// Keeps its connection busy while alive.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The connection's I/O, noting when bytes arrive.
#[derive(Debug)]
pub(crate) struct Watched<I> {
    pub(crate) inner: I,
    pub(crate) activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
pub(crate) struct GuardedBody {
    pub(crate) inner: axum::body::Body,
    pub(crate) _guard: InFlight,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_millis(100);
    const IDLE: Duration = Duration::from_millis(400);

    /// Waits for the expiry; checks it came no earlier than `at_least` and within 3× of it.
    async fn expires_after(a: &Activity, at_least: Duration) -> Expiry {
        let start = Instant::now();
        let why = a.expired().await;
        let took = start.elapsed();
        assert!(took >= at_least && took < at_least * 3, "{took:?}");
        why
    }

    #[tokio::test]
    async fn a_new_connection_gets_the_header_timeout_then_the_idle_timeout() {
        let a = Activity::new(HEADER, IDLE);
        assert_eq!(expires_after(&a, HEADER).await, Expiry::HeaderTimeout);

        let a = Activity::new(HEADER, IDLE);
        drop(a.begin(Version::HTTP_11));
        assert_eq!(expires_after(&a, IDLE).await, Expiry::IdleTimeout);
    }

    #[tokio::test]
    async fn a_request_in_flight_is_never_expired_and_bytes_start_the_header_timer() {
        let a = Activity::new(HEADER, IDLE);
        let guard = a.begin(Version::HTTP_11);
        let waiting = tokio::time::timeout(IDLE * 2, a.expired()).await;
        assert!(waiting.is_err(), "busy connections do not expire");
        drop(guard);
        a.bytes_read();
        assert_eq!(expires_after(&a, HEADER).await, Expiry::HeaderTimeout);
    }

    #[tokio::test]
    async fn bytes_between_http2_requests_do_not_start_the_header_timer() {
        let a = Activity::new(HEADER, IDLE);
        drop(a.begin(Version::HTTP_2));
        a.bytes_read();
        assert_eq!(expires_after(&a, IDLE).await, Expiry::IdleTimeout);
    }
}
