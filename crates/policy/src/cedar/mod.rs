//! The Cedar engine: policies validated against Gatehouse's schema, indexed by scope so a
//! decision evaluates only the policies that can apply to its action and item.

mod index;
mod request;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Effect, Policy, PolicyId, PolicySet, Schema,
    ValidationMode, Validator,
};

use crate::decision::{Obligation, Verdict};
use crate::request::PolicyRequest;
use crate::source::SourceFile;
use crate::{PolicyError, PolicyInfo};

pub use request::Names;

/// Loaded, validated Cedar policies.
#[derive(Debug)]
pub struct CedarEngine {
    policies: Vec<Policy>,
    info: HashMap<PolicyId, Arc<PolicyInfo>>,
    index: index::ScopeIndex,
    names: Names,
    authorizer: Authorizer,
    /// The attribute names the policies can read (others are not built).
    reads: request::Reads,
    extensions: request::ExtensionValues,
    entities: request::EntityCache,
    /// Validation warnings, for the load report.
    pub warnings: Vec<String>,
}

impl CedarEngine {
    /// Parses `files`, gives each policy its id (`@id("…")` or `<file>:<line>`), and validates
    /// the set against the published schema extended by `schemas`.
    pub fn load(files: &[SourceFile], schemas: &[SourceFile]) -> Result<CedarEngine, PolicyError> {
        let schema = schema::build(schemas)?;
        let mut set = PolicySet::new();
        let mut info = HashMap::new();
        let mut origin: HashMap<PolicyId, &SourceFile> = HashMap::new();
        for file in files {
            let parsed: PolicySet = file.text.parse().map_err(|e| PolicyError::Syntax {
                file: file.name(),
                line: crate::diagnostic_line(&e, &file.text),
                message: crate::diagnostic_message(&e),
            })?;
            if parsed.templates().next().is_some() {
                return Err(PolicyError::Syntax {
                    file: file.name(),
                    line: 0,
                    message: "templates (?principal / ?resource slots) are not supported; write static policies".into(),
                });
            }
            let mut ordered: Vec<&Policy> = parsed.policies().collect();
            ordered.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(0)
            });
            let mut cursor = 0;
            for policy in ordered {
                let text = policy.to_string();
                let offset = file.text[cursor..]
                    .find(text.as_str())
                    .map_or(cursor, |o| cursor + o);
                cursor = offset + text.len().min(file.text.len() - offset);
                let (line, _) = file.position(offset);
                let id = match policy.annotation("id") {
                    Some(id) => id.to_string(),
                    None => format!("{}:{line}", file.name()),
                };
                let pid = PolicyId::new(&id);
                if let Some(other) = origin.get(&pid) {
                    return Err(PolicyError::Syntax {
                        file: file.name(),
                        line,
                        message: format!(
                            "policy id {id:?} is also used in {}; ids must be unique",
                            other.name()
                        ),
                    });
                }
                let obligations = policy
                    .annotation("redact")
                    .into_iter()
                    .flat_map(|v| v.split(','))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| Obligation {
                        kind: "redact".into(),
                        target: t.to_string(),
                    })
                    .collect();
                info.insert(
                    pid.clone(),
                    Arc::new(PolicyInfo {
                        id: id.clone(),
                        file: file.name(),
                        line,
                        effect: match policy.effect() {
                            Effect::Permit => "permit",
                            Effect::Forbid => "forbid",
                        },
                        reason: policy.annotation("reason").map(str::to_string),
                        obligations,
                    }),
                );
                origin.insert(pid.clone(), file);
                set.add(policy.new_id(pid))
                    .map_err(|e| PolicyError::Syntax {
                        file: file.name(),
                        line,
                        message: e.to_string(),
                    })?;
            }
        }
        let warnings = validate(&schema, &set, &origin)?;
        let policies: Vec<Policy> = set.policies().cloned().collect();
        let names = Names::default();
        let texts: Vec<String> = policies.iter().map(ToString::to_string).collect();
        let reads = request::Reads::of(texts.iter().map(String::as_str));
        Ok(CedarEngine {
            index: index::ScopeIndex::build(&policies, &names),
            policies,
            info,
            names,
            authorizer: Authorizer::new(),
            reads,
            extensions: request::ExtensionValues::default(),
            entities: request::EntityCache::default(),
            warnings,
        })
    }

    /// Decides `req`. Denies when the request cannot be built, and when a `forbid` policy
    /// fails to evaluate (Cedar skips erroring policies; for a forbid that would fail open).
    fn decide_inner(&self, req: &PolicyRequest) -> Verdict {
        let prepared = match request::prepare(&self.names, req, &self.reads, &self.entities) {
            Ok(p) => p,
            Err(e) => return Verdict::deny(format!("request cannot be evaluated: {e}")),
        };
        let key = request::context_key(req, &self.reads);
        if let Some(k) = &key
            && let Some(v) = prepared.verdict(req.action, k)
        {
            return v;
        }
        let request = match request::request(
            &self.names,
            req,
            &self.reads,
            &self.extensions,
            &prepared,
            key.as_deref(),
        ) {
            Ok(r) => r,
            Err(e) => return Verdict::deny(format!("request cannot be evaluated: {e}")),
        };
        let slice = prepared.slices[req.action.index()]
            .get_or_init(|| self.index.slice(&self.policies, &self.names, req));
        let response = self
            .authorizer
            .is_authorized(&request, slice, &prepared.entities);
        let verdict = self.verdict(&response);
        if let Some(k) = key {
            prepared.remember(req.action, k, &verdict);
        }
        verdict
    }

    fn verdict(&self, response: &cedar_policy::Response) -> Verdict {
        let diagnostics = response.diagnostics();
        let failed_forbid = diagnostics.errors().find_map(|e| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
            self.info
                .get(e.policy_id())
                .filter(|i| i.effect == "forbid")
                .map(|i| (i.id.clone(), e.to_string()))
        });
        if let Some((id, e)) = failed_forbid {
            return Verdict {
                allowed: false,
                reason: Some(format!(
                    "forbid policy {id} failed to evaluate, so the request is denied: {e}"
                )),
                policies: vec![id],
                obligations: Vec::new(),
            };
        }
        let mut policies: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
        policies.sort();
        let allowed = response.decision() == CedarDecision::Allow;
        let obligations = if allowed {
            let mut o: Vec<Obligation> = policies
                .iter()
                .filter_map(|id| self.info.get(&PolicyId::new(id)))
                .flat_map(|i| i.obligations.iter().cloned())
                .collect();
            o.sort_by(|a, b| (&a.kind, &a.target).cmp(&(&b.kind, &b.target)));
            o.dedup();
            o
        } else {
            Vec::new()
        };
        let reason = if allowed {
            None
        } else if policies.is_empty() {
            let errors: Vec<String> = diagnostics.errors().map(ToString::to_string).collect();
            Some(if errors.is_empty() {
                "no policy permits this request (default deny)".to_string()
            } else {
                format!(
                    "no policy permits this request; policies that failed to evaluate: {}",
                    errors.join("; ")
                )
            })
        } else {
            let reasons: Vec<&str> = policies
                .iter()
                .filter_map(|id| self.info.get(&PolicyId::new(id))?.reason.as_deref())
                .collect();
            Some(if reasons.is_empty() {
                format!("forbidden by {}", policies.join(", "))
            } else {
                reasons.join("; ")
            })
        };
        Verdict {
            allowed,
            policies,
            reason,
            obligations,
        }
    }
}

impl crate::DecisionPoint for CedarEngine {
    fn engine(&self) -> &'static str {
        "cedar"
    }

    fn decide(&self, req: &PolicyRequest) -> Verdict {
        self.decide_inner(req)
    }

    fn count(&self) -> usize {
        self.policies.len()
    }

    fn info(&self, id: &str) -> Option<&PolicyInfo> {
        self.info.get(&PolicyId::new(id)).map(|i| &**i)
    }
}

/// Strict validation against the schema; every error of every policy is reported, each with
/// its file and line.
fn validate(
    schema: &Schema,
    set: &PolicySet,
    origin: &HashMap<PolicyId, &SourceFile>,
) -> Result<Vec<String>, PolicyError> {
    let result = Validator::new(schema.clone()).validate(set, ValidationMode::Strict);
    let locate = |id: &PolicyId, d: &dyn miette::Diagnostic| -> String {
        match origin.get(id) {
            Some(f) => {
                let line = d
                    .labels()
                    .and_then(|mut l| l.next())
                    .map_or(0, |l| f.position(l.offset()).0);
                format!(
                    "{}:{line}: policy {id}: {}",
                    f.name(),
                    crate::diagnostic_message(d)
                )
            }
            None => format!("policy {id}: {}", crate::diagnostic_message(d)),
        }
    };
    let mut errors: Vec<String> = result
        .validation_errors()
        .map(|e| locate(e.policy_id(), e))
        .collect();
    // A policy that can never apply is a mistake, not a style issue — typically it reads an
    // argument the deployment did not declare, guarded by `has`, which is then always false.
    let (impossible, warnings): (Vec<_>, Vec<_>) = result
        .validation_warnings()
        .partition(|w| matches!(w, cedar_policy::ValidationWarning::ImpossiblePolicy(_)));
    errors.extend(impossible.into_iter().map(|w| {
        format!(
            "{} (does it read an argument that no *.cedarschema declares in Gatehouse::Arguments?)",
            locate(w.policy_id(), w)
        )
    }));
    if !errors.is_empty() {
        return Err(PolicyError::Validation { errors });
    }
    Ok(warnings
        .into_iter()
        .map(|w| locate(w.policy_id(), w))
        .collect())
}
