//! The request a policy decides on: one document, the same for every engine (Cedar builds its
//! entities from it, Rego gets it as `input`, an external OPA gets it as `input` too), and the
//! shape of the test cases in `*.tests.yaml`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who asks: the authenticated principal, or `User::"anonymous"` on an endpoint without auth.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalInput {
    /// `User` or `Workload`.
    #[serde(rename = "type", default)]
    pub kind: PrincipalKind,
    /// Subject (`sub`); the entity id.
    pub sub: String,
    /// E-mail, empty when unknown.
    #[serde(default)]
    pub email: String,
    /// Groups from the token.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Roles from the token.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tenant, empty when unknown.
    #[serde(default)]
    pub tenant: String,
    /// The token's issuer, empty when unauthenticated.
    #[serde(default)]
    pub issuer: String,
    /// Scopes the token granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The OAuth client the token was issued to, empty when unknown.
    #[serde(default)]
    pub client_id: String,
}

impl PrincipalInput {
    /// The principal of an unauthenticated endpoint.
    pub fn anonymous() -> PrincipalInput {
        PrincipalInput {
            kind: PrincipalKind::User,
            sub: "anonymous".into(),
            email: String::new(),
            groups: Vec::new(),
            roles: Vec::new(),
            tenant: String::new(),
            issuer: String::new(),
            scopes: Vec::new(),
            client_id: String::new(),
        }
    }
}

/// The entity type of a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PrincipalKind {
    /// A person.
    #[default]
    User,
    /// A service.
    Workload,
}

impl PrincipalKind {
    /// The Cedar entity type name (without namespace).
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "User",
            PrincipalKind::Workload => "Workload",
        }
    }
}

/// What the principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `tools/call` on a tool.
    CallTool,
    /// `resources/read` (and subscribe) on a resource.
    ReadResource,
    /// `prompts/get` on a prompt.
    GetPrompt,
    /// `completion/complete` on the prompt or resource it completes.
    Complete,
}

impl Action {
    /// Every action, in a fixed order.
    pub const ALL: [Action; 4] = [
        Action::CallTool,
        Action::ReadResource,
        Action::GetPrompt,
        Action::Complete,
    ];

    /// The action's id: `Gatehouse::Action::"<id>"` in Cedar, `input.action` in Rego.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CallTool => "call_tool",
            Action::ReadResource => "read_resource",
            Action::GetPrompt => "get_prompt",
            Action::Complete => "complete",
        }
    }

    /// Index in [`Action::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The kind of item acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ItemKind {
    /// A tool.
    Tool,
    /// A resource (by URI).
    Resource,
    /// A prompt.
    Prompt,
}

impl ItemKind {
    /// The Cedar entity type name (without namespace).
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Tool => "Tool",
            ItemKind::Resource => "Resource",
            ItemKind::Prompt => "Prompt",
        }
    }
}

/// The item acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceInput {
    /// `Tool`, `Resource` or `Prompt`.
    #[serde(rename = "type")]
    pub kind: ItemKind,
    /// The name clients see (for resources, the URI).
    pub name: String,
    /// The backend server (`servers[].name`) that owns it.
    pub server: String,
    /// The endpoint (`virtual_servers[].name`) the request came through.
    pub virtual_server: String,
    /// `read`, `write`, `delete` or `execute`.
    #[serde(default = "default_operation")]
    pub operation: gatehouse_config::Operation,
    /// The server's annotations, when the server is trusted; else empty.
    #[serde(default)]
    pub annotations: Map<String, Value>,
}

fn default_operation() -> gatehouse_config::Operation {
    gatehouse_config::Operation::Write
}

impl ResourceInput {
    /// The entity id: `<virtual server>/<name>`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.virtual_server, self.name)
    }
}

/// The self-reported client.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientInput {
    /// `clientInfo.name`, empty when not sent.
    #[serde(default)]
    pub name: String,
    /// `clientInfo.version`, empty when not sent.
    #[serde(default)]
    pub version: String,
}

/// The circumstances of the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextInput {
    /// The call's arguments, normalised by [`normalize_arguments`].
    #[serde(default = "empty_object")]
    pub arguments: Value,
    /// The client's name and version.
    #[serde(default)]
    pub client: ClientInput,
    /// The peer address of the HTTP connection.
    #[serde(default = "default_ip")]
    pub source_ip: String,
    /// When, as RFC 3339 UTC (`2026-11-26T14:00:00Z`).
    #[serde(default = "default_time")]
    pub time: String,
    /// The MCP protocol version the client speaks.
    #[serde(default)]
    pub protocol_version: String,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}
fn default_ip() -> String {
    "127.0.0.1".into()
}
fn default_time() -> String {
    crate::time::rfc3339(std::time::SystemTime::now())
}

impl Default for ContextInput {
    fn default() -> Self {
        ContextInput {
            arguments: empty_object(),
            client: ClientInput::default(),
            source_ip: default_ip(),
            time: default_time(),
            protocol_version: String::new(),
        }
    }
}

/// One authorization question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// Who.
    pub principal: PrincipalInput,
    /// Does what.
    pub action: Action,
    /// To which item.
    pub resource: ResourceInput,
    /// In which circumstances.
    #[serde(default)]
    pub context: ContextInput,
}

/// Deepest argument document policies see.
pub const MAX_ARGUMENT_DEPTH: usize = 32;
/// Most values (objects, arrays and scalars) in an argument document policies see.
pub const MAX_ARGUMENT_NODES: usize = 10_000;

/// Why a call's arguments cannot be shown to policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentsError {
    /// Nested deeper than [`MAX_ARGUMENT_DEPTH`].
    #[error("arguments are nested deeper than {MAX_ARGUMENT_DEPTH} levels")]
    TooDeep,
    /// More than [`MAX_ARGUMENT_NODES`] values.
    #[error("arguments hold more than {MAX_ARGUMENT_NODES} values")]
    TooLarge,
    /// Not an object.
    #[error("arguments are not an object")]
    NotAnObject,
}

/// The arguments as every engine sees them: numbers that are not 64-bit integers become
/// strings (Cedar has only 64-bit integers, and both engines must see the same document),
/// `null` members are left out (Cedar has no null). Bounded, so a huge document costs a
/// clear denial rather than unbounded evaluation.
pub fn normalize_arguments(arguments: Option<&Value>) -> Result<Value, ArgumentsError> {
    let Some(arguments) = arguments else {
        return Ok(empty_object());
    };
    match arguments {
        Value::Null => Ok(empty_object()),
        Value::Object(_) => {
            let mut budget = MAX_ARGUMENT_NODES;
            normalize(arguments, 0, &mut budget)
        }
        _ => Err(ArgumentsError::NotAnObject),
    }
}

fn normalize(v: &Value, depth: usize, budget: &mut usize) -> Result<Value, ArgumentsError> {
    if depth > MAX_ARGUMENT_DEPTH {
        return Err(ArgumentsError::TooDeep);
    }
    *budget = budget.checked_sub(1).ok_or(ArgumentsError::TooLarge)?;
    Ok(match v {
        Value::Number(n) if n.as_i64().is_some() => v.clone(),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|i| !i.is_null())
                .map(|i| normalize(i, depth + 1, budget))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(members) => {
            let mut out = Map::new();
            for (k, m) in members {
                if !m.is_null() {
                    out.insert(k.clone(), normalize(m, depth + 1, budget)?);
                }
            }
            Value::Object(out)
        }
        _ => v.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_normalised_for_both_engines() {
        let v = normalize_arguments(Some(&json!({
            "n": 3, "big": 18446744073709551615u64, "f": 1.5, "gone": null,
            "list": [1, null, {"x": 2.0}], "s": "x"
        })))
        .unwrap();
        assert_eq!(
            v,
            json!({"n": 3, "big": "18446744073709551615", "f": "1.5",
                   "list": [1, {"x": "2.0"}], "s": "x"})
        );
        assert_eq!(normalize_arguments(None).unwrap(), json!({}));
        assert_eq!(
            normalize_arguments(Some(&json!([1]))),
            Err(ArgumentsError::NotAnObject)
        );
    }

    #[test]
    fn huge_or_deep_arguments_are_refused() {
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({ "a": deep });
        }
        assert_eq!(
            normalize_arguments(Some(&deep)),
            Err(ArgumentsError::TooDeep)
        );
        let wide = json!({ "a": vec![0; MAX_ARGUMENT_NODES] });
        assert_eq!(
            normalize_arguments(Some(&wide)),
            Err(ArgumentsError::TooLarge)
        );
    }
}
