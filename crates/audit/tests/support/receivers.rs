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

// ---------------------------------------------------------------- Splunk HEC

/// A Splunk HTTP Event Collector at `addr` (any free port when `None`).
pub async fn splunk(expected: Expected, addr: Option<SocketAddr>) -> Receiver {
    let r = Receiver {
        addr: ([127, 0, 0, 1], 0).into(),
        seen: Arc::default(),
        expected: Arc::new(expected),
    };
    let app = Router::new()
        .route("/services/collector/event", post(splunk_event))
        .with_state(r.clone());
    let addr = serve(app, addr).await;
    Receiver { addr, ..r }
}

async fn splunk_event(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let resp = splunk_answer(&r, &headers, &body);
    r.log(body.len(), resp.status());
    resp
}

fn hec(status: u16, text: &str, code: i64) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"text": text, "code": code})),
    )
        .into_response()
}

fn splunk_answer(r: &Receiver, headers: &HeaderMap, body: &[u8]) -> Response {
    // Authorization: "Splunk <token>" (HEC codes 2, 3, 4).
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => return hec(401, "Token is required", 2),
        Some(v) if !v.starts_with("Splunk ") => return hec(401, "Invalid authorization", 3),
        Some(v) if v != r.expected.authorization => return hec(403, "Invalid token", 4),
        _ => {}
    }
    // Indexer acknowledgement needs a channel: a GUID in X-Splunk-Request-Channel.
    let channel = headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let guid = channel.len() == 36
        && channel.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if !guid {
        r.seen
            .lock()
            .unwrap()
            .violations
            .push(format!("channel {channel:?} is not a GUID"));
        return hec(400, "Data channel is missing", 10);
    }
    match r.next_fail() {
        Some(Fail::Status(503, after)) => {
            return retry_after(503, after, json!({"text": "Server is busy", "code": 9}));
        }
        Some(Fail::Status(s, after)) => {
            return retry_after(s, after, json!({"text": "Server is busy", "code": 9}));
        }
        _ => {}
    }
    // A stream of JSON objects, not an array.
    let mut objects = Vec::new();
    for (n, v) in serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .enumerate()
    {
        match v {
            Ok(Value::Object(o)) => objects.push(Value::Object(o)),
            Ok(other) => {
                return r.violation(format!("HEC body item {n} is not an object: {other:.80}"));
            }
            Err(e) => return r.violation(format!("HEC body is not JSON objects: {e}")),
        }
    }
    if objects.is_empty() {
        return hec(400, "No data", 5);
    }
    for (n, o) in objects.iter().enumerate() {
        let problems = [
            (!o["time"].is_number()).then_some("time is not epoch seconds"),
            (!o["host"].is_string()).then_some("host missing"),
            (!o["source"].is_string()).then_some("source missing"),
            (!o["sourcetype"].is_string()).then_some("sourcetype missing"),
            (!o["event"].is_object()).then_some("event is not the journal event"),
            (!o["fields"]
                .as_object()
                .is_some_and(|f| f.values().all(Value::is_string)))
            .then_some("fields must be flat strings"),
        ];
        if let Some(p) = problems.into_iter().flatten().next() {
            return r.violation(format!("HEC event {n}: {p}"));
        }
    }
    for (n, o) in objects.iter().enumerate() {
        let id = o["event"]["id"].as_str().unwrap_or_default().to_string();
        if r.seen.lock().unwrap().poison.contains(&id) {
            // HEC indexes the events before the bad one and names it.
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({"text": "Invalid data format", "code": 6, "invalid-event-number": n}),
                ),
            )
                .into_response();
        }
        r.accept(id, o.clone());
    }
    hec(200, "Success", 0)
}

// ---------------------------------------------------------------- Elasticsearch _bulk

/// An Elasticsearch/OpenSearch node's `_bulk` endpoint.
pub async fn elastic(expected: Expected) -> Receiver {
    let r = Receiver {
        addr: ([127, 0, 0, 1], 0).into(),
        seen: Arc::default(),
        expected: Arc::new(expected),
    };
    let app = Router::new()
        .route("/_bulk", post(bulk))
        .with_state(r.clone());
    let addr = serve(app, None).await;
    Receiver { addr, ..r }
}

async fn bulk(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let resp = bulk_answer(&r, &headers, &body);
    r.log(body.len(), resp.status());
    resp
}

fn es_error(status: u16, kind: &str, reason: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status})),
    )
        .into_response()
}

fn bulk_answer(r: &Receiver, headers: &HeaderMap, body: &[u8]) -> Response {
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(r.expected.authorization.as_str())
    {
        return es_error(401, "security_exception", "unable to authenticate");
    }
    if let Err(e) = header_is(headers, header::CONTENT_TYPE, "application/x-ndjson") {
        return r.violation(e);
    }
    let fail = r.next_fail();
    if let Some(Fail::Status(s, after)) = fail {
        let mut resp = es_error(s, "es_rejected_execution_exception", "rejected execution");
        if let Some(a) = after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, a.to_string().parse().unwrap());
        }
        return resp;
    }
    if body.last() != Some(&b'\n') {
        return r.violation("bulk body must end with a newline".into());
    }
    let lines: Vec<&[u8]> = body[..body.len() - 1].split(|&b| b == b'\n').collect();
    if !lines.len().is_multiple_of(2) {
        return r.violation(format!("bulk body has {} lines, not pairs", lines.len()));
    }
    let mut items = Vec::new();
    let mut errors = false;
    for (n, pair) in lines.chunks(2).enumerate() {
        let (Ok(action), Ok(doc)) = (
            serde_json::from_slice::<Value>(pair[0]),
            serde_json::from_slice::<Value>(pair[1]),
        ) else {
            return r.violation(format!("bulk pair {n} is not two JSON lines"));
        };
        let Some(create) = action
            .get("create")
            .filter(|_| action.as_object().unwrap().len() == 1)
        else {
            return r.violation(format!("bulk action {n} is not a create: {action}"));
        };
        let (Some(index), Some(id)) = (create["_index"].as_str(), create["_id"].as_str()) else {
            return r.violation(format!("bulk action {n} without _index/_id: {action}"));
        };
        if doc["@timestamp"].as_str().is_none() || doc["event"]["id"].as_str() != Some(id) {
            return r.violation(format!("bulk doc {n}: no @timestamp or event.id != _id"));
        }
        let key = (index.to_string(), id.to_string());
        let item = if matches!(fail, Some(Fail::ItemBusy(k)) if k == n) {
            errors = true;
            json!({"_index": index, "_id": id, "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}})
        } else if r.seen.lock().unwrap().poison.contains(id) {
            errors = true;
            json!({"_index": index, "_id": id, "status": 400, "error": {"type": "document_parsing_exception", "reason": "[1:2] failed to parse field [event.id]"}})
        } else if r.seen.lock().unwrap().stored.contains(&key) {
            errors = true;
            json!({"_index": index, "_id": id, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": format!("[{id}]: version conflict, document already exists (current version [1])")}})
        } else {
            {
                let mut s = r.seen.lock().unwrap();
                s.stored.insert(key);
                s.indices.insert(index.to_string());
            }
            r.accept(id.to_string(), doc);
            json!({"_index": index, "_id": id, "_version": 1, "result": "created", "status": 201})
        };
        items.push(json!({ "create": item }));
    }
    axum::Json(json!({"took": 3, "errors": errors, "items": items})).into_response()
}

// ---------------------------------------------------------------- Azure Monitor + Entra ID

/// The Logs Ingestion API (a data collection endpoint) and Entra ID's token endpoint on the
/// same listener: `/{tenant}/oauth2/v2.0/token` and
/// `/dataCollectionRules/{dcr}/streams/{stream}`.
pub async fn sentinel(expected: Expected) -> Receiver {
    let r = Receiver {
        addr: ([127, 0, 0, 1], 0).into(),
        seen: Arc::default(),
        expected: Arc::new(expected),
    };
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/dataCollectionRules/{dcr}/streams/{stream}", post(ingest))
        .with_state(r.clone());
    let addr = serve(app, None).await;
    Receiver { addr, ..r }
}

async fn token(
    State(r): State<Receiver>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = header_is(
        &headers,
        header::CONTENT_TYPE,
        "application/x-www-form-urlencoded",
    ) {
        return r.violation(e);
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if tenant != "tenant-1" || get("grant_type") != "client_credentials" {
        return r.violation(format!(
            "token request for {tenant}: {:?}",
            get("grant_type")
        ));
    }
    if get("scope") != "https://monitor.azure.com//.default" {
        return r.violation(format!("token scope {:?}", get("scope")));
    }
    if get("client_id") != r.expected.client_id || get("client_secret") != r.expected.client_secret
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]})),
        )
            .into_response();
    }
    let mut s = r.seen.lock().unwrap();
    let t = format!("token-{}", s.tokens.len() + 1);
    s.tokens.push((t.clone(), true));
    axum::Json(json!({"token_type": "Bearer", "expires_in": r.expected.expires_in, "ext_expires_in": r.expected.expires_in, "access_token": t})).into_response()
}

async fn ingest(
    State(r): State<Receiver>,
    Path((dcr, stream)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let resp = ingest_answer(&r, &dcr, &stream, &q, &headers, &body);
    r.log(body.len(), resp.status());
    resp
}

fn azure_error(status: u16, code: &str, message: &str, after: Option<u64>) -> Response {
    retry_after(
        status,
        after,
        json!({"error": {"code": code, "message": message}}),
    )
}

fn ingest_answer(
    r: &Receiver,
    dcr: &str,
    stream: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if dcr != "dcr-0123456789abcdef" || stream != "Custom-GatehouseAudit_CL" {
        return r.violation(format!("unknown DCR/stream {dcr}/{stream}"));
    }
    if q.get("api-version").map(String::as_str) != Some("2023-01-01") {
        return r.violation(format!("api-version {:?}", q.get("api-version")));
    }
    if let Err(e) = header_is(headers, header::CONTENT_TYPE, "application/json") {
        return r.violation(e);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let fail = r.next_fail();
    {
        let mut s = r.seen.lock().unwrap();
        if matches!(fail, Some(Fail::ExpireToken)) {
            for t in &mut s.tokens {
                t.1 = false;
            }
        }
        if !s.tokens.iter().any(|(t, valid)| *valid && *t == bearer) {
            return azure_error(
                401,
                "InvalidToken",
                "The provided token is expired or invalid.",
                None,
            );
        }
    }
    match fail {
        Some(Fail::Status(s, after)) => {
            return azure_error(s, "TooManyRequests", "Request rate is too high.", after);
        }
        Some(Fail::TooLarge) => {
            return azure_error(
                413,
                "ContentLengthLimitExceeded",
                "Maximum request body size is 1 MB.",
                None,
            );
        }
        _ => {}
    }
    if body.len() > 1024 * 1024 {
        r.seen
            .lock()
            .unwrap()
            .violations
            .push(format!("request of {} bytes, over 1 MB", body.len()));
        return azure_error(
            413,
            "ContentLengthLimitExceeded",
            "Maximum request body size is 1 MB.",
            None,
        );
    }
    let rows: Vec<Value> = match serde_json::from_slice(body) {
        Ok(Value::Array(rows)) => rows,
        _ => return r.violation("body is not a JSON array".into()),
    };
    for (n, row) in rows.iter().enumerate() {
        if row["TimeGenerated"].as_str().is_none() || row["EventId"].as_str().is_none() {
            return r.violation(format!("row {n} without TimeGenerated/EventId"));
        }
    }
    for row in rows {
        r.accept(row["EventId"].as_str().unwrap().to_string(), row);
    }
    StatusCode::NO_CONTENT.into_response()
}

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
