//! The Rego engine (`regorus`): the decision is `data.gatehouse.allow`; optional rules
//! `data.gatehouse.decided_by` (a set of strings) and `data.gatehouse.obligations` (a set of
//! `{kind, target}` objects) enrich it.

use std::num::NonZeroU32;
use std::time::Duration;

use regorus::Engine;
use regorus::utils::limits::ExecutionTimerConfig;

use crate::PolicyError;
use crate::decision::{Obligation, Verdict};
use crate::request::PolicyRequest;
use crate::source::SourceFile;

const ALLOW: &str = "data.gatehouse.allow";
const DECIDED_BY: &str = "data.gatehouse.decided_by";
const OBLIGATIONS: &str = "data.gatehouse.obligations";

/// Loaded Rego modules, prepared once and cloned per decision (clones share the compiled
/// policy).
#[derive(Debug)]
pub struct RegoEngine {
    base: Engine,
    timer: ExecutionTimerConfig,
    has_decided_by: bool,
    has_obligations: bool,
    modules: usize,
}

impl RegoEngine {
    /// Parses `files` (Rego v1) and checks that they define `data.gatehouse.allow`.
    pub fn load(files: &[SourceFile], timeout: Duration) -> Result<RegoEngine, PolicyError> {
        let mut base = Engine::new();
        base.set_strict_builtin_errors(false);
        let timer = ExecutionTimerConfig {
            limit: timeout,
            check_interval: NonZeroU32::new(64).expect("non-zero"),
        };
        base.set_execution_timer_config(timer);
        for f in files {
            base.add_policy(f.path.display().to_string(), f.text.clone())
                .map_err(|e| rego_error(f, &e))?;
        }
        base.set_input(regorus::Value::new_object());
        match base.eval_rule(ALLOW.to_string()) {
            Ok(_) => {}
            // The rule exists; an empty input is just costly for it (requests hit the limit).
            Err(e) if e.to_string().contains("time limit") => {}
            Err(e) => {
                let msg = e.to_string();
                return Err(PolicyError::Syntax {
                    file: files.first().map_or_else(String::new, SourceFile::name),
                    line: 0,
                    message: if msg.contains("not a valid rule path") || msg.contains("not found") {
                        "no rule data.gatehouse.allow: write `package gatehouse` with an `allow` rule (default deny: `default allow := false`)".into()
                    } else {
                        format!("evaluating data.gatehouse.allow on an empty input failed: {msg}")
                    },
                });
            }
        }
        let has_decided_by = base.eval_rule(DECIDED_BY.to_string()).is_ok();
        let has_obligations = base.eval_rule(OBLIGATIONS.to_string()).is_ok();
        Ok(RegoEngine {
            base,
            timer,
            has_decided_by,
            has_obligations,
            modules: files.len(),
        })
    }

    fn engine_for(&self, req: &PolicyRequest) -> Result<Engine, String> {
        let mut engine = self.base.clone();
        engine.set_execution_timer_config(self.timer);
        let input = serde_json::to_value(req).map_err(|e| e.to_string())?;
        engine.set_input(regorus::Value::from(input));
        Ok(engine)
    }

    /// Decides `req`; an evaluation error or the time limit denies with the reason.
    fn decide_inner(&self, req: &PolicyRequest) -> Verdict {
        let mut engine = match self.engine_for(req) {
            Ok(e) => e,
            Err(e) => return Verdict::deny(format!("request cannot be evaluated: {e}")),
        };
        let allowed = match engine.eval_rule(ALLOW.to_string()) {
            Ok(regorus::Value::Bool(b)) => b,
            Ok(regorus::Value::Undefined) => false,
            Ok(other) => {
                return Verdict::deny(format!(
                    "data.gatehouse.allow is {other}, not a boolean; denied"
                ));
            }
            Err(e) => return Verdict::deny(format!("policy evaluation failed: {e}")),
        };
        let mut policies = Vec::new();
        if self.has_decided_by
            && let Ok(v) = engine.eval_rule(DECIDED_BY.to_string())
            && let Ok(list) =
                serde_json::from_str::<Vec<String>>(&v.to_json_str().unwrap_or_default())
        {
            policies = list;
            policies.sort();
        }
        let mut obligations = Vec::new();
        if allowed
            && self.has_obligations
            && let Ok(v) = engine.eval_rule(OBLIGATIONS.to_string())
            && let Ok(list) =
                serde_json::from_str::<Vec<Obligation>>(&v.to_json_str().unwrap_or_default())
        {
            obligations = list;
            obligations.sort_by(|a, b| (&a.kind, &a.target).cmp(&(&b.kind, &b.target)));
            obligations.dedup();
        }
        Verdict {
            allowed,
            reason: (!allowed).then(|| {
                if policies.is_empty() {
                    "data.gatehouse.allow is not true (default deny)".to_string()
                } else {
                    format!("denied by {}", policies.join(", "))
                }
            }),
            policies,
            obligations,
        }
    }

    /// Every rule of `package gatehouse` as evaluated for `req` (for `policy explain`).
    fn explain_inner(&self, req: &PolicyRequest) -> Result<serde_json::Value, String> {
        let mut engine = self.engine_for(req)?;
        let results = engine
            .eval_query("data.gatehouse".to_string(), false)
            .map_err(|e| e.to_string())?;
        let value = results
            .result
            .first()
            .and_then(|r| r.expressions.first())
            .map(|e| e.value.clone())
            .unwrap_or(regorus::Value::Undefined);
        serde_json::from_str(&value.to_json_str().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())
    }
}

impl crate::DecisionPoint for RegoEngine {
    fn engine(&self) -> &'static str {
        "rego"
    }

    fn decide(&self, req: &PolicyRequest) -> Verdict {
        self.decide_inner(req)
    }

    fn count(&self) -> usize {
        self.modules
    }

    fn explain(&self, req: &PolicyRequest) -> Option<Result<serde_json::Value, String>> {
        Some(self.explain_inner(req))
    }
}

fn rego_error(f: &SourceFile, e: &dyn std::fmt::Display) -> PolicyError {
    let text = e.to_string();
    // regorus reports `<file>:<line>:<col>: error: …`.
    let line = text
        .split(':')
        .skip_while(|part| !f.path.display().to_string().ends_with(part.trim()))
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    PolicyError::Syntax {
        file: f.name(),
        line,
        message: text,
    }
}
