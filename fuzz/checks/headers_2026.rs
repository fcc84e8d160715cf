//! The 2026-07-28 header rules of `gatehouse_wire::headers`.
//!
//! The input is split at NUL bytes into: a JSON-RPC body, an `Mcp-Method` value, an
//! `Mcp-Name` value, a tool input schema (JSON), tool arguments (JSON), then any number of
//! `name:value` request headers. Invariants:
//! - `encode_value` gives a valid header value (visible ASCII, no edge spaces) that
//!   `decode_value` turns back into the original text, for every text;
//! - `validate` accepts the headers a correct client derives from the body, and whatever it
//!   accepts mirrors the body (method equal, name decoding to the body's target);
//! - `validate_param_headers` accepts the `Mcp-Param-*` headers `param_headers` derives from
//!   the same schema and arguments (when the schema's header names are distinct), and
//!   whatever it accepts matches the arguments.

use gatehouse_wire::Message;
use gatehouse_wire::headers::{
    HeaderMismatch, decode_value, encode_value, name_field, param_headers, validate,
    validate_param_headers,
};
use serde_json::Value;

/// Runs the check on one input; panics when an invariant does not hold.
pub fn check(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = next();
    let method_header = next();
    let name_header = next();
    let schema_text = next();
    let args_text = next();
    let headers: Vec<(String, String)> = std::iter::from_fn(|| parts.next())
        .map(|h| {
            let h = String::from_utf8_lossy(h);
            match h.split_once(':') {
                Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
                None => (h.to_ascii_lowercase(), String::new()),
            }
        })
        .collect();

    for text in [&body, &method_header, &name_header, &args_text] {
        encoding_round_trips(text);
    }

    if let Ok(msg) = Message::parse(body.as_bytes()) {
        method_and_name(&msg, &method_header, &name_header);
    }

    let schema: Value = serde_json::from_str(&schema_text).unwrap_or(Value::Null);
    let arguments: Option<Value> = serde_json::from_str(&args_text).ok();
    param_rules(&schema, arguments.as_ref(), &headers);
}

fn encoding_round_trips(text: &str) {
    let encoded = encode_value(text);
    assert!(
        encoded.bytes().all(|b| (0x20..0x7f).contains(&b))
            && !encoded.starts_with(' ')
            && !encoded.ends_with(' '),
        "encode_value({text:?}) = {encoded:?} is not a valid header value"
    );
    assert_eq!(
        decode_value(&encoded).as_deref(),
        Some(text),
        "decode_value(encode_value(x)) != x for {text:?} (encoded {encoded:?})"
    );
}

fn method_and_name(msg: &Message, method_header: &str, name_header: &str) {
    let method = msg.method();
    let target = name_field(method)
        .and_then(|f| msg.params.as_ref()?.get(f)?.as_str())
        .map(str::to_string);
    // What a correct client sends.
    let encoded = target.as_deref().map(encode_value);
    assert_eq!(
        validate(msg, Some(method), encoded.as_deref()),
        Ok(()),
        "the headers derived from the body are refused"
    );
    if target.is_some() {
        assert_eq!(
            validate(msg, Some(method), None),
            Err(HeaderMismatch::Missing("Mcp-Name"))
        );
    }
    // Arbitrary headers: anything accepted must mirror the body.
    if validate(msg, Some(method_header), Some(name_header)).is_ok() {
        assert_eq!(method_header, method);
        if let Some(target) = &target {
            assert_eq!(decode_value(name_header).as_deref(), Some(target.as_str()));
        }
    }
}

fn param_rules(schema: &Value, arguments: Option<&Value>, headers: &[(String, String)]) {
    let derived = param_headers(schema, arguments);
    // Two properties bound to one header name (case-insensitively) cannot both be mirrored.
    let mut suffixes: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|props| props.values())
        .filter_map(|p| p.get("x-mcp-header")?.as_str())
        .map(str::to_ascii_lowercase)
        .collect();
    let bound = suffixes.len();
    suffixes.sort_unstable();
    suffixes.dedup();
    if suffixes.len() == bound {
        let lowered: Vec<(String, String)> = derived
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let lookup = |name: &str| {
            lowered
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            validate_param_headers(schema, arguments, lookup),
            Ok(()),
            "the Mcp-Param headers derived from the arguments are refused: {derived:?}"
        );
    }
    for (name, value) in &derived {
        assert!(
            name.starts_with("Mcp-Param-"),
            "param header {name:?} lacks the prefix"
        );
        encoding_round_trips(&decode_value(value).expect("derived values decode"));
    }

    // Arbitrary request headers: whatever is accepted matches the bound arguments.
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if validate_param_headers(schema, arguments, lookup).is_ok()
        && let Some(props) = schema.get("properties").and_then(Value::as_object)
    {
        for (prop, prop_schema) in props {
            let Some(suffix) = prop_schema.get("x-mcp-header").and_then(Value::as_str) else {
                continue;
            };
            let name = format!("mcp-param-{}", suffix.to_ascii_lowercase());
            if let Some(raw) = lookup(&name) {
                let decoded = decode_value(raw).expect("an accepted header decodes");
                let arg = arguments.and_then(|a| a.get(prop));
                let text = match arg {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
                    _ => None,
                };
                assert_eq!(
                    Some(decoded),
                    text,
                    "accepted header {name} differs from argument {prop}"
                );
            }
        }
    }
}
