//! The 2026-07-28 rules: a request names its protocol version in `_meta` (and in the
//! `MCP-Protocol-Version` header, which must agree), carries its client capabilities, and its
//! `Mcp-Method` / `Mcp-Name` headers must match the body; methods of the handshake era do not
//! exist. Results carry `resultType` and, where cacheable, `ttlMs` and `cacheScope`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use gatehouse_wire::jsonrpc::insert_first;
use gatehouse_wire::{Era, Id, Message, MessageKind, ProtocolVersion, codes, headers as h, meta};
use serde_json::{Value, json};

use super::request::{Refusal, RequestCtx};
use crate::backend::ClientContext;
use crate::context::CallCtx;
use crate::methods::{self, Lookup};

/// How long clients may cache lists; `list_changed` tells them sooner.
const CACHE_TTL_MS: u64 = 30_000;

/// The protocol version a stateless request names, if it is one: `_meta`'s, else a
/// `MCP-Protocol-Version: 2026-07-28` header.
pub(super) fn version_of(cx: &RequestCtx, msg: &Message) -> Option<String> {
    msg.meta()
        .and_then(|m| m.get(meta::PROTOCOL_VERSION))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            cx.header(h::PROTOCOL_VERSION)
                .filter(|v| *v == ProtocolVersion::V2026_07_28.as_str())
                .map(str::to_string)
        })
}

/// What a stateless message is, once admitted.
pub(super) enum Admitted {
    /// A notification or response: nothing to run (202).
    NotARequest,
    /// A request, with the caller's view for running it.
    Request(Box<CallCtx>),
}

/// Applies the 2026-07-28 rules to `msg`, in the order the spec gives them: a header that
/// disagrees with the body is `-32020` before anything else.
pub(super) fn admit(cx: &RequestCtx, msg: &Message, version: &str) -> Result<Admitted, Refusal> {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let bad = |code: i64, message: String| {
        Refusal::new(StatusCode::BAD_REQUEST, code, message).id(id.clone())
    };
    let meta_version = msg
        .meta()
        .and_then(|m| m.get(meta::PROTOCOL_VERSION))
        .and_then(Value::as_str);
    match (cx.header(h::PROTOCOL_VERSION), meta_version) {
        (Some(hv), Some(mv)) if hv != mv => {
            return Err(bad(
                codes::HEADER_MISMATCH,
                format!(
                    "MCP-Protocol-Version header {hv:?} does not match _meta protocolVersion {mv:?}"
                ),
            ));
        }
        (None, _) => {
            return Err(bad(
                codes::HEADER_MISMATCH,
                "MCP-Protocol-Version header is required".into(),
            ));
        }
        (Some(_), None) if msg.kind() == MessageKind::Request => {
            return Err(bad(
                codes::INVALID_PARAMS,
                format!(
                    "_meta[\"{}\"] is required on every request",
                    meta::PROTOCOL_VERSION
                ),
            ));
        }
        _ => {}
    }
    match version.parse::<ProtocolVersion>() {
        Ok(v) if v.era() == Era::Stateless => {}
        _ => {
            let supported: Vec<&str> = ProtocolVersion::ALL
                .iter()
                .filter(|v| v.era() == Era::Stateless)
                .map(|v| v.as_str())
                .collect();
            return Err(bad(
                codes::UNSUPPORTED_PROTOCOL_VERSION,
                format!(
                    "Unsupported protocol version: {}",
                    crate::observe::shown(version)
                ),
            )
            .data(json!({"supported": supported, "requested": version})));
        }
    }
    if msg.method.is_some()
        && let Err(e) = h::validate(msg, cx.header(h::METHOD), cx.header(h::NAME))
    {
        return Err(bad(codes::HEADER_MISMATCH, format!("Header mismatch: {e}")));
    }
    if msg.kind() != MessageKind::Request {
        return Ok(Admitted::NotARequest);
    }
    let empty = serde_json::Map::new();
    let meta = msg.meta().unwrap_or(&empty);
    let Some(caps) = meta
        .get(meta::CLIENT_CAPABILITIES)
        .filter(|c| c.is_object())
        .cloned()
    else {
        return Err(bad(
            codes::INVALID_PARAMS,
            format!("_meta[\"{}\"] is required", meta::CLIENT_CAPABILITIES),
        ));
    };
    if methods::lookup(msg.method(), MessageKind::Request, Era::Stateless) == Lookup::OtherEra {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            codes::METHOD_NOT_FOUND,
            format!(
                "Method not found: {} does not exist in protocol 2026-07-28",
                msg.method()
            ),
        )
        .id(id));
    }
    let param_headers = cx
        .headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with(h::PARAM_PREFIX))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    Ok(Admitted::Request(Box::new(CallCtx {
        client: ClientContext {
            caller: cx.caller.clone(),
            capabilities: Arc::new(caps),
            client_info: Arc::new(meta.get(meta::CLIENT_INFO).cloned().unwrap_or(Value::Null)),
            ..Default::default()
        },
        upstream: HashMap::new(),
        era: Era::Stateless,
        protocol_version: version.to_string(),
        events: None,
        param_headers,
    })))
}

/// The HTTP status a 2026-07-28 error response travels with.
pub(super) fn status_for(m: &Message) -> StatusCode {
    match m.error.as_ref().map(|e| e.code) {
        Some(codes::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            codes::HEADER_MISMATCH
            | codes::MISSING_CLIENT_CAPABILITY
            | codes::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// Methods whose 2026-07-28 results must carry cache hints.
fn cacheable(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    )
}

/// Adds what a 2026-07-28 client requires on results: `resultType`, and `ttlMs`/`cacheScope`
/// on cacheable results: `private` when results depend on the caller (authenticated, or lists
/// filtered by policy), else `public`.
pub fn stamp_result(reply: &mut Message, method: &str, private: bool) {
    if let Some(e) = reply.error.as_mut()
        && e.code == codes::RESOURCE_NOT_FOUND_LEGACY
    {
        // SEP-2164: "resource not found" is -32602 since 2026-07-28.
        e.code = codes::INVALID_PARAMS;
    }
    let Some(raw) = reply.result.take() else {
        return;
    };
    let text = raw.get();
    let (has_scope, has_ttl, has_type) = (
        text.contains("\"cacheScope\""),
        text.contains("\"ttlMs\""),
        text.contains("\"resultType\""),
    );
    let mut out = raw;
    if cacheable(method) && !has_scope {
        let scope = if private { "private" } else { "public" };
        out = insert_first(&out, "cacheScope", &Value::from(scope));
    }
    if cacheable(method) && !has_ttl {
        out = insert_first(&out, "ttlMs", &Value::from(CACHE_TTL_MS));
    }
    if !has_type {
        out = insert_first(&out, "resultType", &Value::from("complete"));
    }
    reply.result = Some(out);
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::testing::Harness;

    fn call(meta: serde_json::Value) -> serde_json::Value {
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},"_meta":meta}})
    }

    fn meta(version: &str) -> serde_json::Value {
        json!({"io.modelcontextprotocol/protocolVersion":version,"io.modelcontextprotocol/clientCapabilities":{}})
    }

    #[tokio::test]
    async fn the_2026_rules_in_their_order() {
        let h = Harness::start(None).await;
        let ok_headers = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "test_simple_text"),
        ];
        let (status, _, v) = h.post(&ok_headers, &call(meta("2026-07-28"))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["result"]["resultType"], "complete", "{v}");
        // A header that disagrees with the body is -32020 before anything else.
        let (status, _, v) = h
            .post(
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "tools/list"),
                    ("mcp-name", "test_simple_text"),
                ],
                &call(meta("2026-07-28")),
            )
            .await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(-32020)),
            "{v}"
        );
        let (status, _, v) = h.post(&ok_headers[1..], &call(meta("2026-07-28"))).await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(-32020)),
            "{v}"
        );
        // An unknown version names the supported ones.
        let (status, _, v) = h
            .post(
                &[
                    ("mcp-protocol-version", "2099-01-01"),
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "test_simple_text"),
                ],
                &call(meta("2099-01-01")),
            )
            .await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(-32022)),
            "{v}"
        );
        assert_eq!(
            v["error"]["data"]["supported"],
            json!(["2026-07-28"]),
            "{v}"
        );
        // Client capabilities are required.
        let (status, _, v) = h
            .post(
                &ok_headers,
                &call(json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28"})),
            )
            .await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(-32602)),
            "{v}"
        );
        // A handshake-era method does not exist in 2026-07-28.
        let ping =
            json!({"jsonrpc":"2.0","id":2,"method":"ping","params":{"_meta":meta("2026-07-28")}});
        let (status, _, v) = h
            .post(
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "ping"),
                ],
                &ping,
            )
            .await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (StatusCode::NOT_FOUND, json!(-32601)),
            "{v}"
        );
        // A notification is accepted with nothing to answer.
        let note = json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9,"_meta":meta("2026-07-28")}});
        let (status, _, _) = h
            .post(
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "notifications/cancelled"),
                ],
                &note,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
}
