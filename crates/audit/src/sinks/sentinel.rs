//! Microsoft Sentinel through the Azure Monitor Logs Ingestion API.
//!
//! `POST {url}/dataCollectionRules/{dcr_id}/streams/{stream}?api-version=2023-01-01` with
//! `Authorization: Bearer <token>` and a JSON array of rows, each at most 1 MB per call
//! (the API's limit; a 413 splits the call further). The token comes from Entra ID's
//! client-credentials flow (`{authority}/{tenant_id}/oauth2/v2.0/token`, scope
//! `https://monitor.azure.com//.default`), is kept until shortly before it expires, and is
//! fetched again once when the API answers 401. 429 and 503 are retried after the API's
//! `Retry-After`.
//!
//! Rows have flat columns for a custom table (`GatehouseAudit_CL`, see docs/siem.md for the
//! DCR stream declaration) plus `Event`, the whole journal event as `dynamic`.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use gatehouse_config::SinkConfig;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::http::{self, chunks};
use super::{Delivered, Shipped, Sink, SinkError};

/// The Logs Ingestion API's limit per call.
pub const MAX_REQUEST: usize = 1024 * 1024;

/// The API version the request shape follows.
const API_VERSION: &str = "2023-01-01";

/// The token's audience for Azure Monitor ingestion.
const SCOPE: &str = "https://monitor.azure.com//.default";

/// How long before its expiry a token is replaced.
const EARLY: Duration = Duration::from_secs(300);

/// The Sentinel (Azure Monitor Logs Ingestion) sink.
pub struct SentinelSink {
    config: SinkConfig,
    client: reqwest::Client,
    url: reqwest::Url,
    token_url: reqwest::Url,
    token: Option<(String, Instant)>,
    max_request: usize,
    resume: http::Resume,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
}

#[derive(Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl SentinelSink {
    /// Builds it from its config.
    pub fn new(config: &SinkConfig) -> Result<SentinelSink, SinkError> {
        let need = |v: &Option<String>, f: &str| {
            v.clone().ok_or_else(|| {
                SinkError::Config(format!("audit.sinks {}: {f} is required", config.name))
            })
        };
        let tenant = need(&config.tenant_id, "tenant_id")?;
        let dcr = need(&config.dcr_id, "dcr_id")?;
        need(&config.client_id, "client_id")?;
        if config.client_secret.is_none() {
            return Err(SinkError::Config(format!(
                "audit.sinks {}: client_secret is required",
                config.name
            )));
        }
        let stream = config
            .stream
            .clone()
            .unwrap_or_else(|| "Custom-GatehouseAudit_CL".into());
        let mut url = http::endpoint(
            config,
            &format!(
                "dataCollectionRules/{}/streams/{}",
                segment(&dcr),
                segment(&stream)
            ),
        )?;
        url.set_query(Some(&format!("api-version={API_VERSION}")));
        let authority = config
            .authority
            .clone()
            .unwrap_or_else(|| "https://login.microsoftonline.com".into());
        let token_url = reqwest::Url::parse(&format!(
            "{}/{}/oauth2/v2.0/token",
            authority.trim_end_matches('/'),
            segment(&tenant)
        ))
        .map_err(|e| SinkError::Config(format!("audit.sinks {}: authority: {e}", config.name)))?;
        Ok(SentinelSink {
            config: config.clone(),
            client: http::client(config)?,
            url,
            token_url,
            token: None,
            max_request: MAX_REQUEST,
            resume: http::Resume::default(),
        })
    }

    /// Sets the most bytes per call (tests of the splitting).
    pub fn with_max_request(mut self, bytes: usize) -> SentinelSink {
        self.max_request = bytes;
        self
    }

    /// A valid access token: the cached one, or a new one from Entra ID.
    async fn token(&mut self) -> Result<String, SinkError> {
        if let Some((t, until)) = &self.token
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let what = format!(
            "sentinel {}: token from {}",
            self.config.name, self.token_url
        );
        let secret = match &self.config.client_secret {
            Some(r) => http::secret(&self.config, "client_secret", r)?,
            None => String::new(),
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", self.config.client_id.as_deref().unwrap_or(""))
            .append_pair("client_secret", &secret)
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", SCOPE)
            .finish();
        let request = self
            .client
            .post(self.token_url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        let (status, after, body) = http::exchange(&what, request).await?;
        if !status.is_success() {
            // Entra ID's error names the problem (AADSTS7000215: invalid client secret)
            // without echoing the secret.
            let e: TokenError = serde_json::from_slice(&body).unwrap_or_default();
            let text = format!("{}: {}", e.error, e.error_description);
            return Err(if http::retryable(status) {
                SinkError::Retry {
                    message: format!("{what}: HTTP {status}: {text}"),
                    after,
                }
            } else {
                SinkError::Config(format!("{what}: HTTP {status}: {text}"))
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| SinkError::retry(format!("{what}: unreadable answer: {e}")))?;
        // Entra ID sends expires_in as a number; some proxies send it as a string.
        let life = answer
            .expires_in
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map_or(Duration::from_secs(3600), Duration::from_secs);
        let keep = life.saturating_sub(EARLY).max(life / 2);
        self.token = Some((answer.access_token.clone(), Instant::now() + keep));
        Ok(answer.access_token)
    }

    /// Posts the rows in `range` (a JSON array; row `i` is event `from + i` of the batch);
    /// on 413 the range is halved and each half posted, down to single rows, which are then
    /// refused.
    async fn post(
        &mut self,
        rows: &[Vec<u8>],
        range: std::ops::Range<usize>,
        from: usize,
    ) -> Result<(), SinkError> {
        let what = format!("sentinel {}", self.config.name);
        let mut pending = vec![range];
        while let Some(range) = pending.pop() {
            let mut body =
                Vec::with_capacity(2 + rows[range.clone()].iter().map(Vec::len).sum::<usize>());
            body.push(b'[');
            for (n, r) in rows[range.clone()].iter().enumerate() {
                if n > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(r);
            }
            body.push(b']');
            let mut refreshed = false;
            let (status, after, answer) = loop {
                let token = self.token().await?;
                let request = self
                    .client
                    .post(self.url.clone())
                    .header(
                        reqwest::header::AUTHORIZATION,
                        http::credential_header(&self.config, "Bearer", &token)?,
                    )
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                let got = http::exchange(&what, request).await?;
                if got.0 == StatusCode::UNAUTHORIZED && !refreshed {
                    // Expired or revoked early: one fresh token, then the 401 stands.
                    self.token = None;
                    refreshed = true;
                    continue;
                }
                break got;
            };
            if status.is_success() {
                self.resume.advance(from + range.end);
                continue;
            }
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                if range.len() > 1 {
                    let mid = range.start + range.len() / 2;
                    // Popped last-in first-out: the first half goes first, keeping order.
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                    continue;
                }
                self.resume.reject(
                    from + range.start,
                    format!("{what}: HTTP 413: the event alone is larger than the API takes"),
                );
                self.resume.advance(from + range.end);
                continue;
            }
            return Err(http::failure_of(
                &what,
                status,
                after,
                &String::from_utf8_lossy(&answer),
            ));
        }
        Ok(())
    }
}

/// `s` as one URL path segment (a DCR id or stream name holds no `/`; this keeps a wrong
/// value from changing the path).
fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One row of the custom table.
pub fn row(s: &Shipped) -> Value {
    let e = &s.event.event;
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    let text = |v: Option<&String>| v.map(|s| Value::String(s.clone()));
    put("TimeGenerated", Some(json!(e.time)));
    put("EventId", Some(json!(s.event.id)));
    put("EventType", Some(json!(e.kind.as_str())));
    put("Outcome", Some(json!(e.outcome.as_str())));
    let p = e.principal.as_ref();
    put("Subject", p.map(|p| json!(p.subject)));
    put("PrincipalKind", p.map(|p| json!(p.kind)));
    put("Issuer", p.map(|p| json!(p.issuer)));
    put("UserEmail", text(p.and_then(|p| p.email.as_ref())));
    put("Tenant", text(p.and_then(|p| p.tenant.as_ref())));
    let c = e.client.as_ref();
    put("ClientIp", text(c.and_then(|c| c.ip.as_ref())));
    put("ClientName", text(c.and_then(|c| c.name.as_ref())));
    put("VirtualServer", text(e.virtual_server.as_ref()));
    put("Server", text(e.server.as_ref()));
    put("Method", text(e.method.as_ref()));
    put("Target", e.target.as_ref().map(|t| json!(t.name)));
    put("TargetKind", e.target.as_ref().map(|t| json!(t.kind)));
    put(
        "Operation",
        text(e.target.as_ref().and_then(|t| t.operation.as_ref())),
    );
    put(
        "LatencyMs",
        e.latency_us.map(|us| json!(us as f64 / 1000.0)),
    );
    put(
        "PolicyDecision",
        e.policy.as_ref().map(|p| json!(p.decision)),
    );
    put("TraceId", text(e.trace_id.as_ref()));
    put("RequestId", text(e.request_id.as_ref()));
    put("SessionId", text(e.session.as_ref()));
    put("Instance", Some(json!(s.event.instance)));
    put("Event", serde_json::from_slice::<Value>(&s.raw).ok());
    Value::Object(m)
}

impl Sink for SentinelSink {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [Shipped],
    ) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async move {
            let from = self.resume.start(batch);
            let rows: Vec<Vec<u8>> = batch[from..]
                .iter()
                .map(|s| serde_json::to_vec(&row(s)).unwrap_or_default())
                .collect();
            // A comma per row, the brackets per call.
            let sizes: Vec<usize> = rows.iter().map(|r| r.len() + 1).collect();
            for range in chunks(&sizes, self.max_request, 2) {
                if range.len() == 1 && sizes[range.start] + 2 > self.max_request {
                    self.resume.reject(
                        from + range.start,
                        format!(
                            "sentinel {}: the event is {} bytes, over the API's {} per call",
                            self.config.name, sizes[range.start], self.max_request
                        ),
                    );
                    self.resume.advance(from + range.end);
                    continue;
                }
                self.post(&rows, range, from).await?;
            }
            Ok(self.resume.finish())
        })
    }
}
