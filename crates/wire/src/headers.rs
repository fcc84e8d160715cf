//! HTTP headers of MCP's Streamable HTTP transport and the 2026-07-28 header/body validation.

use base64::Engine;
use serde_json::Value;

use crate::jsonrpc::Message;

/// Protocol version header (every request after initialize; every 2026-07-28 POST).
pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// Session id header of the handshake era.
pub const SESSION_ID: &str = "mcp-session-id";
/// 2026-07-28: mirrors the JSON-RPC `method`.
pub const METHOD: &str = "mcp-method";
/// 2026-07-28: mirrors `params.name` / `params.uri`.
pub const NAME: &str = "mcp-name";
/// SSE resumption cursor.
pub const LAST_EVENT_ID: &str = "last-event-id";
/// Prefix of 2026-07-28 tool-argument headers (`x-mcp-header`).
pub const PARAM_PREFIX: &str = "mcp-param-";

/// Methods whose `Mcp-Name` header is required, with the params field it mirrors.
pub fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Decodes a header value that may use the `=?base64?…?=` form for non-ASCII text.
pub fn decode_value(raw: &str) -> Option<String> {
    match raw.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_string()),
    }
}

/// Encodes a header value, using `=?base64?…?=` when it is not plain visible ASCII.
pub fn encode_value(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !value.starts_with("=?");
    if plain {
        value.to_string()
    } else {
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value))
    }
}

/// A disagreement between the `Mcp-*` headers and the JSON-RPC body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderMismatch {
    /// A header the method requires is absent.
    #[error("required header {0} is missing")]
    Missing(&'static str),
    /// A header's value differs from the body.
    #[error("header {header} is {header_value:?} but the body says {body_value:?}")]
    Differs {
        /// Header name.
        header: &'static str,
        /// What the header said.
        header_value: String,
        /// What the body said.
        body_value: String,
    },
    /// A header that cannot be decoded.
    #[error("header {0} is not valid")]
    Undecodable(&'static str),
}

/// Validates `Mcp-Method` and `Mcp-Name` against a 2026-07-28 request body.
///
/// `method_header`/`name_header` are the raw header values. Notifications need only `Mcp-Method`.
pub fn validate(
    msg: &Message,
    method_header: Option<&str>,
    name_header: Option<&str>,
) -> Result<(), HeaderMismatch> {
    let method = msg.method();
    let m = method_header.ok_or(HeaderMismatch::Missing("Mcp-Method"))?;
    if m != method {
        return Err(HeaderMismatch::Differs { header: "Mcp-Method", header_value: m.into(), body_value: method.into() });
    }
    if let Some(field) = name_field(method) {
        let body = msg.params.as_ref().and_then(|p| p.get(field)).and_then(Value::as_str).unwrap_or("");
        let raw = name_header.ok_or(HeaderMismatch::Missing("Mcp-Name"))?;
        let decoded = decode_value(raw).ok_or(HeaderMismatch::Undecodable("Mcp-Name"))?;
        if decoded != body {
            return Err(HeaderMismatch::Differs { header: "Mcp-Name", header_value: decoded, body_value: body.into() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str) -> Message {
        Message::parse(format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}"}}}}"#).as_bytes())
            .unwrap()
    }

    #[test]
    fn validates_method_and_name() {
        assert!(validate(&call("echo"), Some("tools/call"), Some("echo")).is_ok());
        assert_eq!(validate(&call("echo"), None, Some("echo")), Err(HeaderMismatch::Missing("Mcp-Method")));
        assert_eq!(validate(&call("echo"), Some("tools/call"), None), Err(HeaderMismatch::Missing("Mcp-Name")));
        assert!(matches!(validate(&call("echo"), Some("tools/list"), Some("echo")), Err(HeaderMismatch::Differs { .. })));
        assert!(matches!(validate(&call("echo"), Some("tools/call"), Some("add")), Err(HeaderMismatch::Differs { .. })));
    }

    #[test]
    fn base64_values_round_trip() {
        let enc = encode_value("größe");
        assert!(enc.starts_with("=?base64?"));
        assert_eq!(decode_value(&enc).unwrap(), "größe");
        assert_eq!(encode_value("echo"), "echo");
        assert!(validate(&call("größe"), Some("tools/call"), Some(&enc)).is_ok());
    }
}
