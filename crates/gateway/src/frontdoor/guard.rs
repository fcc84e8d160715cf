//! Checks every request passes before dispatch: DNS-rebinding protection (Host and Origin),
//! and JSON-RPC error responses with the request id that also appears in the log.

use axum::http::{HeaderMap, StatusCode, header};
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
    /// `Err(reason)` when the request must be refused with 403.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
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
        if self.loopback
            && let Some(host) = headers.get(header::HOST)
        {
            let host = host.to_str().unwrap_or("");
            let allowed_by_origin_list = self.allowed_origins.iter().any(|o| {
                o.split_once("://")
                    .is_some_and(|(_, hp)| hp.eq_ignore_ascii_case(host))
            });
            if !is_loopback_host(host) && !allowed_by_origin_list {
                return Err(format!(
                    "host {host:?} is not allowed on a loopback listener"
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

    #[test]
    fn loopback_listener_refuses_rebinding() {
        let p = OriginPolicy {
            loopback: true,
            allowed_origins: vec!["https://app.example.com".into()],
        };
        assert!(p.check(&headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(
            p.check(&headers(&[
                ("host", "localhost:8080"),
                ("origin", "http://localhost:3000")
            ]))
            .is_ok()
        );
        assert!(p.check(&headers(&[("host", "[::1]:8080")])).is_ok());
        assert!(
            p.check(&headers(&[
                ("host", "evil.example.com"),
                ("origin", "http://evil.example.com")
            ]))
            .is_err()
        );
        assert!(
            p.check(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example.com")
            ]))
            .is_err()
        );
        assert!(
            p.check(&headers(&[
                ("host", "127.0.0.1"),
                ("origin", "https://app.example.com")
            ]))
            .is_ok()
        );
    }
}
