//! Splunk HTTP Event Collector: batches of events posted to `/services/collector/event` as
//! concatenated JSON event objects (not an array), each with `time` (epoch seconds with
//! microseconds), `host`, `source`, `sourcetype`, optional `index`, the journal event as
//! `event`, and a few indexed `fields` (event type, outcome, user, tool) so searches on
//! them need no extraction.
//!
//! HEC answers `{"text":"Success","code":0}`. A 400 names the first event it could not
//! take (`invalid-event-number`); the events before it are indexed, so that one event is
//! dead-lettered and the rest of the batch is sent again. 401/403 (token missing, invalid
//! or disabled) are configuration errors; 429 and 503 (code 9, "Server is busy") are
//! retried after the collector's `Retry-After`.

use futures::future::BoxFuture;
use gatehouse_config::{SecretRef, SinkConfig};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::http::{self, chunks};
use super::{Delivered, Shipped, Sink, SinkError};

/// Most bytes per request; HEC's default `max_content_length` is 800 MB, but proxies in
/// front of it (and Splunk Cloud, 1 MB per event) are stricter.
const MAX_REQUEST: usize = 8 * 1024 * 1024;

/// The Splunk HEC sink.
pub struct SplunkSink {
    name: String,
    client: reqwest::Client,
    url: reqwest::Url,
    token: SecretRef,
    config: SinkConfig,
    host: String,
    source: String,
    sourcetype: String,
    channel: String,
    resume: http::Resume,
}

/// One HEC event object.
#[derive(Serialize)]
struct Envelope<'a> {
    /// Absent for a time that does not parse: HEC then uses the time of receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<f64>,
    host: &'a str,
    source: &'a str,
    sourcetype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
    event: &'a RawValue,
    fields: Fields<'a>,
}

/// Indexed fields: HEC takes flat string values only.
#[derive(Serialize)]
struct Fields<'a> {
    event_type: &'a str,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    virtual_server: Option<&'a str>,
}

/// HEC's answer body.
#[derive(Deserialize, Default)]
struct Answer {
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: Option<i64>,
    #[serde(rename = "invalid-event-number", default)]
    invalid_event: Option<usize>,
}

impl SplunkSink {
    /// Builds it from its config (the token is read at each delivery, so a rotated or
    /// late-appearing secret is picked up without a restart).
    pub fn new(config: &SinkConfig) -> Result<SplunkSink, SinkError> {
        let token = config.token.clone().ok_or_else(|| {
            SinkError::Config(format!("audit.sinks {}: token is required", config.name))
        })?;
        Ok(SplunkSink {
            name: config.name.clone(),
            client: http::client(config)?,
            url: http::endpoint(config, "services/collector/event")?,
            token,
            config: config.clone(),
            host: http::hostname(),
            channel: channel_id(),
            resume: http::Resume::default(),
            source: config.source.clone().unwrap_or_else(|| "gatehouse".into()),
            sourcetype: config
                .sourcetype
                .clone()
                .unwrap_or_else(|| "gatehouse:audit".into()),
        })
    }

    /// The body for `batch`: one HEC event object per event, newline separated (HEC
    /// accepts any whitespace between objects; newlines keep it readable in captures).
    /// Lines that are not JSON never reach here: the runner only ships parsed events.
    fn body(&self, batch: &[Shipped]) -> Vec<Vec<u8>> {
        batch
            .iter()
            .map(|s| {
                let event: &RawValue = serde_json::from_slice(&s.raw).unwrap_or(RawValue::NULL);
                let e = &s.event.event;
                let envelope = Envelope {
                    // Microseconds, the journal's precision, as HEC's decimal seconds.
                    time: http::unix_nanos(&e.time).map(|n| (n / 1_000) as f64 / 1e6),
                    host: &self.host,
                    source: &self.source,
                    sourcetype: &self.sourcetype,
                    index: self.config.index.as_deref(),
                    event,
                    fields: Fields {
                        event_type: e.kind.as_str(),
                        outcome: e.outcome.as_str(),
                        user: e.principal.as_ref().map(|p| p.subject.as_str()),
                        tool: e.target.as_ref().map(|t| t.name.as_str()),
                        virtual_server: e.virtual_server.as_deref(),
                    },
                };
                let mut line = serde_json::to_vec(&envelope).unwrap_or_default();
                line.push(b'\n');
                line
            })
            .collect()
    }

    /// Posts `objects`; `Some((n, reason))` when HEC refused object `n` (and indexed the
    /// ones before it).
    async fn post(
        &self,
        token: &str,
        objects: &[Vec<u8>],
    ) -> Result<Option<(usize, String)>, SinkError> {
        let what = format!("splunk_hec {}", self.name);
        let body: Vec<u8> = objects.concat();
        let request = self
            .client
            .post(self.url.clone())
            .header(
                reqwest::header::AUTHORIZATION,
                http::credential_header(&self.config, "Splunk", token)?,
            )
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Splunk-Request-Channel", &self.channel)
            .body(body);
        let (status, after, body) = http::exchange(&what, request).await?;
        let answer: Answer = serde_json::from_slice(&body).unwrap_or_default();
        if status.is_success() {
            return Ok(None);
        }
        let text = match answer.code {
            Some(code) => format!("{} (HEC code {code})", answer.text),
            None => String::from_utf8_lossy(&body).into_owned(),
        };
        if status == StatusCode::BAD_REQUEST
            && let Some(n) = answer.invalid_event
            && n < objects.len()
        {
            return Ok(Some((
                n,
                format!("splunk_hec {}: HTTP 400: {text}", self.name),
            )));
        }
        Err(http::failure_of(&what, status, after, &text))
    }
}

/// A random GUID naming this sink's HEC channel. Tokens with indexer acknowledgement on refuse
/// requests without one (HEC code 10, "Data channel is missing"); others ignore it.
fn channel_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Sink for SplunkSink {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [Shipped],
    ) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async move {
            let token = http::secret(&self.config, "token", &self.token)?;
            let from = self.resume.start(batch);
            let objects = self.body(&batch[from..]);
            let sizes: Vec<usize> = objects.iter().map(Vec::len).collect();
            for range in chunks(&sizes, MAX_REQUEST, 0) {
                let mut start = range.start;
                while start < range.end {
                    match self.post(&token, &objects[start..range.end]).await? {
                        None => start = range.end,
                        Some((bad, reason)) => {
                            // HEC indexed everything before `bad`; refuse `bad`, resend the rest.
                            self.resume.reject(from + start + bad, reason);
                            start += bad + 1;
                        }
                    }
                    self.resume.advance(from + start);
                }
            }
            Ok(self.resume.finish())
        })
    }
}
