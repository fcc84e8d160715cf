//! Reserved `_meta` keys (2026-07-28 §Per-request metadata) and helpers to read them.

use serde_json::{Map, Value};

/// Protocol version a stateless request is made in.
pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// Capabilities of the client, sent on every stateless request.
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Self-reported client name and version.
pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// Requested log level for this request.
pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// Server name and version, on results.
pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// Id of the `subscriptions/listen` request a notification belongs to.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// Progress token (unprefixed for compatibility).
pub const PROGRESS_TOKEN: &str = "progressToken";
/// W3C trace context in `_meta` (unprefixed, per SEP-414): the parent span of a request.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state accompanying [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// True for keys reserved by the MCP specification's stateless era (`io.modelcontextprotocol/…`).
pub fn is_protocol_key(key: &str) -> bool {
    key.starts_with("io.modelcontextprotocol/")
}

/// The `_meta` object of a params or result object, if there is one.
pub fn get(params: &Value) -> Option<&Map<String, Value>> {
    params.get("_meta")?.as_object()
}

/// The `_meta` object of a params object, created if absent.
///
/// Returns `None` when `params` is not an object (JSON-RPC allows arrays, MCP never uses them).
pub fn get_mut(params: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = params.as_object_mut()?;
    let meta = obj
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// Removes the stateless-era protocol keys from `params._meta`, for a handshake-era peer.
/// Drops `_meta` entirely when nothing else was in it.
pub fn strip_protocol_keys(params: &mut Value) {
    let Some(obj) = params.as_object_mut() else {
        return;
    };
    let empty = match obj.get_mut("_meta").and_then(Value::as_object_mut) {
        Some(meta) => {
            meta.retain(|k, _| !is_protocol_key(k));
            meta.is_empty()
        }
        None => false,
    };
    if empty {
        obj.remove("_meta");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strip_keeps_foreign_keys() {
        let mut p = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "progressToken": 3}});
        strip_protocol_keys(&mut p);
        assert_eq!(p, json!({"_meta": {"progressToken": 3}}));
        let mut p = json!({"name": "x", "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
        strip_protocol_keys(&mut p);
        assert_eq!(p, json!({"name": "x"}));
    }
}
