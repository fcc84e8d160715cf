//! Deciding one client request: the row of the table it falls under, the item it names
//! (resolved once, against the caller's view of the virtual server), the policy decision, and
//! the [`Route`] that says where it goes — with a [`Decided`] for anything that reaches a
//! member.

use std::borrow::Cow;
use std::sync::Arc;

use gatehouse_policy::{Action, ItemKind};
use gatehouse_wire::{ErrorObject, Id, Message, MessageKind, codes};
use serde_json::{Value, json};

use super::{
    Decided, Handling, ItemMethod, Lookup, SessionMethod, SubscriptionMethod, Target, TaskMethod,
    interned, lookup,
};
use crate::authz::Item;
use crate::catalog::{self, ListKind, Merged};
use crate::context::CallCtx;
use crate::snapshot::VirtualServer;
use crate::tasks::{self, TaskScope};

/// Where a client's request goes, as the table decided.
#[derive(Debug)]
pub enum Route {
    /// The gateway answers without contacting a member (ping, denials that look like missing
    /// items, unknown methods, bad parameters).
    Answer(Message),
    /// `server/discover`: answered from the members' capabilities.
    Discover(Message),
    /// A list from the catalog, filtered to what the caller may use.
    List(ListKind, Message),
    /// One member, the message already in the member's own terms.
    Member {
        /// The permission to send it.
        decided: Decided,
        /// The message to send.
        msg: Message,
        /// The item it uses, when it names one.
        item: Option<Resolved>,
        /// The task it concerns, when it is a `tasks/*` request (its reply's ids are sealed).
        task: bool,
    },
    /// Every member (`logging/setLevel`).
    Members(Decided, Message),
    /// `tasks/list`: each member's list, filtered to the caller's own tasks.
    TaskList(Vec<Decided>, Message),
    /// `resources/subscribe` to a resource the caller may read, at the member serving it.
    Subscribe {
        /// The resource.
        uri: String,
        /// The permission to relay the subscription.
        decided: Decided,
        /// The request.
        msg: Message,
    },
    /// `resources/unsubscribe`: releases the caller's own subscription, if it has one.
    Unsubscribe {
        /// The resource.
        uri: String,
        /// The request.
        msg: Message,
    },
    /// `subscriptions/listen`: a stream whose resource subscriptions are decided one by one.
    Listen(Message),
}

/// A named item resolved once for a request: which member serves it and under what name.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Tool, prompt or resource.
    pub kind: ItemKind,
    /// The member's index in the virtual server.
    pub member: usize,
    /// The name the client used.
    pub exposed: String,
    /// The member's own name (or URI).
    pub original: String,
    /// The merged list it was found in, and its position there (`None` for resources routed by
    /// URI or template, which have no single definition).
    pub definition: Option<(Arc<Merged>, usize)>,
}

impl Resolved {
    /// The item's definition as the caller's list shows it.
    pub fn definition(&self) -> Option<&Value> {
        self.definition.as_ref().and_then(|(m, i)| m.items.get(*i))
    }

    fn item<'a>(&'a self, vs: &'a VirtualServer) -> Item<'a> {
        Item {
            kind: self.kind,
            name: &self.exposed,
            member: &vs.members[self.member],
            original: &self.original,
            definition: self.definition(),
        }
    }
}

fn answer_error(id: Id, code: i64, message: impl Into<String>) -> Route {
    Route::Answer(Message::error(id, ErrorObject::new(code, message)))
}

fn string_param<'a>(msg: &'a Message, key: &str) -> Option<&'a str> {
    msg.params.as_ref()?.get(key)?.as_str()
}

/// Decides one request of a client of `vs` (the front door has applied its era's rules).
pub async fn authorize(
    keys: &crate::seal::Keyring,
    owners: &tasks::TaskOwners,
    vs: &VirtualServer,
    ctx: &CallCtx,
    msg: Message,
) -> Route {
    let id = msg.id.clone().unwrap_or(Id::Null);
    match lookup(msg.method(), MessageKind::Request, ctx.era) {
        Lookup::Known(handling) => match handling {
            Handling::Session(s) => session(s, msg),
            Handling::List(kind) => Route::List(kind, msg),
            Handling::Item(m) => item(vs, ctx, m, msg).await,
            Handling::Task(m) => task(keys, owners, vs, ctx, m, msg),
            Handling::Subscription(SubscriptionMethod::Subscribe) => subscribe(vs, ctx, msg).await,
            Handling::Subscription(SubscriptionMethod::Unsubscribe) => {
                match string_param(&msg, "uri").map(str::to_string) {
                    Some(uri) => Route::Unsubscribe { uri, msg },
                    None => answer_error(id, codes::INVALID_PARAMS, "params.uri is required"),
                }
            }
            Handling::Subscription(SubscriptionMethod::Listen) => Route::Listen(msg),
            Handling::Undecidable => unknown(vs, msg),
        },
        Lookup::OtherEra => answer_error(
            id,
            codes::METHOD_NOT_FOUND,
            format!(
                "Method not found: {} does not exist in protocol {}",
                msg.method(),
                ctx.protocol_version
            ),
        ),
        Lookup::Unknown => unknown(vs, msg),
    }
}

/// Which members a client's notification goes to; `None` when the gateway consumes it or
/// cannot decide it.
pub fn authorize_notification(
    vs: &VirtualServer,
    msg: &Message,
    era: gatehouse_wire::Era,
) -> Option<Decided> {
    match lookup(msg.method(), MessageKind::Notification, era) {
        Lookup::Known(Handling::Session(
            SessionMethod::RootsListChanged | SessionMethod::Progress,
        )) => Some(Decided::members(interned(msg.method())?)),
        Lookup::Known(Handling::Undecidable) | Lookup::Unknown if vs.authz.is_some() => {
            // Deny by default under policies: an unknown notification could carry anything.
            tracing::info!(target: "gatehouse::decision", virtual_server = %vs.name, method = %crate::observe::shown(msg.method()), "notification dropped: policies cannot decide it");
            None
        }
        Lookup::Known(Handling::Undecidable) | Lookup::Unknown => Some(Decided {
            method: Cow::Owned(msg.method().to_string()),
            target: Target::Members,
        }),
        Lookup::Known(_) | Lookup::OtherEra => None,
    }
}

fn session(method: SessionMethod, msg: Message) -> Route {
    let id = msg.id.clone().unwrap_or(Id::Null);
    match method {
        SessionMethod::Ping => Route::Answer(Message::result(id, &json!({}))),
        SessionMethod::Discover => Route::Discover(msg),
        SessionMethod::SetLogLevel => Route::Members(Decided::members("logging/setLevel"), msg),
        SessionMethod::Initialize => {
            answer_error(id, codes::INVALID_REQUEST, "session is already initialized")
        }
        // Notification methods sent as requests.
        _ => answer_error(
            id,
            codes::INVALID_REQUEST,
            format!("{} is a notification, not a request", msg.method()),
        ),
    }
}

/// A method the table does not know (or cannot decide): refused under policies, because it
/// could reach an item by another name; relayed to a sole member without them.
fn unknown(vs: &VirtualServer, msg: Message) -> Route {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let method = msg.method().to_string();
    if vs.authz.is_some() {
        tracing::info!(target: "gatehouse::decision", virtual_server = %vs.name, method = %crate::observe::shown(&method), "method refused: policies cannot decide it");
        return answer_error(
            id,
            codes::METHOD_NOT_FOUND,
            format!("Method not found: {}", crate::observe::shown(&method)),
        );
    }
    if vs.members.len() != 1 {
        return answer_error(
            id,
            codes::METHOD_NOT_FOUND,
            format!("Method not found: {}", crate::observe::shown(&method)),
        );
    }
    Route::Member {
        decided: Decided {
            method: Cow::Owned(method),
            target: Target::Member(0),
        },
        msg,
        item: None,
        task: false,
    }
}

/// The error a missing item gets — and, so a denial reveals nothing, a denied one.
fn missing(id: Id, kind: ItemKind, name: &str) -> Route {
    match kind {
        ItemKind::Tool => answer_error(id, codes::INVALID_PARAMS, format!("Unknown tool: {name}")),
        ItemKind::Prompt => {
            answer_error(id, codes::INVALID_PARAMS, format!("Unknown prompt: {name}"))
        }
        ItemKind::Resource => Route::Answer(Message::error(
            id,
            ErrorObject::with_data(
                codes::INVALID_PARAMS,
                format!("Resource not found: {name}"),
                json!({ "uri": name }),
            ),
        )),
    }
}

async fn item(vs: &VirtualServer, ctx: &CallCtx, method: ItemMethod, mut msg: Message) -> Route {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let wire = interned(msg.method()).expect("item methods are in the table");
    let (action, resolved) = match method {
        ItemMethod::CallTool | ItemMethod::GetPrompt => {
            let (kind, action) = if method == ItemMethod::CallTool {
                (ListKind::Tools, Action::CallTool)
            } else {
                (ListKind::Prompts, Action::GetPrompt)
            };
            let Some(name) = msg.target_name().map(str::to_string) else {
                return answer_error(id, codes::INVALID_PARAMS, "params.name is required");
            };
            match resolve_named(vs, ctx, kind, &name).await {
                Ok(r) => (action, r),
                Err(route) => return route.with_id(id),
            }
        }
        ItemMethod::ReadResource | ItemMethod::GetSkill | ItemMethod::ReadDirectory => {
            let Some(uri) = string_param(&msg, "uri").map(str::to_string) else {
                return answer_error(id, codes::INVALID_PARAMS, "params.uri is required");
            };
            crate::observe::target("resource", &uri, None);
            match resolve_resource(vs, ctx, &uri).await {
                Some(r) => (Action::ReadResource, r),
                None => return missing(id, ItemKind::Resource, &uri),
            }
        }
        ItemMethod::Complete => return complete(vs, ctx, msg).await,
    };
    let item = resolved.item(vs);
    let member = &vs.members[resolved.member];
    let arguments = msg.params.as_ref().and_then(|p| p.get("arguments"));
    if resolved.kind != ItemKind::Resource {
        let (what, operation) = match resolved.kind {
            ItemKind::Tool => ("tool", Some(crate::authz::operation(&item).as_str())),
            _ => ("prompt", None),
        };
        crate::observe::target(what, &resolved.exposed, operation);
    }
    crate::observe::server(&member.server.config.name);
    let allowed = crate::authz::allows(vs, ctx, action, &item, arguments).await;
    if resolved.kind != ItemKind::Resource {
        // Recorded for denied calls too: what was attempted matters as much as what was done.
        crate::observe::arguments(&member.arguments, arguments);
    }
    if !allowed {
        return missing(id, resolved.kind, &resolved.exposed);
    }
    if resolved.kind != ItemKind::Resource
        && let Some(p) = msg.params.as_mut()
    {
        p["name"] = Value::from(resolved.original.as_str());
    }
    Route::Member {
        decided: Decided::member(wire, resolved.member),
        msg,
        item: Some(resolved),
        task: false,
    }
}

impl Route {
    /// The same answer for the request `id` (resolution errors are built before the id is known).
    fn with_id(self, id: Id) -> Route {
        match self {
            Route::Answer(mut m) => {
                m.id = Some(id);
                Route::Answer(m)
            }
            other => other,
        }
    }
}

/// Finds the member serving the tool or prompt exposed as `name`, or the error to answer.
async fn resolve_named(
    vs: &VirtualServer,
    ctx: &CallCtx,
    kind: ListKind,
    name: &str,
) -> Result<Resolved, Route> {
    let merged = catalog::merged(vs, kind, ctx).await;
    let item_kind = if kind == ListKind::Tools {
        ItemKind::Tool
    } else {
        ItemKind::Prompt
    };
    let Some(route) = merged.routes.get(name) else {
        // A user who must first authorize Gatehouse at a member gets the link, not "unknown".
        if let Some((_, e)) = merged
            .failures
            .iter()
            .find(|(_, e)| e.is_authorization_required())
        {
            return Err(Route::Answer(Message::error(
                Id::Null,
                e.to_client_error(crate::observe::request_id().as_deref()),
            )));
        }
        if let Some((_, e)) = merged.failures.first() {
            let what = if item_kind == ItemKind::Tool {
                "tool"
            } else {
                "prompt"
            };
            let mut error = e.to_client_error(crate::observe::request_id().as_deref());
            error.message = format!("Unknown {what} {name:?}; {}", error.message);
            return Err(Route::Answer(Message::error(Id::Null, error)));
        }
        return Err(missing(Id::Null, item_kind, name));
    };
    Ok(Resolved {
        kind: item_kind,
        member: route.member,
        exposed: name.to_string(),
        original: route.original.clone(),
        definition: Some((merged.clone(), route.item)),
    })
}

/// Finds the member serving a resource URI (listed, or matching a template).
async fn resolve_resource(vs: &VirtualServer, ctx: &CallCtx, uri: &str) -> Option<Resolved> {
    let member = catalog::route_resource(vs, uri, ctx).await?;
    Some(Resolved {
        kind: ItemKind::Resource,
        member,
        exposed: uri.to_string(),
        original: uri.to_string(),
        definition: None,
    })
}

/// Decides `read_resource` on `uri` for a subscription; the member serving it when allowed.
pub(crate) async fn decide_read(vs: &VirtualServer, ctx: &CallCtx, uri: &str) -> Option<usize> {
    let resolved = resolve_resource(vs, ctx, uri).await?;
    crate::authz::allows(vs, ctx, Action::ReadResource, &resolved.item(vs), None)
        .await
        .then_some(resolved.member)
}

async fn subscribe(vs: &VirtualServer, ctx: &CallCtx, msg: Message) -> Route {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let Some(uri) = string_param(&msg, "uri").map(str::to_string) else {
        return answer_error(id, codes::INVALID_PARAMS, "params.uri is required");
    };
    crate::observe::target("resource", &uri, None);
    match decide_read(vs, ctx, &uri).await {
        Some(member) => {
            crate::observe::server(&vs.members[member].server.config.name);
            Route::Subscribe {
                uri,
                decided: Decided::member("resources/subscribe", member),
                msg,
            }
        }
        None => missing(id, ItemKind::Resource, &uri),
    }
}

/// The permission to release a subscription the table decided earlier at `member`.
pub(crate) fn unsubscribe(member: usize) -> Decided {
    Decided::member("resources/unsubscribe", member)
}

/// The permission to hold `uri`'s updates at `member` for a `subscriptions/listen` stream
/// (decided by [`decide_read`] before).
pub(crate) fn listen_subscribe(member: usize) -> Decided {
    Decided::member("resources/subscribe", member)
}

async fn complete(vs: &VirtualServer, ctx: &CallCtx, mut msg: Message) -> Route {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let reference = msg
        .params
        .as_ref()
        .and_then(|p| p.get("ref"))
        .cloned()
        .unwrap_or(Value::Null);
    let resolved = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => {
            let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
            resolve_named(vs, ctx, ListKind::Prompts, name).await.ok()
        }
        Some("ref/resource") => {
            let uri = reference.get("uri").and_then(Value::as_str).unwrap_or("");
            resolve_resource(vs, ctx, uri).await
        }
        _ => {
            return answer_error(
                id,
                codes::INVALID_PARAMS,
                "params.ref must be a ref/prompt or ref/resource",
            );
        }
    };
    let not_found = || {
        answer_error(
            id.clone(),
            codes::INVALID_PARAMS,
            "completion target not found",
        )
    };
    let Some(resolved) = resolved else {
        return not_found();
    };
    if !crate::authz::allows(vs, ctx, Action::Complete, &resolved.item(vs), None).await {
        return not_found();
    }
    if resolved.kind == ItemKind::Prompt
        && let Some(p) = msg.params.as_mut()
    {
        p["ref"]["name"] = Value::from(resolved.original.as_str());
    }
    Route::Member {
        decided: Decided::member("completion/complete", resolved.member),
        msg,
        item: Some(resolved),
        task: false,
    }
}

fn task(
    keys: &crate::seal::Keyring,
    owners: &tasks::TaskOwners,
    vs: &VirtualServer,
    ctx: &CallCtx,
    method: TaskMethod,
    mut msg: Message,
) -> Route {
    let id = msg.id.clone().unwrap_or(Id::Null);
    let wire = interned(msg.method()).expect("task methods are in the table");
    // In 2026-07-28 tasks are an extension: a client that did not negotiate it has no tasks
    // (SEP-2575: -32021 names the capability it lacks).
    let extension = ("extensions", Some(tasks::EXTENSION));
    if ctx.era == gatehouse_wire::Era::Stateless
        && !gatehouse_wire::capability::declared(&ctx.client.capabilities, extension)
    {
        return Route::Answer(Message::error(
            id,
            ErrorObject::with_data(
                codes::MISSING_CLIENT_CAPABILITY,
                format!("{} needs the {} extension", msg.method(), tasks::EXTENSION),
                gatehouse_wire::capability::missing_error_data(extension),
            ),
        ));
    }
    let scope = TaskScope::of(vs, ctx);
    if method == TaskMethod::List {
        // Only members where this caller created tasks are asked.
        let servers = owners.servers_of(&scope);
        let mine = vs
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| servers.contains(&m.server.config.name))
            .map(|(i, _)| Decided::member(wire, i))
            .collect();
        return Route::TaskList(mine, msg);
    }
    let opened = string_param(&msg, "taskId").and_then(|h| tasks::open(keys, &scope, h));
    let Some((server, task_id)) = opened else {
        return Route::Answer(Message::error(id, tasks::not_found()));
    };
    let Some(member) = vs
        .members
        .iter()
        .position(|m| m.server.config.name == server)
    else {
        // The member left the virtual server: its tasks are gone for this caller.
        return Route::Answer(Message::error(id, tasks::not_found()));
    };
    crate::observe::server(&server);
    if let Some(p) = msg.params.as_mut() {
        p["taskId"] = Value::from(task_id);
    }
    Route::Member {
        decided: Decided::member(wire, member),
        msg,
        item: None,
        task: true,
    }
}
