//! Test doubles of the vendor APIs that cannot run here (Splunk HEC, Elasticsearch `_bulk`,
//! the Azure Monitor Logs Ingestion API and Entra ID's token endpoint). Each checks the wire
//! format the vendor documents — method, path, query, `Authorization` scheme and value,
//! `Content-Type`, body shape — records every violation (tests assert there are none), and
//! answers as the vendor does, including failures a test scripts ahead (503 "Server is
//! busy", 429 with `Retry-After`, per-item bulk 429/400, duplicate 409, expired token 401,
//! 413). The OTLP sink is tested against the real rotel collector instead.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// A failure the receiver answers the next request with.
#[derive(Debug, Clone)]
pub enum Fail {
    /// Answer the next request normally (to script a failure for the one after).
    Nothing,
    /// The whole request fails with this status (and `Retry-After` seconds).
    Status(u16, Option<u64>),
    /// `_bulk`: item `n` of the next request answers 429 (the rest are indexed).
    ItemBusy(usize),
    /// Logs Ingestion: the bearer token is revoked (as if expired): 401.
    ExpireToken,
    /// Logs Ingestion: 413 for the next request.
    TooLarge,
}

/// What a receiver saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Accepted events (the journal event, or the document/row), in arrival order,
    /// duplicates included.
    pub accepted: Vec<Value>,
    /// The ids of `accepted`.
    pub ids: Vec<String>,
    /// Requests to the ingest endpoint, with arrival time, size and outcome status.
    pub requests: Vec<(Instant, usize, u16)>,
    /// Wire-format violations (must stay empty).
    pub violations: Vec<String>,
    /// Failures to answer the next requests with.
    pub script: VecDeque<Fail>,
    /// Ids refused for good (HEC 400 invalid-event-number, bulk 400 mapping error).
    pub poison: HashSet<String>,
    /// Tokens the token endpoint issued, and which are still valid.
    pub tokens: Vec<(String, bool)>,
    /// `_bulk`: documents stored, by `(_index, _id)`.
    pub stored: HashSet<(String, String)>,
    /// Bulk `_index` values seen.
    pub indices: HashSet<String>,
}

impl Seen {
    /// The accepted ids with duplicates removed, first arrival kept.
    pub fn unique_ids(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.ids
            .iter()
            .filter(|i| seen.insert(i.as_str()))
            .cloned()
            .collect()
    }
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    expected: Arc<Expected>,
}

/// What the receiver requires of requests.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    /// The exact `Authorization` header value.
    pub authorization: String,
    /// Sentinel: client id and secret the token endpoint accepts.
    pub client_id: String,
    pub client_secret: String,
    /// Sentinel: token lifetime in seconds.
    pub expires_in: u64,
    /// Fast path for benchmarks: accept without keeping the events.
    pub count_only: bool,
}

impl Receiver {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of what it saw so far (no lock held across the test's awaits).
    pub fn snapshot(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    pub fn script(&self, fails: impl IntoIterator<Item = Fail>) {
        self.seen.lock().unwrap().script.extend(fails);
    }

    pub fn poison(&self, id: &str) {
        self.seen.lock().unwrap().poison.insert(id.to_string());
    }

    fn next_fail(&self) -> Option<Fail> {
        self.seen.lock().unwrap().script.pop_front()
    }

    fn violation(&self, v: String) -> Response {
        self.seen.lock().unwrap().violations.push(v.clone());
        (StatusCode::BAD_REQUEST, v).into_response()
    }

    fn log(&self, bytes: usize, status: StatusCode) {
        self.seen
            .lock()
            .unwrap()
            .requests
            .push((Instant::now(), bytes, status.as_u16()));
    }

    fn accept(&self, id: String, v: Value) {
        let mut s = self.seen.lock().unwrap();
        s.ids.push(id);
        if !self.expected.count_only {
            s.accepted.push(v);
        }
    }
}

async fn serve(app: Router, addr: Option<SocketAddr>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into()))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn retry_after(status: u16, after: Option<u64>, body: Value) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    if let Some(s) = after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, s.to_string().parse().unwrap());
    }
    r
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, want: &str) -> Result<(), String> {
    match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(v) if v == want || v.starts_with(&format!("{want};")) => Ok(()),
        other => Err(format!("{name}: expected {want:?}, got {other:?}")),
    }
}

mod elastic;
mod sentinel;
mod splunk;

// Each test binary uses its own receivers.
#[allow(unused_imports)]
pub use elastic::elastic;
#[allow(unused_imports)]
pub use sentinel::sentinel;
#[allow(unused_imports)]
pub use splunk::splunk;

// ---------------------------------------------------------------- OTLP/HTTP (benchmarks)

/// A bare OTLP/HTTP logs endpoint that decodes each `ExportLogsServiceRequest` and counts
/// its records: the benchmarks' fast path (rotel's debug output would measure rotel; the
/// tests use the real rotel).
pub async fn otlp_http() -> Receiver {
    let r = Receiver {
        addr: ([127, 0, 0, 1], 0).into(),
        seen: Arc::default(),
        expected: Arc::new(Expected {
            count_only: true,
            ..Expected::default()
        }),
    };
    let app = Router::new()
        .route("/v1/logs", post(otlp_logs))
        .with_state(r.clone());
    let addr = serve(app, None).await;
    Receiver { addr, ..r }
}

async fn otlp_logs(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use prost::Message;
    if let Err(e) = header_is(&headers, header::CONTENT_TYPE, "application/x-protobuf") {
        return r.violation(e);
    }
    let Ok(req) = ExportLogsServiceRequest::decode(body.as_ref()) else {
        return r.violation("body is not an ExportLogsServiceRequest".into());
    };
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            for l in &sl.log_records {
                let id = l
                    .attributes
                    .iter()
                    .find(|a| a.key == "gatehouse.event.id")
                    .and_then(|a| a.value.as_ref())
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                r.accept(id, Value::Null);
            }
        }
    }
    r.log(body.len(), StatusCode::OK);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportLogsServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// A receiver that only counts what it accepts (benchmarks).
pub fn fast(mut expected: Expected) -> Expected {
    expected.count_only = true;
    expected
}
