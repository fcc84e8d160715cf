//! Item catalogs: each server's lists (fetched across pages, cached until the server says they
//! changed) and each virtual server's merged view (filtered, prefixed, renamed, re-described)
//! with the routes from exposed names back to members.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::backend::{BackendError, ClientContext};
use crate::context::CallCtx;
use crate::snapshot::{ServerHandle, VirtualServer};

/// A kind of list an MCP server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    ResourceTemplates,
}

impl ListKind {
    /// The list method.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The result field holding the items.
    pub fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The server capability that announces this list.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::ResourceTemplates => "resources",
        }
    }

    /// The kind whose `list_changed` notification invalidates this list.
    pub fn from_notification(method: &str) -> &'static [ListKind] {
        match method {
            "notifications/tools/list_changed" => &[ListKind::Tools],
            "notifications/prompts/list_changed" => &[ListKind::Prompts],
            "notifications/resources/list_changed" => {
                &[ListKind::Resources, ListKind::ResourceTemplates]
            }
            _ => &[],
        }
    }
}

/// A server list's cache key: the kind, whether it was fetched on a client's own session, and
/// for whom when the server sees each user with their own credential (it may show each user
/// other items).
type ListKey = (ListKind, bool, Option<String>);
/// A merged view's cache key: the kind, per member whether the caller has its own session, and
/// the caller when a member sees each user with their own credential.
type MergedKey = (ListKind, Vec<bool>, Option<String>);

/// For whom `server`'s lists are cached: the caller, when the server gets a per-user credential.
fn list_owner(server: &ServerHandle, client: &ClientContext) -> Option<String> {
    server
        .credentials
        .as_ref()
        .filter(|c| c.kind().is_per_user())
        .map(|_| client.caller.principal.key().to_string())
}
/// A merged view and the member list generations it was built from.
type MergedEntry = (Vec<u64>, Arc<Merged>);

/// One server's cached lists.
#[derive(Debug, Default)]
pub struct ListCache {
    /// Keyed by kind and whether the list was fetched through a client's own upstream session
    /// (a dual-era server may show handshake-era clients other items).
    entries: Mutex<HashMap<ListKey, Arc<Vec<Value>>>>,
    generation: AtomicU64,
}

impl ListCache {
    /// Drops cached lists of these kinds.
    pub fn invalidate(&self, kinds: &[ListKind]) {
        self.entries
            .lock()
            .expect("list cache lock")
            .retain(|(kind, _, _), _| !kinds.contains(kind));
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes whenever a list is invalidated.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// Upper bound on pages followed for one list, against servers that never stop paginating.
const MAX_PAGES: usize = 1000;

/// A server's full list of `kind`, from cache or fetched across all pages.
pub async fn server_list(
    server: &ServerHandle,
    kind: ListKind,
    client: &ClientContext,
) -> Result<Arc<Vec<Value>>, BackendError> {
    let key = (
        kind,
        client.upstream_session.is_some(),
        list_owner(server, client),
    );
    if let Some(hit) = server
        .lists
        .entries
        .lock()
        .expect("list cache lock")
        .get(&key)
    {
        return Ok(hit.clone());
    }
    let generation = server.lists.generation();
    let info = server.backend.info(client).await?;
    if client.upstream_session.is_none() && info.capabilities.get(kind.capability()).is_none() {
        return Ok(Arc::new(Vec::new()));
    }
    let mut items = Vec::new();
    let mut cursor: Option<Value> = None;
    let decided = crate::methods::Decided::catalog(kind);
    for _ in 0..MAX_PAGES {
        let params = cursor.take().map(|c| json!({"cursor": c}));
        let outbound = server.backend.credential(client).await?;
        let reply = server
            .backend
            .call(&decided, outbound, params, client, None)
            .await?;
        if let Some(e) = reply.error {
            return Err(BackendError::Protocol {
                server: server.config.name.clone(),
                reason: format!("{} failed: {}", kind.method(), e.message),
            });
        }
        let v = reply.result_value().unwrap_or(Value::Null);
        if let Some(arr) = v.get(kind.field()).and_then(Value::as_array) {
            items.extend(arr.iter().cloned());
        }
        match v.get("nextCursor") {
            Some(c) if !c.is_null() => cursor = Some(c.clone()),
            _ => break,
        }
    }
    let items = Arc::new(items);
    if server.lists.generation() == generation {
        server
            .lists
            .entries
            .lock()
            .expect("list cache lock")
            .insert(key, items.clone());
    }
    Ok(items)
}

/// Where an exposed item lives.
#[derive(Debug, Clone)]
pub struct Route {
    /// Index of the member in the virtual server.
    pub member: usize,
    /// The server's own name for the item.
    pub original: String,
    /// Index of the exposed definition in [`Merged::items`].
    pub item: usize,
}

/// A virtual server's merged list of one kind.
#[derive(Debug, Default)]
pub struct Merged {
    /// Item definitions as clients see them.
    pub items: Vec<Value>,
    /// Exposed name (or URI) → member and original name.
    pub routes: HashMap<String, Route>,
    /// Members whose list could not be fetched, with the reason.
    pub failures: Vec<(String, BackendError)>,
    /// A hash of each item's definition (by position), so a caller's view of the list can be
    /// compared cheaply before and after a change.
    pub hashes: Vec<u64>,
}

fn definition_hash(def: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    def.to_string().hash(&mut h);
    h.finish()
}

/// Cache of merged views, keyed by the member caches' generations.
#[derive(Debug, Default)]
pub struct MergedCache {
    entries: Mutex<HashMap<MergedKey, MergedEntry>>,
}

/// The merged list of `kind` for a virtual server, as this caller sees it.
pub async fn merged(vs: &VirtualServer, kind: ListKind, ctx: &CallCtx) -> Arc<Merged> {
    let gens: Vec<u64> = vs
        .members
        .iter()
        .map(|m| m.server.lists.generation())
        .collect();
    let view: Vec<bool> = if ctx.upstream.is_empty() {
        Vec::new()
    } else {
        vs.members.iter().map(|m| ctx.has_own_session(m)).collect()
    };
    let owner = vs
        .members
        .iter()
        .find_map(|m| list_owner(&m.server, &ctx.client));
    let key = (kind, view, owner);
    if let Some((g, m)) = vs.merged.entries.lock().expect("merged lock").get(&key)
        && *g == gens
        && m.failures.is_empty()
    {
        return m.clone();
    }
    let clients: Vec<ClientContext> = vs.members.iter().map(|m| ctx.for_member(m)).collect();
    let fetches = vs
        .members
        .iter()
        .zip(&clients)
        .map(|(m, c)| server_list(&m.server, kind, c));
    let lists = futures::future::join_all(fetches).await;
    let mut out = Merged::default();
    for (idx, (member, list)) in vs.members.iter().zip(lists).enumerate() {
        let server = &member.server.config.name;
        let list = match list {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(virtual_server = %vs.name, server = %server, error = %crate::observe::shown(&e), "member list unavailable; its items are missing");
                out.failures.push((server.clone(), e.clone()));
                continue;
            }
        };
        for item in list.iter() {
            let key_field = if matches!(kind, ListKind::Resources) {
                "uri"
            } else if matches!(kind, ListKind::ResourceTemplates) {
                "uriTemplate"
            } else {
                "name"
            };
            let Some(original) = item.get(key_field).and_then(Value::as_str) else {
                continue;
            };
            let (exposed, def) = match kind {
                ListKind::Tools => {
                    let Some(exposed) = member.config.exposed_name(original) else {
                        continue;
                    };
                    let mut def = item.clone();
                    def["name"] = Value::from(exposed.as_str());
                    if let Some(d) = member.config.description_override(original) {
                        def["description"] = Value::from(d);
                    }
                    (exposed, def)
                }
                ListKind::Prompts => {
                    let exposed = format!(
                        "{}{}",
                        member.config.prefix.as_deref().unwrap_or(""),
                        original
                    );
                    let mut def = item.clone();
                    def["name"] = Value::from(exposed.as_str());
                    (exposed, def)
                }
                ListKind::Resources | ListKind::ResourceTemplates => {
                    (original.to_string(), item.clone())
                }
            };
            if let Some(prev) = out.routes.get(&exposed) {
                let first = &vs.members[prev.member].server.config.name;
                tracing::warn!(virtual_server = %vs.name, name = %crate::observe::shown(&exposed), kept = %first, dropped = %server, "two members expose the same name; the first include wins");
                crate::metrics::NAME_CONFLICTS.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            out.routes.insert(
                exposed,
                Route {
                    member: idx,
                    original: original.to_string(),
                    item: out.items.len(),
                },
            );
            out.hashes.push(definition_hash(&def));
            out.items.push(def);
        }
    }
    let out = Arc::new(out);
    vs.merged
        .entries
        .lock()
        .expect("merged lock")
        .insert(key, (gens, out.clone()));
    out
}

/// Finds the member serving a resource URI: exact match in a member's resource list, else the
/// first member with a template whose literal prefix matches.
pub async fn route_resource(vs: &VirtualServer, uri: &str, ctx: &CallCtx) -> Option<usize> {
    let resources = merged(vs, ListKind::Resources, ctx).await;
    if let Some(r) = resources.routes.get(uri) {
        return Some(r.member);
    }
    let templates = merged(vs, ListKind::ResourceTemplates, ctx).await;
    let mut best: Option<(usize, usize)> = None;
    for (template, route) in &templates.routes {
        let literal = template.split('{').next().unwrap_or("");
        if uri.starts_with(literal) && best.is_none_or(|(len, _)| literal.len() > len) {
            best = Some((literal.len(), route.member));
        }
    }
    best.map(|(_, m)| m)
        .or(if vs.members.len() == 1 { Some(0) } else { None })
}
