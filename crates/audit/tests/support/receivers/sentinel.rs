//! The Azure Monitor Logs Ingestion API and Entra ID token endpoint double.

use super::*;

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
