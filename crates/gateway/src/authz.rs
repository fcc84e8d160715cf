//! Authorization: every use of an item — calling a tool, reading a resource, getting a prompt,
//! completing an argument — is put to the snapshot's policies, and lists show only what the
//! caller may use. A denial looks exactly like a missing item (no existence leak); the reason
//! goes to the decision log, never to the client.

use std::sync::Arc;

use gatehouse_config::Operation;
use gatehouse_policy::{
    Action, ClientInput, ContextInput, Decision, ItemKind, Policies, PolicyRequest, PrincipalInput,
    PrincipalKind, ResourceInput,
};
use serde_json::{Map, Value};

use crate::catalog::{ListKind, Merged};
use crate::context::CallCtx;
use crate::snapshot::{Member, VirtualServer};

/// Where decisions go: the audit pipeline's entry point. Until the audit journal exists,
/// [`LogDecisions`] writes each as a structured log line.
pub trait DecisionLog: Send + Sync + std::fmt::Debug {
    /// Records one decision about one request.
    fn record(&self, record: &DecisionRecord<'_>);
}

/// One decision with what it was about.
#[derive(Debug)]
pub struct DecisionRecord<'a> {
    /// The question.
    pub request: &'a PolicyRequest,
    /// The answer.
    pub decision: &'a Decision,
}

/// Writes each decision as a log line with target `gatehouse::decision`: denials at `info`,
/// allowed requests at `debug` (`--log info,gatehouse::decision=debug` shows every decision).
/// A line per allowed call costs more CPU than the decision itself (see docs/performance.md);
/// the audit journal is the durable, complete record.
#[derive(Debug, Default)]
pub struct LogDecisions;

impl DecisionLog for LogDecisions {
    fn record(&self, r: &DecisionRecord<'_>) {
        let d = r.decision;
        if d.allowed {
            if tracing::enabled!(target: "gatehouse::decision", tracing::Level::DEBUG) {
                log_decision(r, tracing::Level::DEBUG);
            }
        } else {
            log_decision(r, tracing::Level::INFO);
        }
    }
}

fn log_decision(r: &DecisionRecord<'_>, level: tracing::Level) {
    let d = r.decision;
    let q = r.request;
    let obligations: Vec<String> = d
        .obligations
        .iter()
        .map(|o| format!("{}:{}", o.kind, o.target))
        .collect();
    macro_rules! line {
        ($lvl:expr) => {
            tracing::event!(
                target: "gatehouse::decision",
                $lvl,
                allowed = d.allowed,
                principal = %format_args!("{}::{:?}", q.principal.kind.as_str(), q.principal.sub),
                action = q.action.as_str(),
                resource = %crate::observe::shown(format_args!("{}::{:?}", q.resource.kind.as_str(), q.resource.id())),
                server = %q.resource.server,
                operation = q.resource.operation.as_str(),
                policies = %d.policies.join(","),
                reason = d.reason.as_deref().unwrap_or(""),
                obligations = %obligations.join(","),
                policy_version = %d.version,
                engine = d.engine,
                latency_us = d.latency.as_micros() as u64,
                "policy decision"
            )
        };
    }
    if level == tracing::Level::DEBUG {
        line!(tracing::Level::DEBUG);
    } else {
        line!(tracing::Level::INFO);
    }
}

/// The policies of a snapshot and where their decisions go.
#[derive(Debug, Clone)]
pub struct Authz {
    /// The active policy set.
    pub policies: Arc<Policies>,
    /// The decision log.
    pub log: Arc<dyn DecisionLog>,
}

/// An item about to be used.
pub struct Item<'a> {
    /// Tool, resource or prompt.
    pub kind: ItemKind,
    /// The name clients use (a URI for resources).
    pub name: &'a str,
    /// The member serving it.
    pub member: &'a Member,
    /// The server's own name for it.
    pub original: &'a str,
    /// Its definition as listed, when known (for annotations).
    pub definition: Option<&'a Value>,
}

/// Loads and tests the policy set of `config`; `None` without a `policies` block. Logs what
/// is active (and warns when nothing is authorized or everything is denied).
pub async fn load(
    config: &gatehouse_config::Config,
) -> Result<Option<Arc<Policies>>, gatehouse_policy::PolicyError> {
    let Some(pc) = &config.policies else {
        tracing::warn!(
            "authorization is off: the configuration has no `policies` block, so every caller that passes authentication may use every tool, resource and prompt"
        );
        return Ok(None);
    };
    let policies = Policies::load(pc).await?;
    for w in &policies.warnings {
        tracing::warn!(warning = %w, "policy validation warning");
    }
    if policies.is_empty() {
        tracing::warn!(
            engine = policies.engine_name(),
            "the policy set is empty: every tool call, resource read and prompt is denied"
        );
    }
    tracing::info!(
        engine = policies.engine_name(),
        policies = policies.len(),
        version = %policies.version(),
        "policy set active"
    );
    Ok(Some(Arc::new(policies)))
}

/// A principal as policies see it.
pub fn principal_input(p: &gatehouse_identity::Principal) -> PrincipalInput {
    use gatehouse_identity::PrincipalKind as K;
    PrincipalInput {
        kind: match p.kind {
            K::Workload => PrincipalKind::Workload,
            _ => PrincipalKind::User,
        },
        sub: p.subject.clone(),
        email: p.email.clone().unwrap_or_default(),
        groups: p.groups.clone(),
        roles: p.roles.clone(),
        tenant: p.tenant.clone().unwrap_or_default(),
        issuer: p.issuer.clone(),
        scopes: p.scopes.clone(),
        client_id: p.client_id.clone().unwrap_or_default(),
    }
}

/// What a tool does: the admin's `operations` entry, else (only for servers whose annotations
/// are trusted) `readOnlyHint` → read, `destructiveHint` → delete; otherwise write. Resources
/// and prompts are read.
pub fn operation(item: &Item<'_>) -> Operation {
    if item.kind != ItemKind::Tool {
        return Operation::Read;
    }
    let server = &item.member.server.config;
    if let Some(op) = server.operations.get(item.original) {
        return *op;
    }
    if server.trust_annotations
        && let Some(a) = item.definition.and_then(|d| d.get("annotations"))
    {
        if a.get("readOnlyHint") == Some(&Value::Bool(true)) {
            return Operation::Read;
        }
        if a.get("destructiveHint") == Some(&Value::Bool(true)) {
            return Operation::Delete;
        }
    }
    Operation::Write
}

fn request(
    vs: &VirtualServer,
    ctx: &CallCtx,
    action: Action,
    item: &Item<'_>,
    arguments: Value,
) -> PolicyRequest {
    PolicyRequest {
        principal: principal_input(&ctx.client.caller.principal),
        action,
        resource: resource(vs, item),
        context: context(ctx, arguments),
    }
}

/// The item as policies see it.
fn resource(vs: &VirtualServer, item: &Item<'_>) -> ResourceInput {
    let annotations = if item.member.server.config.trust_annotations {
        item.definition
            .and_then(|d| d.get("annotations"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    } else {
        Map::new()
    };
    ResourceInput {
        kind: item.kind,
        name: item.name.to_string(),
        server: item.member.server.config.name.clone(),
        virtual_server: vs.name.clone(),
        operation: operation(item),
        annotations,
    }
}

/// The circumstances of the caller's request as policies see them.
fn context(ctx: &CallCtx, arguments: Value) -> ContextInput {
    let info = &ctx.client.client_info;
    let text = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    ContextInput {
        arguments,
        client: ClientInput {
            name: text("name"),
            version: text("version"),
        },
        source_ip: ctx
            .client
            .caller
            .source_ip
            .map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string()),
        time: gatehouse_policy::time::rfc3339(std::time::SystemTime::now()),
        protocol_version: ctx.protocol_version.clone(),
    }
}

/// Decides one use of `item` and logs the decision; true when allowed (always, without
/// policies).
pub async fn allows(
    vs: &VirtualServer,
    ctx: &CallCtx,
    action: Action,
    item: &Item<'_>,
    arguments: Option<&Value>,
) -> bool {
    let Some(authz) = &vs.authz else {
        return true;
    };
    let (req, decision) = match gatehouse_policy::normalize_arguments(arguments) {
        Ok(args) => {
            let req = request(vs, ctx, action, item, args);
            let d = authz.policies.decide(&req).await;
            (req, d)
        }
        Err(e) => {
            let req = request(vs, ctx, action, item, Value::Object(Map::new()));
            let d = authz
                .policies
                .refuse(format!("{e}; denied without evaluation"));
            (req, d)
        }
    };
    authz.log.record(&DecisionRecord {
        request: &req,
        decision: &decision,
    });
    crate::observe::decision(&decision);
    decision.allowed
}

/// The action that decides whether an item of a list is shown.
fn list_action(kind: ListKind) -> (Action, ItemKind) {
    match kind {
        ListKind::Tools => (Action::CallTool, ItemKind::Tool),
        ListKind::Prompts => (Action::GetPrompt, ItemKind::Prompt),
        ListKind::Resources | ListKind::ResourceTemplates => {
            (Action::ReadResource, ItemKind::Resource)
        }
    }
}

/// Positions in `merged.items` the caller may see: a tool iff it may call it, a resource (or
/// template) iff it may read it, a prompt iff it may get it. One summary line per list goes to
/// the log at debug level (the item decisions themselves are not calls).
pub async fn visible(
    vs: &VirtualServer,
    ctx: &CallCtx,
    kind: ListKind,
    merged: &Merged,
) -> Option<Vec<usize>> {
    let authz = vs.authz.as_ref()?;
    let (action, item_kind) = list_action(kind);
    let mut owners: Vec<Option<(&str, &crate::catalog::Route)>> = vec![None; merged.items.len()];
    for (name, route) in &merged.routes {
        if let Some(slot) = owners.get_mut(route.item) {
            *slot = Some((name.as_str(), route));
        }
    }
    // One request for the whole list: only the item changes from one decision to the next.
    let mut req: Option<PolicyRequest> = None;
    let mut shown = Vec::with_capacity(merged.items.len());
    for (i, owner) in owners.into_iter().enumerate() {
        let Some((name, route)) = owner else { continue };
        let item = Item {
            kind: item_kind,
            name,
            member: &vs.members[route.member],
            original: &route.original,
            definition: merged.items.get(i),
        };
        let req = match &mut req {
            Some(r) => {
                r.resource = resource(vs, &item);
                r
            }
            None => req.insert(request(vs, ctx, action, &item, Value::Object(Map::new()))),
        };
        if authz.policies.decide(req).await.allowed {
            shown.push(i);
        }
    }
    tracing::debug!(
        target: "gatehouse::decision",
        virtual_server = %vs.name,
        principal = %ctx.client.caller.principal.key(),
        list = kind.method(),
        shown = shown.len(),
        hidden = merged.items.len() - shown.len(),
        policy_version = %authz.policies.version(),
        "list filtered by policy"
    );
    Some(shown)
}
