//! What the HTTP sinks share: a client with the sink's timeout and extra CA, reading the
//! sink's secrets, and turning a receiver's answer into a [`SinkError`] the runner acts on.

use std::time::Duration;

use gatehouse_config::{SecretRef, SinkConfig};
use reqwest::StatusCode;

use super::SinkError;

/// An HTTP client for `config`: its `timeout`, and its `ca` trusted beside the system roots.
pub fn client(config: &SinkConfig) -> Result<reqwest::Client, SinkError> {
    let mut b = reqwest::Client::builder()
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

/// The error for a receiver's non-success answer: retry (with its `Retry-After`) or reject.
/// `body` is cut to 300 bytes; receivers do not echo credentials in their errors.
pub async fn failure(what: &str, response: reqwest::Response) -> SinkError {
    let status = response.status();
    let after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    let message = format!("{what}: HTTP {status}: {}", body.trim());
    if retryable(status) {
        SinkError::Retry { message, after }
    } else {
        SinkError::Rejected(message)
    }
}

/// A transport failure (connection refused, timeout, TLS): always retried.
pub fn transport(what: &str, e: &reqwest::Error) -> SinkError {
    // Without the URL: a query string could hold a credential.
    let mut text = e.to_string();
    if let Some(u) = e.url() {
        text = text.replace(u.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    SinkError::retry(format!("{what}: {text}"))
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
