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

use super::framing::{Declared, Framing};

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
    /// What the chunk-size lines of an HTTP/1 request body declared so far.
    body: Option<Declared>,
}

/// The shared state of one connection.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    changed: Notify,
    body_changed: Notify,
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
                body: None,
            }),
            changed: Notify::new(),
            body_changed: Notify::new(),
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
        InFlight {
            activity: self.clone(),
            message: s.requests,
        }
    }

    fn declared(&self, declared: Declared) {
        self.lock().body = Some(declared);
        self.body_changed.notify_waiters();
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

    /// True while a request is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.lock().in_flight > 0
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
pub(crate) struct InFlight {
    activity: Arc<Activity>,
    /// The request's position on its connection (1 for the first).
    message: u64,
}

impl InFlight {
    /// Lets the reader of this HTTP/1 request's body learn what its chunk sizes declare.
    pub(crate) fn declared_body(&self) -> DeclaredBody {
        DeclaredBody {
            activity: self.activity.clone(),
            message: self.message,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.end();
    }
}

/// A request extension on HTTP/1 requests: what the chunk-size lines of the request's body
/// declare, as the listener sees them arrive (hyper does not expose chunk sizes).
#[derive(Debug, Clone)]
pub struct DeclaredBody {
    activity: Arc<Activity>,
    message: u64,
}

impl DeclaredBody {
    /// Resolves with the declared size once the body's chunk sizes add up to more than
    /// `max` bytes (a lower bound while a size line is still arriving); never otherwise.
    pub async fn exceeds(&self, max: u64) -> u64 {
        loop {
            let changed = self.activity.body_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let body = self.activity.lock().body;
            if let Some(d) = body.filter(|d| d.message == self.message && d.bytes > max) {
                return d.bytes;
            }
            changed.await;
        }
    }
}

/// The connection's I/O, noting when bytes arrive and what HTTP/1 chunk sizes declare.
#[derive(Debug)]
pub(crate) struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
    framing: Framing,
}

impl<I> Watched<I> {
    pub(crate) fn new(inner: I, activity: Arc<Activity>) -> Watched<I> {
        Watched {
            inner,
            activity,
            framing: Framing::new(),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read();
            if let Some(declared) = this.framing.read(&buf.filled()[before..]) {
                this.activity.declared(declared);
            }
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
