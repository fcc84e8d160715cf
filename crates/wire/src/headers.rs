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
        // The tasks extension (io.modelcontextprotocol/tasks) names its target by task id.
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// Decodes a header value that may use the `=?base64?…?=` form for non-ASCII text.
/// `None` when the value has characters a header may not carry or its base64 is invalid.
pub fn decode_value(raw: &str) -> Option<String> {
    if !raw.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return None;
    }
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
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
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// The `Mcp-Param-*` headers a `tools/call` must carry: one per input property whose schema
/// names an `x-mcp-header`, with the argument's value encoded for a header. Properties the
/// call does not set produce no header.
pub fn param_headers(input_schema: &Value, arguments: Option<&Value>) -> Vec<(String, String)> {
    let Some(props) = input_schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (prop, schema) in props {
        let Some(suffix) = schema.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        let Some(value) = arguments.and_then(|a| a.get(prop)).and_then(header_text) else {
            continue;
        };
        out.push((format!("Mcp-Param-{suffix}"), encode_value(&value)));
    }
    out
}

/// The text form of a primitive argument as it appears in an `Mcp-Param-*` header.
fn header_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Checks the client's `Mcp-Param-*` headers against a `tools/call`'s arguments.
/// `lookup` returns a request header by (case-insensitive) name.
pub fn validate_param_headers<'a>(
    input_schema: &Value,
    arguments: Option<&Value>,
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Result<(), HeaderMismatch> {
    let Some(props) = input_schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (prop, schema) in props {
        let Some(suffix) = schema.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        let name = format!("mcp-param-{}", suffix.to_ascii_lowercase());
        let body = arguments.and_then(|a| a.get(prop)).and_then(header_text);
        match (lookup(&name), body) {
            (None, None) => {}
            (None, Some(_)) => return Err(HeaderMismatch::MissingParam(suffix.to_string())),
            (Some(raw), body) => {
                let decoded = decode_value(raw)
                    .ok_or_else(|| HeaderMismatch::InvalidParam(suffix.to_string()))?;
                if Some(&decoded) != body.as_ref() {
                    return Err(HeaderMismatch::ParamDiffers {
                        header: suffix.to_string(),
                        header_value: decoded,
                        body_value: body.unwrap_or_default(),
                    });
                }
            }
        }
    }
    Ok(())
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
    /// An argument bound to a header (`x-mcp-header`) is set but its header is absent.
    #[error("required header Mcp-Param-{0} is missing")]
    MissingParam(String),
    /// An `Mcp-Param-*` header has characters a header may not carry, or invalid base64.
    #[error("header Mcp-Param-{0} is not a valid header value")]
    InvalidParam(String),
    /// An `Mcp-Param-*` header differs from its argument.
    #[error("header Mcp-Param-{header} is {header_value:?} but the argument is {body_value:?}")]
    ParamDiffers {
        /// Header suffix.
        header: String,
        /// Decoded header value.
        header_value: String,
        /// The argument's text.
        body_value: String,
    },
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
        return Err(HeaderMismatch::Differs {
            header: "Mcp-Method",
            header_value: m.into(),
            body_value: method.into(),
        });
    }
    // Only a target the body actually names must be mirrored; a request without one fails
    // its own params validation with -32602, after dispatch.
    if let Some(field) = name_field(method)
        && let Some(body) = msg
            .params
            .as_ref()
            .and_then(|p| p.get(field))
            .and_then(Value::as_str)
    {
        let raw = name_header.ok_or(HeaderMismatch::Missing("Mcp-Name"))?;
        let decoded = decode_value(raw).ok_or(HeaderMismatch::Undecodable("Mcp-Name"))?;
        if decoded != body {
            return Err(HeaderMismatch::Differs {
                header: "Mcp-Name",
                header_value: decoded,
                body_value: body.into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str) -> Message {
        Message::parse(
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}"}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn validates_method_and_name() {
        assert!(validate(&call("echo"), Some("tools/call"), Some("echo")).is_ok());
        assert_eq!(
            validate(&call("echo"), None, Some("echo")),
            Err(HeaderMismatch::Missing("Mcp-Method"))
        );
        assert_eq!(
            validate(&call("echo"), Some("tools/call"), None),
            Err(HeaderMismatch::Missing("Mcp-Name"))
        );
        assert!(matches!(
            validate(&call("echo"), Some("tools/list"), Some("echo")),
            Err(HeaderMismatch::Differs { .. })
        ));
        assert!(matches!(
            validate(&call("echo"), Some("tools/call"), Some("add")),
            Err(HeaderMismatch::Differs { .. })
        ));
    }

    #[test]
    fn param_headers_follow_the_schema() {
        let schema = serde_json::json!({"type":"object","properties":{"value":{"type":"string","x-mcp-header":"Value"},"n":{"type":"integer","x-mcp-header":"N"},"free":{"type":"string"}}});
        let args = serde_json::json!({"value":"Hello","n":3,"free":"x"});
        let mut hs = param_headers(&schema, Some(&args));
        hs.sort();
        assert_eq!(
            hs,
            vec![
                ("Mcp-Param-N".to_string(), "3".to_string()),
                ("Mcp-Param-Value".to_string(), "Hello".to_string())
            ]
        );
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
        };
        assert!(
            validate_param_headers(
                &schema,
                Some(&args),
                get(&[("mcp-param-value", "Hello"), ("mcp-param-n", "3")])
            )
            .is_ok()
        );
        assert!(
            validate_param_headers(
                &schema,
                Some(&args),
                get(&[
                    ("mcp-param-value", "=?base64?SGVsbG8=?="),
                    ("mcp-param-n", "3")
                ])
            )
            .is_ok()
        );
        assert_eq!(
            validate_param_headers(&schema, Some(&args), get(&[("mcp-param-n", "3")])),
            Err(HeaderMismatch::MissingParam("Value".into()))
        );
        assert!(matches!(
            validate_param_headers(
                &schema,
                Some(&args),
                get(&[
                    ("mcp-param-value", "=?base64?SGVsbG8?="),
                    ("mcp-param-n", "3")
                ])
            ),
            Err(HeaderMismatch::InvalidParam(_))
        ));
        assert!(matches!(
            validate_param_headers(
                &schema,
                Some(&args),
                get(&[("mcp-param-value", "Bye"), ("mcp-param-n", "3")])
            ),
            Err(HeaderMismatch::ParamDiffers { .. })
        ));
        let literal = serde_json::json!({"value":"=?base64?SGVsbG8="});
        assert!(
            validate_param_headers(
                &schema,
                Some(&literal),
                get(&[("mcp-param-value", "=?base64?SGVsbG8=")])
            )
            .is_ok()
        );
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
