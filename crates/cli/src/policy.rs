//! `gatehouse policy …`: run a policy set's tests, explain a decision, print the schema.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use gatehouse_policy::{
    Action, ContextInput, ItemKind, Policies, PolicyRequest, PrincipalInput, PrincipalKind,
    ResourceInput,
};

/// Loads the `policies` block of the config at `path`.
fn policies_config(path: &Path) -> anyhow::Result<gatehouse_config::PoliciesConfig> {
    let config = gatehouse_config::load_file(path)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    config.policies.with_context(|| {
        format!(
            "{} has no `policies` block: authorization is off, there is nothing to test",
            path.display()
        )
    })
}

/// `policy test`: compiles the set, runs every `*.tests.yaml` case, prints a table; an error
/// when a case fails or nothing could be tested.
pub async fn test(config: &Path) -> anyhow::Result<bool> {
    let pc = policies_config(config)?;
    let policies = Policies::compile(&pc).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &policies.warnings {
        eprintln!("warning: {w}");
    }
    let report = policies
        .run_tests()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if report.outcomes.is_empty() {
        bail!("no test cases: add a *.tests.yaml file next to the policies (see docs/policy.md)");
    }
    print!("{}", report.table());
    println!(
        "policy set {} ({}, {} {})",
        policies.version(),
        policies.engine_name(),
        policies.len(),
        if policies.engine_name() == "cedar" {
            "policies"
        } else {
            "modules"
        }
    );
    Ok(report.failed() == 0)
}

/// What `policy explain` is asked.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Configuration file (YAML) with a `policies` block.
    #[arg(long, short)]
    pub config: PathBuf,
    /// A request as YAML or JSON (the shape of a test case without name and expect);
    /// the flags below are ignored when it is given.
    #[arg(long)]
    pub request: Option<PathBuf>,
    /// The principal's subject.
    #[arg(long, default_value = "anonymous")]
    pub sub: String,
    /// The principal is a workload (default: a user).
    #[arg(long)]
    pub workload: bool,
    /// A group of the principal (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// A role of the principal (repeatable).
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// call_tool, read_resource, get_prompt or complete.
    #[arg(long, default_value = "call_tool")]
    pub action: String,
    /// The item's exposed name (a URI for resources).
    #[arg(long)]
    pub name: Option<String>,
    /// The backend server owning the item.
    #[arg(long)]
    pub server: Option<String>,
    /// The virtual server the request comes through.
    #[arg(long, default_value = "default")]
    pub virtual_server: String,
    /// read, write, delete or execute.
    #[arg(long, default_value = "write")]
    pub operation: String,
    /// The call's arguments as JSON.
    #[arg(long, default_value = "{}")]
    pub arguments: String,
    /// The caller's address.
    #[arg(long, default_value = "127.0.0.1")]
    pub source_ip: String,
}

fn request(args: &ExplainArgs) -> anyhow::Result<PolicyRequest> {
    if let Some(path) = &args.request {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut req: PolicyRequest =
            gatehouse_config::load_yaml(&text, path).map_err(|e| anyhow::anyhow!("{e}"))?;
        req.context.arguments =
            gatehouse_policy::normalize_arguments(Some(&req.context.arguments))?;
        return Ok(req);
    }
    let action: Action = serde_json::from_value(serde_json::Value::from(args.action.as_str()))
        .map_err(|_| {
            anyhow::anyhow!(
                "--action {:?}: expected call_tool, read_resource, get_prompt or complete",
                args.action
            )
        })?;
    let operation = serde_json::from_value(serde_json::Value::from(args.operation.as_str()))
        .map_err(|_| {
            anyhow::anyhow!(
                "--operation {:?}: expected read, write, delete or execute",
                args.operation
            )
        })?;
    let (Some(name), Some(server)) = (&args.name, &args.server) else {
        bail!(
            "give --name and --server (the item and the backend server owning it), or --request FILE"
        );
    };
    let arguments: serde_json::Value = serde_json::from_str(&args.arguments)
        .with_context(|| format!("--arguments {:?} is not JSON", args.arguments))?;
    Ok(PolicyRequest {
        principal: PrincipalInput {
            kind: if args.workload {
                PrincipalKind::Workload
            } else {
                PrincipalKind::User
            },
            sub: args.sub.clone(),
            groups: args.groups.clone(),
            roles: args.roles.clone(),
            ..PrincipalInput::anonymous()
        },
        action,
        resource: ResourceInput {
            kind: match action {
                Action::CallTool => ItemKind::Tool,
                Action::ReadResource => ItemKind::Resource,
                Action::GetPrompt | Action::Complete => ItemKind::Prompt,
            },
            name: name.clone(),
            server: server.clone(),
            virtual_server: args.virtual_server.clone(),
            operation,
            annotations: Default::default(),
        },
        context: ContextInput {
            arguments: gatehouse_policy::normalize_arguments(Some(&arguments))?,
            source_ip: args.source_ip.clone(),
            ..ContextInput::default()
        },
    })
}

/// `policy explain`: the decision on one request, the policies that made it with their file
/// and line, and (Rego) every rule of `package gatehouse` as evaluated.
pub async fn explain(args: &ExplainArgs) -> anyhow::Result<bool> {
    let pc = policies_config(&args.config)?;
    let policies = Policies::compile(&pc).map_err(|e| anyhow::anyhow!("{e}"))?;
    let req = request(args)?;
    let d = policies.decide(&req).await;
    println!(
        "{} — {} {} {} on {}::{:?} (server {}, operation {})",
        if d.allowed { "ALLOW" } else { "DENY" },
        req.principal.kind.as_str(),
        req.principal.sub,
        req.action.as_str(),
        req.resource.kind.as_str(),
        req.resource.id(),
        req.resource.server,
        req.resource.operation.as_str(),
    );
    if d.policies.is_empty() {
        println!("decided by: no policy");
    } else {
        println!("decided by:");
        for id in &d.policies {
            match policies.policy_info(id) {
                Some(i) => println!("  {} {id} ({}:{})", i.effect, i.file, i.line),
                None => println!("  {id}"),
            }
        }
    }
    if let Some(r) = &d.reason {
        println!("reason: {r}");
    }
    for o in &d.obligations {
        println!("obligation: {} {}", o.kind, o.target);
    }
    if let Some(rules) = policies.rego_rules(&req) {
        match rules {
            Ok(v) => println!(
                "package gatehouse evaluated:\n{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ),
            Err(e) => println!("package gatehouse could not be evaluated: {e}"),
        }
    }
    println!(
        "policy set {} ({}), decided in {} µs",
        d.version,
        d.engine,
        d.latency.as_micros()
    );
    Ok(d.allowed)
}
