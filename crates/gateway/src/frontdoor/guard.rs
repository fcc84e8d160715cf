//! Checks every request passes before dispatch: DNS-rebinding protection (Host and Origin),
//! and JSON-RPC error responses with the request id that also appears in the log.

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use gatehouse_wire::{ErrorObject, Id, Message};
use serde_json::json;

/// Which browser origins and hosts a listener accepts.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// The listener is on a loopback address: only loopback Host names are accepted.
    pub loopback: bool,
    /// Extra allowed origins (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
}

fn is_loopback_host(hostport: &str) -> bool {
    let host = if let Some(rest) = hostport.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        hostport
            .rsplit_once(':')
            .map(|(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    hostport
                }
            })
            .unwrap_or(hostport)
    };
    matches!(
        host.to_ascii_lowercase().as_str(),
        "localhost" | "127.0.0.1" | "::1"
    )
}

impl OriginPolicy {
    /// `Err(reason)` when the request must be refused with 403. On a loopback listener every
    /// name the request gives for the server — the URI's authority (HTTP/2 `:authority`, an
    /// absolute-form HTTP/1 target) and the `Host` header — must be a loopback name (or one
    /// of `allowed_origins`), and a request that gives none is refused: DNS rebinding
    /// protection must not depend on the protocol version.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), String> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let allowed = self
                .allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
                || (self.loopback
                    && origin
                        .split_once("://")
                        .is_some_and(|(_, hp)| is_loopback_host(hp)));
            if !allowed {
                return Err(format!("origin {origin:?} is not allowed"));
            }
        }
        if !self.loopback {
            return Ok(());
        }
        let authority = uri.authority().map(|a| a.as_str());
        let host = headers.get(header::HOST).map(|h| h.to_str().unwrap_or(""));
        if authority.is_none() && host.is_none() {
            return Err(
                "the request names no host (no Host header, no authority in the URI); a loopback listener requires one".into(),
            );
        }
        for name in authority.into_iter().chain(host) {
            let allowed_by_origin_list = self.allowed_origins.iter().any(|o| {
                o.split_once("://")
                    .is_some_and(|(_, hp)| hp.eq_ignore_ascii_case(name))
            });
            if !is_loopback_host(name) && !allowed_by_origin_list {
                return Err(format!(
                    "host {name:?} is not allowed on a loopback listener"
                ));
            }
        }
        Ok(())
    }
}

/// A JSON-RPC error as an HTTP response, tagged with the request id for log correlation.
pub fn rpc_error(status: StatusCode, id: Id, mut error: ErrorObject, request_id: &str) -> Response {
    let request_id = request_id.to_string();
    crate::observe::note(|f| f.error = Some((error.code, error.message.clone())));
    match &mut error.data {
        Some(serde_json::Value::Object(m)) => {
            m.insert("requestId".into(), json!(&request_id));
        }
        None => error.data = Some(json!({"requestId": &request_id})),
        _ => {}
    }
    let body = Message::error(id, error).to_bytes();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::HeaderName::from_static(REQUEST_ID),
                request_id.as_str(),
            ),
        ],
        body,
    )
        .into_response()
}

/// Header carrying the gateway's request id.
pub const REQUEST_ID: &str = "x-request-id";

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn policy() -> OriginPolicy {
        OriginPolicy {
            loopback: true,
            allowed_origins: vec!["https://app.example.com".into()],
        }
    }

    /// Checks an origin-form request (`/mcp`), as HTTP/1 sends it.
    fn check(p: &OriginPolicy, pairs: &[(&'static str, &str)]) -> Result<(), String> {
        p.check(&Uri::from_static("/mcp"), &headers(pairs))
    }

    #[test]
    fn loopback_listener_refuses_rebinding() {
        let p = policy();
        assert!(check(&p, &[("host", "127.0.0.1:8080")]).is_ok());
        assert!(
            check(
                &p,
                &[
                    ("host", "localhost:8080"),
                    ("origin", "http://localhost:3000")
                ]
            )
            .is_ok()
        );
        assert!(check(&p, &[("host", "[::1]:8080")]).is_ok());
        assert!(
            check(
                &p,
                &[
                    ("host", "evil.example.com"),
                    ("origin", "http://evil.example.com")
                ]
            )
            .is_err()
        );
        assert!(
            check(
                &p,
                &[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://evil.example.com")
                ]
            )
            .is_err()
        );
        assert!(
            check(
                &p,
                &[("host", "127.0.0.1"), ("origin", "https://app.example.com")]
            )
            .is_ok()
        );
    }

    #[test]
    fn the_uri_authority_is_checked_like_the_host_header() {
        let p = policy();
        // HTTP/2 carries `:authority` in the URI and usually no Host header.
        let h2 = |uri: &'static str| p.check(&Uri::from_static(uri), &HeaderMap::new());
        assert!(h2("http://127.0.0.1:8080/mcp").is_ok());
        assert!(h2("http://localhost:8080/mcp").is_ok());
        assert!(h2("http://app.example.com/mcp").is_ok());
        let err = h2("http://evil.example.com:8080/mcp").unwrap_err();
        assert!(err.contains("evil.example.com:8080"), "{err}");
        // An absolute-form HTTP/1 target cannot hide a foreign Host header, nor the reverse.
        let abs = Uri::from_static("http://127.0.0.1:8080/mcp");
        assert!(
            p.check(&abs, &headers(&[("host", "evil.example.com")]))
                .is_err()
        );
        let foreign = Uri::from_static("http://evil.example.com/mcp");
        assert!(
            p.check(&foreign, &headers(&[("host", "127.0.0.1:8080")]))
                .is_err()
        );
    }

    #[test]
    fn a_request_without_any_host_is_refused_on_loopback_only() {
        let err = check(&policy(), &[]).unwrap_err();
        assert!(err.contains("names no host"), "{err}");
        let open = OriginPolicy {
            loopback: false,
            allowed_origins: vec![],
        };
        assert!(check(&open, &[]).is_ok());
        assert!(check(&open, &[("host", "mcp.example.com")]).is_ok());
    }
}
