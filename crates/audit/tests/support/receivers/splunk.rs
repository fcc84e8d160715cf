//! The Splunk HTTP Event Collector double.

use super::*;

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
