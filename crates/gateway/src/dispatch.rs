//! Running a decided request against one virtual server: aggregated, filtered lists, the
//! gateway's own answers (`server/discover`), and calls to members (through
//! [`crate::upstream`]) with task ids sealed on the way back. What may run at all is the
//! table's decision ([`crate::methods`]); era specifics of the *client* are handled by the
//! front door, those of each *backend* by the backend.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gatehouse_wire::{Era, ErrorObject, Id, Message, ProtocolVersion, codes, headers as h, meta};
use serde_json::{Map, Value, json};

use crate::Gateway;
use crate::backend::ClientContext;
use crate::catalog::{self, ListKind};
pub use crate::context::CallCtx;
use crate::methods::Route;
use crate::snapshot::{Member, VirtualServer};
use crate::{tasks, upstream};

/// Largest page the gateway returns for an aggregated list.
const PAGE_SIZE: usize = 500;

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

/// Runs a request the table routed (see [`crate::methods::authorize`]) and returns the
/// response in the client's terms.
pub async fn run(gw: &Gateway, vs: &VirtualServer, route: Route, ctx: &CallCtx) -> Message {
    match route {
        Route::Answer(m) => m,
        Route::Discover(msg) => {
            let id = msg.id.unwrap_or(Id::Null);
            Message::result(
                id,
                &json!({
                    "supportedVersions": ProtocolVersion::supported_strings(),
                    "capabilities": aggregated_capabilities(vs, Era::Stateless, &ctx.client).await,
                    "serverInfo": server_info(vs),
                    "_meta": {meta::SERVER_INFO: server_info(vs)},
                }),
            )
        }
        Route::List(kind, msg) => list(vs, kind, &msg, ctx).await,
        Route::Member {
            decided,
            msg,
            item,
            task,
        } => member(gw, vs, &decided, msg, item.as_ref(), task, ctx).await,
        Route::Members(decided, msg) => {
            upstream::call_all(vs, &decided, &msg, ctx).await;
            Message::result(msg.id.unwrap_or(Id::Null), &json!({}))
        }
        Route::TaskList(decided, msg) => task_list(gw, vs, &decided, msg, ctx).await,
        // Subscriptions belong to a session or a stream; the front door handles them.
        Route::Subscribe { msg, .. } | Route::Unsubscribe { msg, .. } | Route::Listen(msg) => err(
            msg.id.as_ref().unwrap_or(&Id::Null),
            codes::METHOD_NOT_FOUND,
            format!("Method not found: {} on this transport", msg.method()),
        ),
    }
}

async fn member(
    gw: &Gateway,
    vs: &VirtualServer,
    decided: &crate::methods::Decided,
    msg: Message,
    item: Option<&crate::methods::Resolved>,
    task: bool,
    ctx: &CallCtx,
) -> Message {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let server = upstream::member(vs, decided).server.config.name.clone();
    let tool = item.filter(|i| i.kind == gatehouse_policy::ItemKind::Tool);
    let mut reply = match tool {
        None => upstream::call(vs, decided, msg, ctx).await,
        Some(tool) => {
            // Tool arguments bound to headers (`x-mcp-header`): a stateless client's headers
            // must match them, and a stateless backend gets them freshly encoded.
            let schema = tool
                .definition()
                .and_then(|d| d.get("inputSchema"))
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
            if extra.is_empty() {
                upstream::call(vs, decided, msg, ctx).await
            } else {
                let mut ctx = ctx.clone();
                ctx.client.extra_headers = extra;
                upstream::call(vs, decided, msg, &ctx).await
            }
        }
    };
    // Task ids leave the gateway only as the caller's sealed handles.
    if task || tool.is_some() {
        let scope = tasks::TaskScope::of(vs, ctx);
        tasks::seal_reply(&gw.keys, &gw.tasks, &scope, &server, &mut reply);
    }
    reply
}

/// `tasks/list`: every member's tasks that this caller created, as the caller's handles.
async fn task_list(
    gw: &Gateway,
    vs: &VirtualServer,
    decided: &[crate::methods::Decided],
    msg: Message,
    ctx: &CallCtx,
) -> Message {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let scope = tasks::TaskScope::of(vs, ctx);
    let mut mine = Vec::new();
    for d in decided {
        let server = upstream::member(vs, d).server.config.name.clone();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_TASK_PAGES {
            let params = match cursor.take() {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = Message::request(Id::Number(0), d.method(), Some(params));
            let reply = upstream::call(vs, d, page, ctx).await;
            let Some(v) = reply.result_value() else { break };
            for t in v
                .get("tasks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(task_id) = t.get("taskId").and_then(Value::as_str) else {
                    continue;
                };
                if gw.tasks.owner(&server, task_id).as_ref() == Some(&scope) {
                    let mut t = t.clone();
                    t["taskId"] = Value::from(tasks::seal(&gw.keys, &scope, &server, task_id));
                    mine.push(t);
                }
            }
            match v.get("nextCursor") {
                Some(c) if !c.is_null() => cursor = Some(c.clone()),
                _ => break,
            }
        }
    }
    Message::result(id, &json!({ "tasks": mine }))
}

/// Pages of one member's `tasks/list` the gateway follows.
const MAX_TASK_PAGES: usize = 100;

/// True when `member` speaks the stateless era with this client (no handshake-era session).
pub async fn member_is_stateless(member: &Member, client: &ClientContext) -> bool {
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
        let (_, e) = &merged.failures[0];
        return Message::error(
            id,
            e.to_client_error(crate::observe::request_id().as_deref()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_foreign() {
        assert_eq!(decode_cursor(&encode_cursor(500)), Some(500));
        assert_eq!(decode_cursor("bm9wZQ"), None);
    }
}
