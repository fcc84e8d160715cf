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

/// The Cedar request and entities for `req`; `arguments` false leaves `context.arguments`
/// empty (no policy reads it, so converting it would be wasted work).
pub fn build(
    names: &Names,
    req: &PolicyRequest,
    arguments: bool,
) -> Result<(Request, Entities), BuildFailure> {
    let p = &req.principal;
    let ptype = match p.kind {
        PrincipalKind::User => &names.user,
        PrincipalKind::Workload => &names.workload,
    };
    let principal = EntityUid::from_type_name_and_id(ptype.clone(), EntityId::new(&p.sub));
    let set = |v: &[String]| {
        RestrictedExpression::new_set(
            v.iter()
                .map(|s| RestrictedExpression::new_string(s.clone())),
        )
    };
    let str = |s: &str| RestrictedExpression::new_string(s.to_string());
    let pattrs = HashMap::from([
        ("sub".to_string(), str(&p.sub)),
        ("email".to_string(), str(&p.email)),
        ("groups".to_string(), set(&p.groups)),
        ("roles".to_string(), set(&p.roles)),
        ("tenant".to_string(), str(&p.tenant)),
        ("issuer".to_string(), str(&p.issuer)),
        ("scopes".to_string(), set(&p.scopes)),
        ("client_id".to_string(), str(&p.client_id)),
    ]);
    let r = &req.resource;
    let resource =
        EntityUid::from_type_name_and_id(names.item_type(r.kind).clone(), EntityId::new(r.id()));
    let rattrs = HashMap::from([
        ("name".to_string(), str(&r.name)),
        ("server".to_string(), str(&r.server)),
        ("virtual_server".to_string(), str(&r.virtual_server)),
        ("operation".to_string(), str(r.operation.as_str())),
        ("annotations".to_string(), annotations(&r.annotations)),
    ]);
    let parents = HashSet::from([
        names.server(&r.server),
        names.virtual_server(&r.virtual_server),
    ]);
    let entities = [
        Entity::new(principal.clone(), pattrs, HashSet::new()).map_err(|e| e.to_string())?,
        Entity::new(resource.clone(), rattrs, parents).map_err(|e| e.to_string())?,
    ];
    let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
    let c = &req.context;
    let args = if arguments {
        json_to_cedar(&c.arguments)
    } else {
        RestrictedExpression::new_record([]).expect("an empty record")
    };
    let client = RestrictedExpression::new_record([
        ("name".to_string(), str(&c.client.name)),
        ("version".to_string(), str(&c.client.version)),
    ])
    .expect("distinct keys");
    let context = Context::from_pairs([
        ("arguments".to_string(), args),
        ("client".to_string(), client),
        (
            "source_ip".to_string(),
            RestrictedExpression::new_ip(&c.source_ip),
        ),
        (
            "time".to_string(),
            RestrictedExpression::new_datetime(&c.time),
        ),
        ("protocol_version".to_string(), str(&c.protocol_version)),
    ])
    .map_err(|e| format!("context: {}", crate::diagnostic_message(&e)))?;
    let request = Request::new(
        principal,
        names.action(req.action).clone(),
        resource,
        context,
        None,
    )
    .map_err(|e| e.to_string())?;
    Ok((request, entities))
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
