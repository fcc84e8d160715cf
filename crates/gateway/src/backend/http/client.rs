//! The pooled HTTP client of one remote server: its URL, static headers, TLS roots and client
//! certificate.

use std::time::Duration;

use gatehouse_config::{ServerConfig, ServerKind};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::backend::BackendError;

/// The pooled HTTP client and URL for a remote server entry: static headers, TLS roots and the
/// client certificate (mTLS). Shared by the Streamable HTTP and HTTP+SSE backends.
pub(crate) fn build_client(
    config: &ServerConfig,
) -> Result<(reqwest::Url, reqwest::Client), BackendError> {
    let unavailable = |reason: String| BackendError::Unavailable {
        server: config.name.clone(),
        reason,
    };
    let ServerKind::Remote {
        url, headers, tls, ..
    } = config.kind()
    else {
        return Err(unavailable("not a remote server".into()));
    };
    let url = reqwest::Url::parse(url).map_err(|e| unavailable(format!("invalid url: {e}")))?;
    let mut default_headers = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| unavailable(format!("header {k:?}: {e}")))?;
        let value =
            HeaderValue::from_str(v).map_err(|e| unavailable(format!("header {k:?}: {e}")))?;
        default_headers.insert(name, value);
    }
    let mut builder = pooled().default_headers(default_headers);
    if let Some(tls) = tls {
        if let Some(ca) = &tls.ca {
            let pem = std::fs::read(ca)
                .map_err(|e| unavailable(format!("tls.ca {}: {e}", ca.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| unavailable(format!("tls.ca: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            let mut pem = std::fs::read(cert)
                .map_err(|e| unavailable(format!("tls.cert {}: {e}", cert.display())))?;
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| unavailable(format!("tls.key {}: {e}", key.display())))?,
            );
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| unavailable(format!("tls client identity: {e}")))?;
            builder = builder.identity(id);
        }
    }
    let client = builder
        .build()
        .map_err(|e| unavailable(format!("http client: {e}")))?;
    Ok((url, client))
}

/// The pooled HTTP client and URL of a server the gateway runs in a container
/// (`isolation.http`): every connection goes through `socket`, the gateway's private Unix
/// socket into the container's network namespace. The URL names the container's loopback, so
/// the server sees the `Host` a local client would send.
pub(crate) fn build_local_client(
    config: &ServerConfig,
    http: &gatehouse_config::LocalHttp,
    socket: &std::path::Path,
) -> Result<(reqwest::Url, reqwest::Client), BackendError> {
    let unavailable = |reason: String| BackendError::Unavailable {
        server: config.name.clone(),
        reason,
    };
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{}{}", http.port, http.path))
        .map_err(|e| unavailable(format!("invalid isolation.http: {e}")))?;
    let client = pooled()
        .unix_socket(socket)
        .build()
        .map_err(|e| unavailable(format!("http client: {e}")))?;
    Ok((url, client))
}

/// What every upstream client shares: a connection pool kept warm between calls.
fn pooled() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
}
