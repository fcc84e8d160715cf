//! Reading a request body under bounds: its size (`gateway.max_body_bytes`: a declared
//! length over it is refused before a byte is read), its time (`gateway.body_timeout`) and
//! a process-wide budget of body bytes being read at once
//! (`gateway.max_body_bytes_in_flight`), so slow or oversized bodies cannot pin memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::Response;
use bytes::BytesMut;
use futures::StreamExt;
use gatehouse_wire::{ErrorObject, Id, codes};
use http_body::Body as _;

use super::guard::rpc_error;

/// What `Retry-After` says when the budget is exhausted: bodies being read finish or time
/// out within `body_timeout`, most much sooner.
const RETRY_AFTER_SECS: u32 = 1;

/// The bounds on request bodies, shared by every request of the process.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    max_bytes: u64,
    timeout: Duration,
    budget: Arc<Budget>,
    metrics: Arc<gatehouse_telemetry::Metrics>,
}

#[derive(Debug)]
struct Budget {
    /// `gateway.max_body_bytes_in_flight`, changed by reloads.
    max: AtomicU64,
    reserved: AtomicU64,
}

impl BodyLimits {
    /// Bounds from the gateway config; registers the in-flight gauge with `metrics`.
    pub fn new(
        config: &gatehouse_config::GatewayConfig,
        metrics: Arc<gatehouse_telemetry::Metrics>,
    ) -> BodyLimits {
        let budget = Arc::new(Budget {
            max: AtomicU64::new(config.max_body_bytes_in_flight),
            reserved: AtomicU64::new(0),
        });
        let gauge = budget.clone();
        metrics
            .limits()
            .set_body_bytes_in_flight(move || gauge.reserved.load(Ordering::Relaxed));
        BodyLimits {
            max_bytes: config.max_body_bytes,
            timeout: config.body_timeout.get(),
            budget,
            metrics,
        }
    }

    /// The largest accepted body.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// These limits with the size and time bounds of `config` (a reloaded config), sharing
    /// the process-wide budget: bodies being read keep the bounds they started with.
    pub fn with_config(&self, config: &gatehouse_config::GatewayConfig) -> BodyLimits {
        BodyLimits {
            max_bytes: config.max_body_bytes,
            timeout: config.body_timeout.get(),
            budget: self.budget.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Sets the process-wide budget (`gateway.max_body_bytes_in_flight`) after a reload.
    /// Lowering it refuses new bodies until enough of those being read have finished.
    pub fn set_budget(&self, max: u64) {
        self.budget.max.store(max, Ordering::Relaxed);
    }
}

/// Bytes of the budget held by one body being read; given back when dropped.
struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Reservation {
    /// Grows the reservation to `total` bytes, unless that would exceed the budget.
    fn grow_to(&mut self, total: u64) -> bool {
        let more = total.saturating_sub(self.bytes);
        if more == 0 {
            return true;
        }
        let budget = &self.budget;
        let granted = budget
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more)
                    .filter(|&n| n <= budget.max.load(Ordering::Relaxed))
            })
            .is_ok();
        if granted {
            self.bytes = total;
        }
        granted
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

enum Refusal {
    DeclaredTooLarge(u64),
    ChunksTooLarge(u64),
    TooLarge,
    Timeout,
    Budget,
    Unreadable(String),
}

/// Reads the body of the request `parts` heads, or answers why not: `413` (too large;
/// at once when the declared length says so), `408` (not complete within the timeout),
/// `503` with `Retry-After` (the process-wide budget is in use), `400` (the client broke
/// the body off). Refusals of HTTP/1 requests close the connection, since the rest of the
/// body is not read.
pub async fn read(
    limits: &BodyLimits,
    parts: &Parts,
    body: Body,
    request_id: &str,
) -> Result<Bytes, Response> {
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let chunks = parts.extensions.get::<crate::listen::DeclaredBody>();
    match tokio::time::timeout_at(deadline, collect(limits, body, chunks)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(refusal)) => Err(refuse(limits, parts, refusal, request_id)),
        Err(_) => Err(refuse(limits, parts, Refusal::Timeout, request_id)),
    }
}

async fn collect(
    limits: &BodyLimits,
    body: Body,
    chunks: Option<&crate::listen::DeclaredBody>,
) -> Result<Bytes, Refusal> {
    let declared = body.size_hint().lower();
    if declared > limits.max_bytes {
        return Err(Refusal::DeclaredTooLarge(declared));
    }
    let mut reservation = Reservation {
        budget: limits.budget.clone(),
        bytes: 0,
    };
    // A declared length is reserved whole up front; a chunked body grows its reservation
    // as its bytes arrive.
    if !reservation.grow_to(declared) {
        return Err(Refusal::Budget);
    }
    let mut buf = BytesMut::with_capacity(usize::try_from(declared).unwrap_or(0));
    let mut stream = body.into_data_stream();
    let over = async {
        match chunks {
            Some(c) => c.exceeds(limits.max_bytes).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(over);
    loop {
        let chunk = tokio::select! {
            chunk = stream.next() => match chunk {
                Some(chunk) => chunk,
                None => break,
            },
            // A chunk-size line over the limit: its bytes may never come.
            n = &mut over => return Err(Refusal::ChunksTooLarge(n)),
        };
        let chunk = chunk.map_err(|e| Refusal::Unreadable(e.to_string()))?;
        let total = (buf.len() + chunk.len()) as u64;
        if total > limits.max_bytes {
            return Err(Refusal::TooLarge);
        }
        if !reservation.grow_to(total) {
            return Err(Refusal::Budget);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn refuse(limits: &BodyLimits, parts: &Parts, refusal: Refusal, request_id: &str) -> Response {
    let max = limits.max_bytes;
    let (status, label, message) = match refusal {
        Refusal::DeclaredTooLarge(n) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("too_large"),
            format!(
                "request body of {n} bytes (Content-Length) exceeds the limit of {max} bytes (gateway.max_body_bytes)"
            ),
        ),
        Refusal::ChunksTooLarge(n) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("too_large"),
            format!(
                "request body declares at least {n} bytes in its chunk sizes, over the limit of {max} bytes (gateway.max_body_bytes)"
            ),
        ),
        Refusal::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("too_large"),
            format!("request body exceeds the limit of {max} bytes (gateway.max_body_bytes)"),
        ),
        Refusal::Timeout => (
            StatusCode::REQUEST_TIMEOUT,
            Some("timeout"),
            format!(
                "request body not received within {} (gateway.body_timeout)",
                gatehouse_config::DurationSpec::from(limits.timeout)
            ),
        ),
        Refusal::Budget => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("budget"),
            format!(
                "the gateway is reading its maximum of {} bytes of request bodies at once (gateway.max_body_bytes_in_flight); retry shortly",
                limits.budget.max.load(Ordering::Relaxed)
            ),
        ),
        Refusal::Unreadable(e) => (
            StatusCode::BAD_REQUEST,
            None,
            format!("the request body could not be read: {e}"),
        ),
    };
    if let Some(label) = label {
        limits.metrics.limits().body_refused(label);
    }
    let reason = label.map_or("body_unreadable", |l| match l {
        "too_large" => "body_too_large",
        "timeout" => "body_timeout",
        _ => "body_budget",
    });
    crate::observe::note(|f| f.reason = Some(reason.into()));
    tracing::warn!(request_id, %status, "request body refused: {message}");
    let code = if status == StatusCode::SERVICE_UNAVAILABLE {
        codes::BACKEND_UNAVAILABLE
    } else {
        codes::INVALID_REQUEST
    };
    let mut response = rpc_error(
        status,
        Id::Null,
        ErrorObject::new(code, message),
        request_id,
    );
    let headers = response.headers_mut();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    // The unread rest of the body would otherwise be parsed as the next request.
    if parts.version <= Version::HTTP_11 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u64, budget: u64, timeout: Duration) -> BodyLimits {
        let config = gatehouse_config::GatewayConfig {
            max_body_bytes: max,
            max_body_bytes_in_flight: budget,
            body_timeout: timeout.into(),
            ..Default::default()
        };
        BodyLimits::new(&config, gatehouse_telemetry::Metrics::new())
    }

    fn parts() -> Parts {
        axum::http::Request::post("/mcp")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn streamed(chunks: &[&'static [u8]], stall: bool) -> Body {
        let items: Vec<Result<Bytes, std::io::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let s = futures::stream::iter(items);
        if stall {
            Body::from_stream(s.chain(futures::stream::pending()))
        } else {
            Body::from_stream(s)
        }
    }

    #[tokio::test]
    async fn reads_a_body_within_bounds_and_gives_the_budget_back() {
        let l = limits(10, 10, Duration::from_secs(5));
        let got = read(&l, &parts(), streamed(&[b"hello", b"!"], false), "r")
            .await
            .unwrap();
        assert_eq!(&got[..], b"hello!");
        assert_eq!(l.budget.reserved.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn refuses_declared_streamed_slow_and_over_budget_bodies() {
        let l = limits(4, 6, Duration::from_millis(100));
        let r = read(&l, &parts(), Body::from("hello"), "r")
            .await
            .unwrap_err();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let r = read(&l, &parts(), streamed(&[b"abc", b"de"], false), "r")
            .await
            .unwrap_err();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let r = read(&l, &parts(), streamed(&[b"ab"], true), "r")
            .await
            .unwrap_err();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);

        // A stalled body holds its bytes; the next one past the budget is refused.
        let held = Reservation {
            budget: l.budget.clone(),
            bytes: 0,
        };
        let mut held = held;
        assert!(held.grow_to(4));
        let r = read(&l, &parts(), streamed(&[b"abc"], false), "r")
            .await
            .unwrap_err();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        drop(held);
        assert_eq!(l.budget.reserved.load(Ordering::Relaxed), 0);
        let text = l.metrics.render();
        for (reason, n) in [("too_large", 2), ("timeout", 1), ("budget", 1)] {
            assert!(
                text.contains(&format!(
                    "gatehouse_request_bodies_refused_total{{reason=\"{reason}\"}} {n}\n"
                )),
                "{text}"
            );
        }
    }
}
