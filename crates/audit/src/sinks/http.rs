//! What the HTTP sinks share: a client with the sink's timeout and extra CA, reading the
//! sink's secrets, and turning a receiver's answer into a [`SinkError`] the runner acts on.

use std::time::Duration;

use gatehouse_config::{SecretRef, SinkConfig};
use reqwest::StatusCode;

use super::SinkError;

/// An HTTP client for `config`: its `timeout`, its extra `headers` on every request, and
/// its `ca` trusted beside the system roots.
pub fn client(config: &SinkConfig) -> Result<reqwest::Client, SinkError> {
    let mut b = reqwest::Client::builder()
        .default_headers(extra_headers(config)?)
        .timeout(config.timeout.get())
        .connect_timeout(config.timeout.get().min(Duration::from_secs(10)))
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &config.ca {
        let pem = std::fs::read(ca).map_err(|e| {
            SinkError::Config(format!(
                "audit.sinks {}: ca {}: {e}",
                config.name,
                ca.display()
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            SinkError::Config(format!(
                "audit.sinks {}: ca {}: {e}",
                config.name,
                ca.display()
            ))
        })?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| SinkError::Config(format!("audit.sinks {}: {e}", config.name)))
}

/// Reads a secret of the sink (named `field` in errors; the value never appears in one).
pub fn secret(config: &SinkConfig, field: &str, r: &SecretRef) -> Result<String, SinkError> {
    r.resolve()
        .map_err(|e| SinkError::Config(format!("audit.sinks {}: {field}: {e}", config.name)))
}

/// The sink's `url` joined with `path` (the URL's own path kept as a prefix).
pub fn endpoint(config: &SinkConfig, path: &str) -> Result<reqwest::Url, SinkError> {
    let base = config.url.as_deref().unwrap_or_default();
    let mut u = reqwest::Url::parse(base)
        .map_err(|e| SinkError::Config(format!("audit.sinks {}: url: {e}", config.name)))?;
    let joined = format!(
        "{}/{}",
        u.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    u.set_path(&joined);
    Ok(u)
}

/// Whether a status means "try again later": 408, 429 and every 5xx but 501.
pub fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// The error for a receiver's non-success answer: retry (with its `Retry-After`), a
/// configuration problem (401/403: the credential is wrong, which no retry of the same
/// batch fixes and which must not dead-letter the events), or reject.
/// `body` is cut to 300 bytes; receivers do not echo credentials in their errors.
pub async fn failure(what: &str, response: reqwest::Response) -> SinkError {
    let status = response.status();
    let after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    failure_of(what, status, after, &body)
}

/// [`failure`] for an answer whose body was already read.
pub fn failure_of(
    what: &str,
    status: StatusCode,
    after: Option<Duration>,
    body: &str,
) -> SinkError {
    let body: String = body.chars().take(300).collect();
    let message = format!("{what}: HTTP {status}: {}", body.trim());
    if retryable(status) {
        SinkError::Retry { message, after }
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        SinkError::Config(format!("{message} (check the sink's credentials)"))
    } else {
        SinkError::Rejected(message)
    }
}

/// The sink's extra `headers` (validated here so a bad one is a clear config error).
pub fn extra_headers(config: &SinkConfig) -> Result<reqwest::header::HeaderMap, SinkError> {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in &config.headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
            SinkError::Config(format!("audit.sinks {}: headers: {k:?}: {e}", config.name))
        })?;
        // The value is not echoed: headers often carry API keys.
        let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
            SinkError::Config(format!(
                "audit.sinks {}: headers: the value of {k:?} is not a valid header value",
                config.name
            ))
        })?;
        map.insert(name, value);
    }
    Ok(map)
}

/// A header value holding a credential, marked sensitive so it never shows in debug output.
pub fn credential_header(
    config: &SinkConfig,
    scheme: &str,
    credential: &str,
) -> Result<reqwest::header::HeaderValue, SinkError> {
    let mut v = reqwest::header::HeaderValue::from_str(&format!("{scheme} {credential}")).map_err(
        |_| {
            SinkError::Config(format!(
                "audit.sinks {}: the credential holds characters not allowed in a header",
                config.name
            ))
        },
    )?;
    v.set_sensitive(true);
    Ok(v)
}

/// Sends `request` and reads the whole answer: `(status, Retry-After, body)`. A transport
/// failure or a body cut short is a [`SinkError::Retry`].
pub async fn exchange(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, Option<Duration>, Vec<u8>), SinkError> {
    let response = request.send().await.map_err(|e| transport(what, &e))?;
    let status = response.status();
    let after = retry_after(response.headers());
    let body = response.bytes().await.map_err(|e| transport(what, &e))?;
    Ok((status, after, body.to_vec()))
}

/// Splits `sizes` (bytes per item, in order) into consecutive ranges of at most `limit`
/// bytes each (`overhead` bytes per request added); an item larger than `limit` on its own
/// gets a range of its own (the receiver decides; callers may refuse it up front).
pub fn chunks(sizes: &[usize], limit: usize, overhead: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, overhead);
    for (i, &n) in sizes.iter().enumerate() {
        if i > start && bytes + n > limit {
            out.push(start..i);
            start = i;
            bytes = overhead;
        }
        bytes += n;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// The event's time (RFC 3339, as the journal writes it) in nanoseconds since the epoch;
/// `None` for a time that does not parse.
pub fn unix_nanos(time: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(time)
        .or_else(|_| humantime::parse_rfc3339_weak(time))
        .ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(d.as_nanos()).ok()
}

/// This machine's host name (for the receivers' `host` fields); `localhost` when unknown.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // (or truncates, which the search for NUL below handles).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if !s.is_empty() => s.to_string(),
        _ => "localhost".into(),
    }
}

/// A transport failure (connection refused, timeout, TLS): always retried.
pub fn transport(what: &str, e: &reqwest::Error) -> SinkError {
    // Without the URL: a query string could hold a credential.
    let mut text = error_chain(e);
    if let Some(u) = e.url() {
        text = text.replace(u.as_str(), "<url>");
    }
    SinkError::retry(format!("{what}: {text}"))
}

/// An error and its sources, `: `-separated (the sources say why: refused, TLS, DNS).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `Retry-After` in seconds (the HTTP-date form is treated as "no hint").
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// How far a batch got before a retryable failure, so the retry skips what the receiver
/// already took. Splunk and Sentinel cannot drop a duplicate themselves (Elasticsearch can,
/// by `_id`), so a batch sent in several requests must not start over when a later request
/// fails. The runner retries the same batch until it is delivered, so a batch is
/// recognized by its first and last event id and its length.
#[derive(Debug, Default)]
pub struct Resume {
    batch: Option<(String, String, usize)>,
    done: usize,
    rejected: Vec<(usize, String)>,
}

impl Resume {
    /// Starts `batch`, or resumes it if it is the one that failed last: the number of
    /// leading events already delivered or refused.
    pub fn start(&mut self, batch: &[super::Shipped]) -> usize {
        let key = (
            batch
                .first()
                .map(|s| s.event.id.clone())
                .unwrap_or_default(),
            batch.last().map(|s| s.event.id.clone()).unwrap_or_default(),
            batch.len(),
        );
        if self.batch.as_ref() != Some(&key) {
            self.batch = Some(key);
            self.done = 0;
            self.rejected.clear();
        }
        self.done
    }

    /// The receiver took every event before `to`.
    pub fn advance(&mut self, to: usize) {
        self.done = self.done.max(to);
    }

    /// The receiver refused event `index` for good.
    pub fn reject(&mut self, index: usize, reason: String) {
        self.rejected.push((index, reason));
    }

    /// The whole batch is through: what to report, and forget it.
    pub fn finish(&mut self) -> super::Delivered {
        self.batch = None;
        self.done = 0;
        let mut rejected = std::mem::take(&mut self.rejected);
        rejected.sort_by_key(|(i, _)| *i);
        super::Delivered { rejected }
    }
}
