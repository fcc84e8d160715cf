//! Method dispatch for one virtual server: aggregate lists, route item calls to the member that
//! owns the item, and relay everything else. Era specifics of the *client* are handled by the
//! front door; era specifics of each *backend* by the backend.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gatehouse_wire::{Era, ErrorObject, Id, Message, ProtocolVersion, codes, headers as h, meta};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::backend::CallEvent;
use crate::backend::ClientContext;

use crate::authz::Item;
use crate::catalog::{self, ListKind};
pub use crate::context::CallCtx;
use crate::snapshot::{Member, VirtualServer};
use gatehouse_policy::{Action, ItemKind};

/// Largest page the gateway returns for an aggregated list.
const PAGE_SIZE: usize = 500;
/// Bound on MRTR rounds the gateway drives for one handshake-era client call.
const MAX_INPUT_ROUNDS: usize = 16;

fn err(id: &Id, code: i64, message: impl Into<String>) -> Message {
    Message::error(id.clone(), ErrorObject::new(code, message))
}

/// Capabilities a virtual server announces: everything it can aggregate.
pub fn server_capabilities(era: Era) -> Value {
    match era {
        Era::Handshake => json!({
            "tools": {"listChanged": true},
            "prompts": {"listChanged": true},
            "resources": {"listChanged": true, "subscribe": true},
            "completions": {},
            "logging": {},
        }),
        Era::Stateless => json!({
            "tools": {"listChanged": true},
            "prompts": {"listChanged": true},
            "resources": {"listChanged": true, "subscribe": true},
            "completions": {},
        }),
    }
}

/// Capabilities plus the union of the members' `extensions` and `experimental` entries, so
/// extension-aware clients see what the members offer.
pub async fn aggregated_capabilities(
    vs: &VirtualServer,
    era: Era,
    client: &ClientContext,
) -> Value {
    let mut caps = server_capabilities(era);
    let infos = vs.members.iter().map(|m| {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            m.server.backend.info(client),
        )
    });
    for info in futures::future::join_all(infos)
        .await
        .into_iter()
        .flatten()
        .flatten()
    {
        for key in ["extensions", "experimental"] {
            if let Some(Value::Object(theirs)) = info.capabilities.get(key) {
                let ours = caps
                    .as_object_mut()
                    .expect("object")
                    .entry(key)
                    .or_insert_with(|| json!({}));
                for (k, v) in theirs {
                    ours.as_object_mut()
                        .expect("object")
                        .entry(k.clone())
                        .or_insert_with(|| v.clone());
                }
            }
        }
    }
    caps
}

/// `serverInfo` of a virtual server.
pub fn server_info(vs: &VirtualServer) -> Value {
    json!({"name": format!("gatehouse/{}", vs.name), "title": format!("Gatehouse virtual server {}", vs.name), "version": env!("CARGO_PKG_VERSION")})
}

/// The `initialize` result for a handshake-era client.
pub async fn initialize_result(
    vs: &VirtualServer,
    version: ProtocolVersion,
    client: &ClientContext,
) -> Value {
    json!({
        "protocolVersion": version.as_str(),
        "capabilities": aggregated_capabilities(vs, Era::Handshake, client).await,
        "serverInfo": server_info(vs),
    })
}

/// Handles one request against a virtual server and returns the response.
pub async fn dispatch(vs: &VirtualServer, msg: Message, ctx: &CallCtx) -> Message {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let method = msg.method().to_string();
    match method.as_str() {
        "ping" => Message::result(id, &json!({})),
        "server/discover" => Message::result(
            id,
            &json!({
                "supportedVersions": ProtocolVersion::supported_strings(),
                "capabilities": aggregated_capabilities(vs, Era::Stateless, &ctx.client).await,
                "serverInfo": server_info(vs),
                "_meta": {meta::SERVER_INFO: server_info(vs)},
            }),
        ),
        "tools/list" => list(vs, ListKind::Tools, &msg, ctx).await,
        "prompts/list" => list(vs, ListKind::Prompts, &msg, ctx).await,
        "resources/list" => list(vs, ListKind::Resources, &msg, ctx).await,
        "resources/templates/list" => list(vs, ListKind::ResourceTemplates, &msg, ctx).await,
        "tools/call" => call_named(vs, ListKind::Tools, msg, ctx).await,
        "prompts/get" => call_named(vs, ListKind::Prompts, msg, ctx).await,
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let Some(uri) = msg
                .params
                .as_ref()
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return err(&id, codes::INVALID_PARAMS, "params.uri is required");
            };
            crate::observe::target("resource", &uri, None);
            let mut member = catalog::route_resource(vs, &uri, ctx).await;
            if method != "resources/unsubscribe"
                && let Some(m) = member
            {
                let item = Item {
                    kind: ItemKind::Resource,
                    name: &uri,
                    member: &vs.members[m],
                    original: &uri,
                    definition: None,
                };
                if !crate::authz::allows(vs, ctx, Action::ReadResource, &item, None).await {
                    member = None;
                }
            }
            match member {
                Some(m)
                    if method != "resources/read"
                        && !ctx.has_own_session(&vs.members[m])
                        && member_is_stateless(&vs.members[m], &ctx.client).await =>
                {
                    // 2026-07-28 servers have no resources/subscribe: the gateway acknowledges
                    // it and listens for the URI on the server's change feed instead.
                    let server = &vs.members[m].server;
                    if method == "resources/subscribe" {
                        if server.resources.add(&uri) {
                            tracing::info!(server = %server.config.name, uri = %crate::observe::shown(&uri), "watching a resource for subscribed clients");
                        }
                    } else if server.resources.remove(&uri) {
                        tracing::info!(server = %server.config.name, uri = %crate::observe::shown(&uri), "no client subscribes to this resource any more");
                    }
                    Message::result(id, &json!({}))
                }
                Some(m) => call_member(&vs.members[m], msg, ctx).await,
                None => Message::error(
                    id,
                    ErrorObject::with_data(
                        codes::INVALID_PARAMS,
                        format!("Resource not found: {uri}"),
                        json!({"uri": uri}),
                    ),
                ),
            }
        }
        "completion/complete" => complete(vs, msg, ctx).await,
        m if crate::tasks::is_task_method(m) => {
            let mut msg = msg;
            match crate::tasks::route(vs, &mut msg) {
                Ok(i) => {
                    let member = &vs.members[i];
                    let mut reply = call_member(member, msg, ctx).await;
                    crate::tasks::qualify(vs, &mut reply, &member.server.config.name);
                    reply
                }
                Err(e) => Message::error(id, e),
            }
        }
        "logging/setLevel" => {
            for m in &vs.members {
                let _ = m
                    .server
                    .backend
                    .call(
                        "logging/setLevel",
                        msg.params.clone(),
                        &ctx.for_member(m),
                        None,
                    )
                    .await;
            }
            Message::result(id, &json!({}))
        }
        // With policies, only what they can decide reaches a server: a method the gateway does
        // not know could reach a tool by another name (deny by default).
        _ if vs.authz.is_some() => {
            tracing::info!(target: "gatehouse::decision", virtual_server = %vs.name, method = %crate::observe::shown(&method), "method refused: policies cannot decide it");
            err(
                &id,
                codes::METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
            )
        }
        _ if vs.members.len() == 1 => call_member(&vs.members[0], msg, ctx).await,
        _ => err(
            &id,
            codes::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        ),
    }
}

async fn member_is_stateless(member: &Member, client: &ClientContext) -> bool {
    member
        .server
        .backend
        .info(client)
        .await
        .is_ok_and(|i| i.era() == Era::Stateless)
}

async fn list(vs: &VirtualServer, kind: ListKind, msg: &Message, ctx: &CallCtx) -> Message {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let offset = match msg.params.as_ref().and_then(|p| p.get("cursor")) {
        None | Some(Value::Null) => 0,
        Some(Value::String(c)) => match decode_cursor(c) {
            Some(o) => o,
            None => return err(&id, codes::INVALID_PARAMS, "invalid cursor"),
        },
        Some(_) => return err(&id, codes::INVALID_PARAMS, "invalid cursor"),
    };
    let merged = catalog::merged(vs, kind, ctx).await;
    if vs.fail_closed && !merged.failures.is_empty() {
        let (server, reason) = &merged.failures[0];
        return Message::error(
            id,
            ErrorObject::with_data(
                codes::BACKEND_UNAVAILABLE,
                format!("member {server:?} is unavailable: {reason}"),
                json!({"server": server}),
            ),
        );
    }
    let shown = crate::authz::visible(vs, ctx, kind, &merged).await;
    let total = shown.as_ref().map_or(merged.items.len(), Vec::len);
    let page: Vec<&Value> = match &shown {
        Some(shown) => shown
            .iter()
            .skip(offset)
            .take(PAGE_SIZE)
            .map(|&i| &merged.items[i])
            .collect(),
        None => merged.items.iter().skip(offset).take(PAGE_SIZE).collect(),
    };
    let mut result = Map::new();
    result.insert(kind.field().into(), json!(page));
    if offset + PAGE_SIZE < total {
        result.insert(
            "nextCursor".into(),
            Value::from(encode_cursor(offset + PAGE_SIZE)),
        );
    }
    Message::result(id, &result)
}

fn encode_cursor(offset: usize) -> String {
    B64.encode(format!("gh:{offset}"))
}

fn decode_cursor(c: &str) -> Option<usize> {
    let raw = B64.decode(c).ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix("gh:")?
        .parse()
        .ok()
}

async fn call_named(
    vs: &VirtualServer,
    kind: ListKind,
    mut msg: Message,
    ctx: &CallCtx,
) -> Message {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let Some(name) = msg.target_name().map(str::to_string) else {
        return err(&id, codes::INVALID_PARAMS, "params.name is required");
    };
    let merged = catalog::merged(vs, kind, ctx).await;
    let Some(route) = merged.routes.get(&name) else {
        let what = if kind == ListKind::Tools {
            "tool"
        } else {
            "prompt"
        };
        // A user who must first authorize Gatehouse at a member gets the link, not "unknown".
        if let Some((_, e)) = merged.failures.iter().find(|(_, e)| {
            matches!(
                e,
                crate::backend::BackendError::Credential(
                    gatehouse_identity::CredentialError::AuthorizationRequired { .. }
                )
            )
        }) {
            return Message::error(id, e.to_error_object());
        }
        if let Some((server, reason)) = merged.failures.first() {
            return Message::error(
                id,
                ErrorObject::with_data(
                    codes::BACKEND_UNAVAILABLE,
                    format!("Unknown {what} {name:?}; member {server:?} is unavailable: {reason}"),
                    json!({"server": server}),
                ),
            );
        }
        return err(
            &id,
            codes::INVALID_PARAMS,
            format!("Unknown {what}: {name}"),
        );
    };
    let (action, item_kind, what) = if kind == ListKind::Tools {
        (Action::CallTool, ItemKind::Tool, "tool")
    } else {
        (Action::GetPrompt, ItemKind::Prompt, "prompt")
    };
    let item = Item {
        kind: item_kind,
        name: &name,
        member: &vs.members[route.member],
        original: &route.original,
        definition: merged.items.get(route.item),
    };
    let arguments = msg.params.as_ref().and_then(|p| p.get("arguments"));
    let member = &vs.members[route.member];
    let operation = (item_kind == ItemKind::Tool).then(|| crate::authz::operation(&item).as_str());
    crate::observe::target(what, &name, operation);
    crate::observe::server(&member.server.config.name);
    let allowed = crate::authz::allows(vs, ctx, action, &item, arguments).await;
    // Recorded for denied calls too: what was attempted matters as much as what was done.
    crate::observe::arguments(&member.arguments, arguments);
    if !allowed {
        // Exactly what a missing item gets: a denial must not reveal that the item exists.
        return err(
            &id,
            codes::INVALID_PARAMS,
            format!("Unknown {what}: {name}"),
        );
    }
    if let Some(p) = msg.params.as_mut() {
        p["name"] = Value::from(route.original.as_str());
    }
    if kind != ListKind::Tools {
        return call_member(&vs.members[route.member], msg, ctx).await;
    }
    // Tool arguments bound to headers (`x-mcp-header`): a stateless client's headers must
    // match them, and a stateless backend gets them freshly encoded.
    let schema = merged.items[route.item]
        .get("inputSchema")
        .unwrap_or(&Value::Null);
    let arguments = msg.params.as_ref().and_then(|p| p.get("arguments"));
    if ctx.era == Era::Stateless {
        let lookup = |name: &str| {
            ctx.param_headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if let Err(e) = h::validate_param_headers(schema, arguments, lookup) {
            return err(&id, codes::HEADER_MISMATCH, format!("Header mismatch: {e}"));
        }
    }
    let extra = h::param_headers(schema, arguments);
    let member = &vs.members[route.member];
    let mut reply = if extra.is_empty() {
        call_member(member, msg, ctx).await
    } else {
        let mut ctx = ctx.clone();
        ctx.client.extra_headers = extra;
        call_member(member, msg, &ctx).await
    };
    crate::tasks::qualify(vs, &mut reply, &member.server.config.name);
    reply
}

async fn complete(vs: &VirtualServer, mut msg: Message, ctx: &CallCtx) -> Message {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let reference = msg
        .params
        .as_ref()
        .and_then(|p| p.get("ref"))
        .cloned()
        .unwrap_or(Value::Null);
    let member = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => {
            let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
            let merged = catalog::merged(vs, ListKind::Prompts, ctx).await;
            match merged.routes.get(name) {
                Some(r) => {
                    let item = Item {
                        kind: ItemKind::Prompt,
                        name,
                        member: &vs.members[r.member],
                        original: &r.original,
                        definition: merged.items.get(r.item),
                    };
                    if crate::authz::allows(vs, ctx, Action::Complete, &item, None).await {
                        if let Some(p) = msg.params.as_mut() {
                            p["ref"]["name"] = Value::from(r.original.as_str());
                        }
                        Some(r.member)
                    } else {
                        None
                    }
                }
                None => None,
            }
        }
        Some("ref/resource") => {
            let uri = reference.get("uri").and_then(Value::as_str).unwrap_or("");
            match catalog::route_resource(vs, uri, ctx).await {
                Some(m) => {
                    let item = Item {
                        kind: ItemKind::Resource,
                        name: uri,
                        member: &vs.members[m],
                        original: uri,
                        definition: None,
                    };
                    crate::authz::allows(vs, ctx, Action::Complete, &item, None)
                        .await
                        .then_some(m)
                }
                None => None,
            }
        }
        _ => {
            return err(
                &id,
                codes::INVALID_PARAMS,
                "params.ref must be a ref/prompt or ref/resource",
            );
        }
    };
    match member {
        Some(m) => call_member(&vs.members[m], msg, ctx).await,
        None => err(&id, codes::INVALID_PARAMS, "completion target not found"),
    }
}

/// The backend's own name of what `params` call (tool or prompt name, resource URI).
fn target_of(params: &Option<Value>) -> Option<&str> {
    let p = params.as_ref()?;
    p.get("name")
        .or_else(|| p.get("uri"))
        .and_then(Value::as_str)
}

/// Calls a member, driving MRTR rounds for handshake-era clients: a stateless backend's
/// `input_required` becomes server→client requests on the client's stream, and the gateway
/// retries with the answers.
async fn call_member(member: &Member, msg: Message, ctx: &CallCtx) -> Message {
    crate::observe::server(&member.server.config.name);
    let id = msg.id.clone().unwrap_or(Id::Null);
    let method = msg.method().to_string();
    let client = ctx.for_member(member);
    let mut params = msg.params;
    // Only a handshake-era client can need another round with the same params (a stateless
    // client retries MRTR itself): keep a copy only then, so relaying stays copy-free.
    let rounds = if ctx.era == Era::Handshake {
        MAX_INPUT_ROUNDS
    } else {
        1
    };
    for _ in 0..rounds {
        let mut sent = if rounds > 1 {
            params.clone()
        } else {
            params.take()
        };
        let span = crate::observe::backend_call(&member.server, &method, target_of(&sent));
        let traced = span
            .as_ref()
            .and_then(|s| crate::observe::trace_upstream(s, &mut sent, &client));
        let client = traced.as_ref().unwrap_or(&client);
        let called = member
            .server
            .backend
            .call(&method, sent, client, ctx.events.clone())
            .await;
        crate::observe::backend_result(&member.server.config.name, span, &called);
        let reply = match called {
            Ok(r) => r,
            Err(e) => return Message::error(id, e.to_error_object()),
        };
        let needs_input = ctx.era == Era::Handshake
            && reply
                .result
                .as_ref()
                .is_some_and(|r| r.get().contains("\"input_required\""));
        if !needs_input {
            let mut reply = reply;
            reply.id = Some(id);
            return reply;
        }
        let Some(result) = reply
            .result_value()
            .filter(|v| v.get("resultType").and_then(Value::as_str) == Some("input_required"))
        else {
            let mut reply = reply;
            reply.id = Some(id);
            return reply;
        };
        let Some(events) = &ctx.events else {
            return err(
                &id,
                codes::INTERNAL_ERROR,
                "the server needs input but the client cannot be asked on this request",
            );
        };
        let mut responses = Map::new();
        if let Some(requests) = result.get("inputRequests").and_then(Value::as_object) {
            for (key, req) in requests {
                let method = req
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let (tx, rx) = oneshot::channel();
                let request = Message::request(Id::Null, method, req.get("params").cloned());
                if events
                    .send(CallEvent::ServerRequest { request, reply: tx })
                    .await
                    .is_err()
                {
                    return err(&id, codes::INTERNAL_ERROR, "client went away");
                }
                match tokio::time::timeout(crate::backend::CLIENT_ANSWER_TIMEOUT, rx).await {
                    Ok(Ok(answer)) => {
                        if let Some(v) = answer.result_value() {
                            responses.insert(key.clone(), v);
                        } else if let Some(e) = answer.error {
                            return Message::error(id, e);
                        }
                    }
                    _ => return err(&id, codes::INTERNAL_ERROR, "the client did not answer"),
                }
            }
        }
        let p = params.get_or_insert_with(|| json!({}));
        p["inputResponses"] = Value::Object(responses);
        match result.get("requestState") {
            Some(s) => p["requestState"] = s.clone(),
            None => {
                if let Some(o) = p.as_object_mut() {
                    o.remove("requestState");
                }
            }
        }
    }
    err(&id, codes::INTERNAL_ERROR, "too many input rounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_foreign() {
        assert_eq!(decode_cursor(&encode_cursor(500)), Some(500));
        assert_eq!(decode_cursor("bm9wZQ"), None);
    }
}
