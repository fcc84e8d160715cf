//! A [`PolicyRequest`] as Cedar entities, request and context.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use serde_json::Value;

use crate::request::{Action, ItemKind, PolicyRequest, PrincipalKind};

/// Entity type names and action ids, parsed once.
#[derive(Debug, Clone)]
pub struct Names {
    user: EntityTypeName,
    workload: EntityTypeName,
    tool: EntityTypeName,
    resource: EntityTypeName,
    prompt: EntityTypeName,
    server: EntityTypeName,
    virtual_server: EntityTypeName,
    actions: [EntityUid; 4],
}

fn type_name(name: &str) -> EntityTypeName {
    EntityTypeName::from_str(name).expect("a valid built-in entity type name")
}

impl Default for Names {
    fn default() -> Self {
        let action = type_name("Gatehouse::Action");
        Names {
            user: type_name("Gatehouse::User"),
            workload: type_name("Gatehouse::Workload"),
            tool: type_name("Gatehouse::Tool"),
            resource: type_name("Gatehouse::Resource"),
            prompt: type_name("Gatehouse::Prompt"),
            server: type_name("Gatehouse::Server"),
            virtual_server: type_name("Gatehouse::VirtualServer"),
            actions: Action::ALL.map(|a| {
                EntityUid::from_type_name_and_id(action.clone(), EntityId::new(a.as_str()))
            }),
        }
    }
}

impl Names {
    /// The uid of `action`.
    pub fn action(&self, action: Action) -> &EntityUid {
        &self.actions[action.index()]
    }

    /// The action a uid names, if it is one of Gatehouse's.
    pub fn action_of(&self, uid: &EntityUid) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| self.actions[a.index()] == *uid)
    }

    /// The entity type of an item kind.
    pub fn item_type(&self, kind: ItemKind) -> &EntityTypeName {
        match kind {
            ItemKind::Tool => &self.tool,
            ItemKind::Resource => &self.resource,
            ItemKind::Prompt => &self.prompt,
        }
    }

    /// The uid of the backend server `name`.
    pub fn server(&self, name: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.server.clone(), EntityId::new(name))
    }

    /// The uid of the virtual server `name`.
    pub fn virtual_server(&self, name: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.virtual_server.clone(), EntityId::new(name))
    }
}

/// Why a request could not be put to Cedar.
pub type BuildFailure = String;

/// Which attributes the policy set can read. Cedar reads an attribute only by its literal
/// name, so an attribute whose name appears nowhere in the policies is never read and need not
/// be built (building each costs an evaluation).
#[derive(Debug, Clone, Default)]
pub struct Reads {
    words: std::collections::HashSet<String>,
}

impl Reads {
    /// The identifiers and string literals of `texts`.
    pub fn of<'a>(texts: impl IntoIterator<Item = &'a str>) -> Reads {
        let mut words = std::collections::HashSet::new();
        for t in texts {
            for w in t.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if !w.is_empty() {
                    words.insert(w.to_string());
                }
            }
        }
        Reads { words }
    }

    /// True when some policy may read `attr`.
    pub fn reads(&self, attr: &str) -> bool {
        self.words.contains(attr)
    }
}

/// Extension values (`ip(…)`, `datetime(…)`) by their text. Building one from scratch parses
/// the extension's name each time (several µs); the values repeat (a client's address, the
/// current second), so they are built once.
#[derive(Debug, Default)]
pub struct ExtensionValues {
    cache: std::sync::RwLock<HashMap<(bool, String), RestrictedExpression>>,
    /// Whole contexts of requests whose arguments no policy reads.
    contexts: std::sync::RwLock<HashMap<String, Context>>,
}

/// Most cached extension values before the cache starts over.
const MAX_EXTENSION_VALUES: usize = 4096;

impl ExtensionValues {
    fn get(&self, datetime: bool, text: &str) -> RestrictedExpression {
        let key = (datetime, text.to_string());
        if let Some(v) = self.cache.read().expect("extension cache").get(&key) {
            return v.clone();
        }
        let v = if datetime {
            RestrictedExpression::new_datetime(text)
        } else {
            RestrictedExpression::new_ip(text)
        };
        let mut cache = self.cache.write().expect("extension cache");
        if cache.len() >= MAX_EXTENSION_VALUES {
            cache.clear();
        }
        cache.insert(key, v.clone());
        v
    }
}

/// What the entities of a request depend on: the principal and the item as policies see them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntitiesKey {
    principal: crate::request::PrincipalInput,
    kind: crate::request::ItemKind,
    name: String,
    server: String,
    virtual_server: String,
    operation: gatehouse_config::Operation,
    annotations: serde_json::Map<String, Value>,
}

impl EntitiesKey {
    fn of(req: &PolicyRequest) -> EntitiesKey {
        let r = &req.resource;
        EntitiesKey {
            principal: req.principal.clone(),
            kind: r.kind,
            name: r.name.clone(),
            server: r.server.clone(),
            virtual_server: r.virtual_server.clone(),
            operation: r.operation,
            annotations: r.annotations.clone(),
        }
    }

    /// Compares without building a key (lookups allocate nothing).
    fn matches(&self, req: &PolicyRequest) -> bool {
        let r = &req.resource;
        self.principal == req.principal
            && self.kind == r.kind
            && self.name == r.name
            && self.server == r.server
            && self.virtual_server == r.virtual_server
            && self.operation == r.operation
            && self.annotations == r.annotations
    }
}

/// Most cached entity sets before the cache starts over.
const MAX_ENTITY_SETS: usize = 16_384;

/// Everything about a request that depends only on its principal and item, built once.
#[derive(Debug)]
pub struct Prepared {
    principal: EntityUid,
    resource: EntityUid,
    /// The principal and item entities.
    pub entities: Entities,
    /// The policies that can apply, per action (filled on first use).
    pub slices: [std::sync::OnceLock<std::sync::Arc<cedar_policy::PolicySet>>; 4],
    /// Recent verdicts by action and context (only for contexts without arguments: the
    /// verdict is then a function of this entry, the action and the context key).
    decisions: std::sync::Mutex<Vec<(crate::request::Action, String, crate::decision::Verdict)>>,
}

/// Verdicts kept per principal and item (a few seconds × actions × clients).
const MAX_VERDICTS: usize = 16;

impl Prepared {
    /// The verdict decided before for `action` in the context `key`.
    pub fn verdict(
        &self,
        action: crate::request::Action,
        key: &str,
    ) -> Option<crate::decision::Verdict> {
        self.decisions
            .lock()
            .expect("verdict cache")
            .iter()
            .find(|(a, k, _)| *a == action && k == key)
            .map(|(_, _, v)| v.clone())
    }

    /// Remembers a verdict.
    pub fn remember(
        &self,
        action: crate::request::Action,
        key: String,
        verdict: &crate::decision::Verdict,
    ) {
        let mut d = self.decisions.lock().expect("verdict cache");
        if d.len() >= MAX_VERDICTS {
            d.remove(0);
        }
        d.push((action, key, verdict.clone()));
    }
}

type EntityBucket = Vec<(EntitiesKey, std::sync::Arc<Prepared>)>;

/// Entity sets by principal and item. Building one costs more than deciding (Cedar computes
/// the ancestor closure on every `Entities`); a caller calls the same items again and again.
/// Keyed by the full attribute values (hashed with a per-process random key, compared in
/// full), so a changed group membership is a different entry.
#[derive(Debug, Default)]
pub struct EntityCache {
    hasher: std::collections::hash_map::RandomState,
    sets: std::sync::RwLock<HashMap<u64, EntityBucket>>,
}

impl EntityCache {
    fn hash(&self, req: &PolicyRequest) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.hasher.build_hasher();
        let r = &req.resource;
        req.principal.hash(&mut h);
        (r.kind, &r.name, &r.server, &r.virtual_server, r.operation).hash(&mut h);
        for (k, v) in &r.annotations {
            k.hash(&mut h);
            v.to_string().hash(&mut h);
        }
        h.finish()
    }
}

/// What is prepared for the principal and item of `req` (from `cache` when the same
/// principal used the same item before), with only the attributes `reads` names.
pub fn prepare(
    names: &Names,
    req: &PolicyRequest,
    reads: &Reads,
    cache: &EntityCache,
) -> Result<std::sync::Arc<Prepared>, BuildFailure> {
    let hash = cache.hash(req);
    let cached = cache
        .sets
        .read()
        .expect("entity cache")
        .get(&hash)
        .and_then(|bucket| bucket.iter().find(|(k, _)| k.matches(req)))
        .map(|(_, e)| e.clone());
    let prepared = match cached {
        Some(e) => e,
        None => {
            let p = &req.principal;
            let ptype = match p.kind {
                PrincipalKind::User => &names.user,
                PrincipalKind::Workload => &names.workload,
            };
            let principal = EntityUid::from_type_name_and_id(ptype.clone(), EntityId::new(&p.sub));
            let r = &req.resource;
            let resource = EntityUid::from_type_name_and_id(
                names.item_type(r.kind).clone(),
                EntityId::new(r.id()),
            );
            let entities = entities(names, req, reads, &principal, &resource)?;
            let e = std::sync::Arc::new(Prepared {
                principal,
                resource,
                entities,
                slices: Default::default(),
                decisions: Default::default(),
            });
            let mut sets = cache.sets.write().expect("entity cache");
            if sets.len() >= MAX_ENTITY_SETS {
                sets.clear();
            }
            sets.entry(hash)
                .or_default()
                .push((EntitiesKey::of(req), e.clone()));
            e
        }
    };
    Ok(prepared)
}

/// The key of a context no policy reads arguments from (it repeats: same address, second
/// and client), `None` when the arguments are read.
pub fn context_key(req: &PolicyRequest, reads: &Reads) -> Option<String> {
    if reads.reads("arguments") {
        return None;
    }
    let c = &req.context;
    Some(format!(
        "{}|{}|{}|{}|{}",
        c.source_ip, c.time, c.client.name, c.client.version, c.protocol_version
    ))
}

/// The Cedar request for `req` on `prepared`; `key` (from [`context_key`]) reuses a context
/// built before.
pub fn request(
    names: &Names,
    req: &PolicyRequest,
    reads: &Reads,
    extensions: &ExtensionValues,
    prepared: &Prepared,
    key: Option<&str>,
) -> Result<Request, BuildFailure> {
    let context = match key {
        None => context(req, reads, extensions)?,
        Some(key) => {
            let hit = extensions
                .contexts
                .read()
                .expect("context cache")
                .get(key)
                .cloned();
            match hit {
                Some(ctx) => ctx,
                None => {
                    let ctx = context(req, reads, extensions)?;
                    let mut contexts = extensions.contexts.write().expect("context cache");
                    if contexts.len() >= MAX_EXTENSION_VALUES {
                        contexts.clear();
                    }
                    contexts.insert(key.to_string(), ctx.clone());
                    ctx
                }
            }
        }
    };
    Request::new(
        prepared.principal.clone(),
        names.action(req.action).clone(),
        prepared.resource.clone(),
        context,
        None,
    )
    .map_err(|e| e.to_string())
}

/// The context of `req`, with only the fields `reads` names.
fn context(
    req: &PolicyRequest,
    reads: &Reads,
    extensions: &ExtensionValues,
) -> Result<Context, BuildFailure> {
    let str = |s: &str| RestrictedExpression::new_string(s.to_string());
    let c = &req.context;
    let mut context: Vec<(String, RestrictedExpression)> = Vec::with_capacity(5);
    if reads.reads("arguments") {
        context.push(("arguments".into(), json_to_cedar(&c.arguments)));
    }
    if reads.reads("client") {
        let client = RestrictedExpression::new_record([
            ("name".to_string(), str(&c.client.name)),
            ("version".to_string(), str(&c.client.version)),
        ])
        .expect("distinct keys");
        context.push(("client".into(), client));
    }
    if reads.reads("source_ip") {
        context.push(("source_ip".into(), extensions.get(false, &c.source_ip)));
    }
    if reads.reads("time") {
        context.push(("time".into(), extensions.get(true, &c.time)));
    }
    if reads.reads("protocol_version") {
        context.push(("protocol_version".into(), str(&c.protocol_version)));
    }
    Context::from_pairs(context).map_err(|e| format!("context: {}", crate::diagnostic_message(&e)))
}

/// The principal and item entities of `req`.
fn entities(
    names: &Names,
    req: &PolicyRequest,
    reads: &Reads,
    principal: &EntityUid,
    resource: &EntityUid,
) -> Result<Entities, BuildFailure> {
    let p = &req.principal;
    let set = |v: &[String]| {
        RestrictedExpression::new_set(
            v.iter()
                .map(|s| RestrictedExpression::new_string(s.clone())),
        )
    };
    let str = |s: &str| RestrictedExpression::new_string(s.to_string());
    let mut pattrs = HashMap::new();
    let put = |map: &mut HashMap<String, RestrictedExpression>,
               name: &str,
               value: &dyn Fn() -> RestrictedExpression| {
        if reads.reads(name) {
            map.insert(name.to_string(), value());
        }
    };
    put(&mut pattrs, "sub", &|| str(&p.sub));
    put(&mut pattrs, "email", &|| str(&p.email));
    put(&mut pattrs, "groups", &|| set(&p.groups));
    put(&mut pattrs, "roles", &|| set(&p.roles));
    put(&mut pattrs, "tenant", &|| str(&p.tenant));
    put(&mut pattrs, "issuer", &|| str(&p.issuer));
    put(&mut pattrs, "scopes", &|| set(&p.scopes));
    put(&mut pattrs, "client_id", &|| str(&p.client_id));
    let r = &req.resource;
    let mut rattrs = HashMap::new();
    put(&mut rattrs, "name", &|| str(&r.name));
    put(&mut rattrs, "server", &|| str(&r.server));
    put(&mut rattrs, "virtual_server", &|| str(&r.virtual_server));
    put(&mut rattrs, "operation", &|| str(r.operation.as_str()));
    put(&mut rattrs, "annotations", &|| annotations(&r.annotations));
    let parents = HashSet::from([
        names.server(&r.server),
        names.virtual_server(&r.virtual_server),
    ]);
    let entities = [
        Entity::new(principal.clone(), pattrs, HashSet::new()).map_err(|e| e.to_string())?,
        Entity::new(resource.clone(), rattrs, parents).map_err(|e| e.to_string())?,
    ];
    Entities::from_entities(entities, None).map_err(|e| e.to_string())
}

/// MCP tool annotations with the types the schema declares; anything else is left out.
fn annotations(a: &serde_json::Map<String, Value>) -> RestrictedExpression {
    let mut out: Vec<(String, RestrictedExpression)> = Vec::new();
    if let Some(Value::String(t)) = a.get("title") {
        out.push(("title".into(), RestrictedExpression::new_string(t.clone())));
    }
    for hint in [
        "readOnlyHint",
        "destructiveHint",
        "idempotentHint",
        "openWorldHint",
    ] {
        if let Some(Value::Bool(b)) = a.get(hint) {
            out.push((hint.into(), RestrictedExpression::new_bool(*b)));
        }
    }
    RestrictedExpression::new_record(out).expect("distinct keys")
}

/// A normalised argument document as a Cedar value (sets for arrays, records for objects).
fn json_to_cedar(v: &Value) -> RestrictedExpression {
    match v {
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_string(n.to_string()),
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => RestrictedExpression::new_set(items.iter().map(json_to_cedar)),
        Value::Object(m) => {
            RestrictedExpression::new_record(m.iter().map(|(k, v)| (k.clone(), json_to_cedar(v))))
                .expect("JSON object keys are distinct")
        }
        Value::Null => RestrictedExpression::new_record([]).expect("an empty record"),
    }
}
