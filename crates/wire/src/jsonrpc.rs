//! JSON-RPC 2.0 messages, parsed once and relayed without loss.
//!
//! Results are kept as raw JSON text (`Box<RawValue>`) because a gateway relays most of them
//! untouched; params are parsed because routing needs the tool name and `_meta`.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Standard and MCP-defined JSON-RPC error codes.
pub mod codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters (also "resource not found" since 2026-07-28).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Implementation-defined: the backend is unreachable or failed.
    pub const BACKEND_UNAVAILABLE: i64 = -32000;
    /// Implementation-defined: the request timed out (the code the official SDKs use).
    pub const REQUEST_TIMEOUT: i64 = -32001;
    /// Legacy "resource not found" (before 2026-07-28).
    pub const RESOURCE_NOT_FOUND_LEGACY: i64 = -32002;
    /// 2026-07-28: an `Mcp-*` header disagrees with the body, or a required header is missing.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the request needs a client capability the client did not declare.
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// 2026-07-28: the protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// A JSON-RPC request id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// A numeric id.
    Number(i64),
    /// A string id.
    String(String),
    /// `null`, only valid on error responses to unparseable requests.
    Null,
}

impl Id {
    /// The id as a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Id::Number(n) => Value::from(*n),
            Id::String(s) => Value::from(s.as_str()),
            Id::Null => Value::Null,
        }
    }

    /// Reads an id from a JSON value (numbers must be integers).
    pub fn from_value(v: &Value) -> Option<Id> {
        match v {
            Value::Number(n) => n.as_i64().map(Id::Number),
            Value::String(s) => Some(Id::String(s.clone())),
            Value::Null => Some(Id::Null),
            _ => None,
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
            Id::Null => f.write_str("null"),
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(n) => s.serialize_i64(*n),
            Id::String(v) => s.serialize_str(v),
            Id::Null => s.serialize_unit(),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Id::from_value(&v)
            .ok_or_else(|| D::Error::custom("id must be a string, an integer or null"))
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The error code (see [`codes`]).
    pub code: i64,
    /// A short human-readable description.
    pub message: String,
    /// Optional structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// An error with structured data.
    pub fn with_data(code: i64, message: impl Into<String>, data: Value) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: Some(data),
        }
    }
}

/// What a message is, by the fields it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `id` and `method`.
    Request,
    /// `method` without `id`.
    Notification,
    /// `id` and `result`.
    Result,
    /// `id` and `error`.
    Error,
}

/// Why bytes are not a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// Not JSON at all.
    #[error("parse error: {0}")]
    Parse(String),
    /// JSON, but not a JSON-RPC 2.0 message; carries the request id when one could be read.
    #[error("invalid request: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// The id, if the object had a usable one.
        id: Option<Id>,
    },
}

impl WireError {
    /// The JSON-RPC error a peer should receive for this problem.
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            WireError::Parse(m) => {
                ErrorObject::new(codes::PARSE_ERROR, format!("Parse error: {m}"))
            }
            WireError::Invalid { message, .. } => ErrorObject::new(
                codes::INVALID_REQUEST,
                format!("Invalid request: {message}"),
            ),
        }
    }

    /// The id to answer with (`null` when none could be read).
    pub fn id(&self) -> Id {
        match self {
            WireError::Invalid { id: Some(id), .. } => id.clone(),
            _ => Id::Null,
        }
    }
}

/// One JSON-RPC 2.0 message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Request or response id.
    pub id: Option<Id>,
    /// Method name of a request or notification.
    pub method: Option<String>,
    /// Parameters of a request or notification.
    pub params: Option<Value>,
    /// Result of a successful response, as raw JSON text.
    pub result: Option<Box<RawValue>>,
    /// Error of a failed response.
    pub error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    method: Option<Value>,
    params: Option<Value>,
    result: Option<Box<RawValue>>,
    error: Option<Value>,
}

/// Distinguishes `"id": null` (Some(Null)) from an absent id (None).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl Message {
    /// Parses one message from JSON text, validating the JSON-RPC 2.0 envelope.
    pub fn parse(bytes: &[u8]) -> Result<Message, WireError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            return Err(WireError::Invalid {
                message: "JSON-RPC batches are not supported by MCP since 2025-06-18".into(),
                id: None,
            });
        }
        let env: Envelope<'_> = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_data() {
                WireError::Invalid {
                    message: e.to_string(),
                    id: None,
                }
            } else {
                WireError::Parse(e.to_string())
            }
        })?;
        let id = match env.id {
            None => None,
            Some(v) => Some(Id::from_value(&v).ok_or_else(|| WireError::Invalid {
                message: "id must be a string, an integer or null".into(),
                id: None,
            })?),
        };
        let id_for_errors = id.clone();
        let invalid = |message: &str| WireError::Invalid {
            message: message.into(),
            id: id_for_errors.clone(),
        };
        if env.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
            return Err(invalid("\"jsonrpc\" must be \"2.0\""));
        }
        let method = match env.method {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(invalid("\"method\" must be a string")),
        };
        if let Some(p) = &env.params
            && !(p.is_object() || p.is_array())
        {
            return Err(invalid("\"params\" must be an object"));
        }
        if let Some(r) = &env.result
            && may_not_decode(r.get())
            && let Err(e) = serde_json::from_str::<Value>(r.get())
        {
            // JSON's grammar allows an unpaired `\uD800`–`\uDFFF` and numbers of any size,
            // but no value can hold them: a result relayed raw would later read as no result at
            // all (`result_value`).
            return Err(invalid(&format!("\"result\" cannot be decoded: {e}")));
        }
        let error = match env.error {
            None => None,
            Some(v) => Some(
                serde_json::from_value::<ErrorObject>(v)
                    .map_err(|e| invalid(&format!("malformed error object: {e}")))?,
            ),
        };
        let msg = Message {
            id,
            method,
            params: env.params,
            result: env.result,
            error,
        };
        match (&msg.method, &msg.id, &msg.result, &msg.error) {
            (Some(_), Some(Id::Null), _, _) => Err(invalid("a request id must not be null")),
            (Some(_), _, None, None) => Ok(msg),
            (None, Some(_), Some(_), None) | (None, Some(_), None, Some(_)) => Ok(msg),
            (Some(_), _, _, _) => Err(invalid("a request must not carry \"result\" or \"error\"")),
            (None, None, _, _) => Err(invalid("a message needs \"method\" or \"id\"")),
            (None, Some(_), _, _) => Err(invalid(
                "a response needs exactly one of \"result\" and \"error\"",
            )),
        }
    }

    /// What kind of message this is.
    pub fn kind(&self) -> MessageKind {
        match (&self.method, &self.id, &self.error) {
            (Some(_), Some(_), _) => MessageKind::Request,
            (Some(_), None, _) => MessageKind::Notification,
            (None, _, Some(_)) => MessageKind::Error,
            (None, _, None) => MessageKind::Result,
        }
    }

    /// A request.
    pub fn request(id: Id, method: impl Into<String>, params: Option<Value>) -> Message {
        Message {
            id: Some(id),
            method: Some(method.into()),
            params,
            result: None,
            error: None,
        }
    }

    /// A notification.
    pub fn notification(method: impl Into<String>, params: Option<Value>) -> Message {
        Message {
            id: None,
            method: Some(method.into()),
            params,
            result: None,
            error: None,
        }
    }

    /// A successful response with a result given as a value.
    pub fn result(id: Id, result: &impl Serialize) -> Message {
        let raw = serde_json::value::to_raw_value(result).expect("results serialise");
        Message {
            id: Some(id),
            method: None,
            params: None,
            result: Some(raw),
            error: None,
        }
    }

    /// A successful response with a result given as raw JSON text.
    pub fn raw_result(id: Id, result: Box<RawValue>) -> Message {
        Message {
            id: Some(id),
            method: None,
            params: None,
            result: Some(result),
            error: None,
        }
    }

    /// An error response.
    pub fn error(id: Id, error: ErrorObject) -> Message {
        Message {
            id: Some(id),
            method: None,
            params: None,
            result: None,
            error: Some(error),
        }
    }

    /// The method name, or "" for responses.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }

    /// What the request targets, as mirrored in the `Mcp-Name` header: `params.name`
    /// (tools/call, prompts/get), `params.uri` (resources/read) or `params.taskId` (tasks/*).
    pub fn target_name(&self) -> Option<&str> {
        let field = crate::headers::name_field(self.method())?;
        self.params.as_ref()?.get(field)?.as_str()
    }

    /// `params._meta`, if present.
    pub fn meta(&self) -> Option<&Map<String, Value>> {
        self.params.as_ref().and_then(crate::meta::get)
    }

    /// Parses the raw result into a value (for results the gateway must inspect or rewrite).
    pub fn result_value(&self) -> Option<Value> {
        self.result
            .as_ref()
            .and_then(|r| serde_json::from_str(r.get()).ok())
    }

    /// Serialises to compact JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("messages serialise")
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("jsonrpc", "2.0")?;
        if let Some(id) = &self.id {
            m.serialize_entry("id", id)?;
        }
        if let Some(method) = &self.method {
            m.serialize_entry("method", method)?;
        }
        if let Some(p) = &self.params {
            m.serialize_entry("params", p)?;
        }
        if let Some(r) = &self.result {
            m.serialize_entry("result", r)?;
        }
        if let Some(e) = &self.error {
            m.serialize_entry("error", e)?;
        }
        m.end()
    }
}

/// Whether raw JSON text may hold what JSON's grammar allows but no parsed value can: an
/// escaped UTF-16 surrogate (`\uD800`–`\uDFFF`, which may be unpaired) or a number beyond
/// `f64` (an exponent of three digits, or 300 digits in a row). One pass over the bytes
/// without allocating, so only such results pay for a full decode; a false positive (inside a
/// string, say) costs only that decode.
fn may_not_decode(text: &str) -> bool {
    let b = text.as_bytes();
    let mut digits = 0usize;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                digits += 1;
                if digits >= 300 {
                    return true;
                }
                continue;
            }
            b'e' | b'E' if digits > 0 => {
                let rest = &b[i + 1..];
                let rest = match rest.first() {
                    Some(b'+' | b'-') => &rest[1..],
                    _ => rest,
                };
                if rest.iter().take_while(|d| d.is_ascii_digit()).count() >= 3 {
                    return true;
                }
            }
            b'\\'
                if b.get(i + 1) == Some(&b'u')
                    && b.get(i + 2).is_some_and(|h| h.eq_ignore_ascii_case(&b'd'))
                    && b.get(i + 3)
                        .is_some_and(|h| matches!(h, b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')) =>
            {
                return true;
            }
            _ => {}
        }
        digits = 0;
    }
    false
}

/// Inserts `"key": value` as the first member of a raw JSON object without re-parsing the rest.
///
/// Returns the input unchanged when it is not an object. Used to stamp `resultType` and cache
/// hints onto relayed results cheaply; callers must know the key is not present yet.
pub fn insert_first(raw: &RawValue, key: &str, value: &Value) -> Box<RawValue> {
    let text = raw.get();
    let Some(rest) = text.trim_start().strip_prefix('{') else {
        return raw.to_owned();
    };
    let rest_trimmed = rest.trim_start();
    let sep = if rest_trimmed.starts_with('}') {
        ""
    } else {
        ","
    };
    let out = format!("{{{}:{}{}{}", Value::from(key), value, sep, rest);
    RawValue::from_string(out).unwrap_or_else(|_| raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_kind() {
        let r = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(r.kind(), MessageKind::Request);
        let n =
            Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.kind(), MessageKind::Notification);
        let ok = Message::parse(br#"{"jsonrpc":"2.0","id":"a","result":{"x":[1,2]}}"#).unwrap();
        assert_eq!(ok.kind(), MessageKind::Result);
        assert_eq!(ok.result.unwrap().get(), r#"{"x":[1,2]}"#);
        let err =
            Message::parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#)
                .unwrap();
        assert_eq!(err.kind(), MessageKind::Error);
        assert_eq!(err.id, Some(Id::Null));
    }

    #[test]
    fn rejects_malformed_with_specific_errors() {
        assert!(matches!(Message::parse(b"{nope"), Err(WireError::Parse(_))));
        let e = Message::parse(br#"{"jsonrpc":"1.0","id":7,"method":"x"}"#).unwrap_err();
        assert_eq!(e.id(), Id::Number(7));
        assert!(e.to_string().contains("2.0"));
        assert!(Message::parse(br#"[{"jsonrpc":"2.0","id":1,"method":"x"}]"#).is_err());
        assert!(Message::parse(br#"{"jsonrpc":"2.0","id":1}"#).is_err());
        assert!(Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":5}"#).is_err());
        assert!(Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#).is_err());
    }

    #[test]
    fn unpaired_surrogate_in_a_result_is_refused() {
        // Found by the jsonrpc fuzz target: accepted raw, then `result_value()` was None.
        let lone = br#"{"jsonrpc":"2.0","id":7,"result":{"text":"\ud66d\ude00"}}"#;
        let e = Message::parse(lone).unwrap_err();
        assert_eq!(e.id(), Id::Number(7));
        assert!(
            e.to_string().contains("\"result\" cannot be decoded"),
            "{e}"
        );
        let pair = br#"{"jsonrpc":"2.0","id":7,"result":{"text":"\ud83d\ude00 \\udc00"}}"#;
        let m = Message::parse(pair).unwrap();
        assert_eq!(m.result_value().unwrap()["text"], "\u{1f600} \\udc00");
        // Numbers beyond f64, found next: refused too; large but finite ones are kept.
        for huge in ["51e308", "-1E+400", &"9".repeat(400)] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"t":{huge}}}}}"#);
            assert!(Message::parse(text.as_bytes()).is_err(), "{huge}");
        }
        let fine = br#"{"jsonrpc":"2.0","id":1,"result":{"t":1.7e308,"u":1e-400,"v":"e100"}}"#;
        assert!(Message::parse(fine).unwrap().result_value().is_some());
    }

    #[test]
    fn round_trips_and_inserts() {
        let m = Message::result(Id::String("q".into()), &json!({"a": 1}));
        let back = Message::parse(&m.to_bytes()).unwrap();
        assert_eq!(back.id, Some(Id::String("q".into())));
        let raw = RawValue::from_string(r#"{"content":[]}"#.into()).unwrap();
        assert_eq!(
            insert_first(&raw, "resultType", &json!("complete")).get(),
            r#"{"resultType":"complete","content":[]}"#
        );
        let empty = RawValue::from_string("{}".into()).unwrap();
        assert_eq!(insert_first(&empty, "k", &json!(1)).get(), r#"{"k":1}"#);
    }
}
