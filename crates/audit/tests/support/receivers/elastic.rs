//! The Elasticsearch/OpenSearch `_bulk` double.

use super::*;

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
