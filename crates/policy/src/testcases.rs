//! Policy tests: `*.tests.yaml` files next to the policies, each a list of requests with the
//! expected outcome. They run on every load (a failing test rejects the set) and with
//! `gatehouse policy test`.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::request::{Action, ContextInput, PolicyRequest, PrincipalInput, ResourceInput};
use crate::source::SourceFile;
use crate::{Decision, Policies, PolicyError};

/// What a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Permitted.
    Allow,
    /// Denied.
    Deny,
}

/// One test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What it checks, shown in the table.
    pub name: String,
    /// Who.
    pub principal: PrincipalInput,
    /// Does what.
    pub action: Action,
    /// To which item.
    pub resource: ResourceInput,
    /// In which circumstances (defaults: no arguments, 127.0.0.1, now).
    #[serde(default)]
    pub context: ContextInput,
    /// The expected outcome.
    pub expect: Expect,
    /// When given, the policies expected to decide (sorted or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<Vec<String>>,
}

impl TestCase {
    /// The request the case puts to the policies, with its arguments normalised as the
    /// gateway normalises a call's.
    pub fn request(&self) -> Result<PolicyRequest, crate::ArgumentsError> {
        let mut context = self.context.clone();
        context.arguments = crate::normalize_arguments(Some(&context.arguments))?;
        Ok(PolicyRequest {
            principal: self.principal.clone(),
            action: self.action,
            resource: self.resource.clone(),
            context,
        })
    }
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutcome {
    /// The file it came from.
    pub file: String,
    /// The case.
    pub case: TestCase,
    /// What the policies decided.
    pub decision: Decision,
}

impl TestOutcome {
    /// True when the decision is the expected one.
    pub fn passed(&self) -> bool {
        let by = self.case.decided_by.as_ref().is_none_or(|want| {
            let mut want = want.clone();
            want.sort();
            want == self.decision.policies
        });
        by && self.decision.allowed == (self.case.expect == Expect::Allow)
    }
}

/// Every outcome of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestReport {
    /// In file order.
    pub outcomes: Vec<TestOutcome>,
}

impl TestReport {
    /// Number of failed cases.
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| !o.passed()).count()
    }

    /// One line per failed case.
    pub fn failures(&self) -> String {
        let mut out = String::new();
        for o in self.outcomes.iter().filter(|o| !o.passed()) {
            let _ = write!(
                out,
                "  {}: {:?}: expected {}",
                o.file,
                o.case.name,
                word(o.case.expect == Expect::Allow)
            );
            if let Some(want) = &o.case.decided_by {
                let _ = write!(out, " by [{}]", want.join(", "));
            }
            let _ = writeln!(
                out,
                ", got {}{}",
                word(o.decision.allowed),
                detail(&o.decision)
            );
        }
        out
    }

    /// The whole run as a table.
    pub fn table(&self) -> String {
        let width = self
            .outcomes
            .iter()
            .map(|o| o.case.name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = format!(
            "{:<6} {:<width$} {:<8} {:<8} {}\n",
            "RESULT", "CASE", "EXPECTED", "GOT", "DECIDED BY"
        );
        for o in &self.outcomes {
            let _ = writeln!(
                out,
                "{:<6} {:<width$} {:<8} {:<8} {}",
                if o.passed() { "pass" } else { "FAIL" },
                o.case.name,
                word(o.case.expect == Expect::Allow),
                word(o.decision.allowed),
                by(&o.decision)
            );
        }
        let _ = writeln!(
            out,
            "{} passed, {} failed",
            self.outcomes.len() - self.failed(),
            self.failed()
        );
        out
    }
}

fn word(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

fn by(d: &Decision) -> String {
    if d.policies.is_empty() {
        d.reason.clone().unwrap_or_default()
    } else {
        d.policies.join(", ")
    }
}

fn detail(d: &Decision) -> String {
    let b = by(d);
    if b.is_empty() { b } else { format!(" ({b})") }
}

/// Parses a tests file.
pub fn parse(file: &SourceFile) -> Result<Vec<TestCase>, PolicyError> {
    if file.text.trim().is_empty() {
        return Ok(Vec::new());
    }
    gatehouse_config::load_yaml(&file.text, &file.path)
        .map_err(|e| PolicyError::TestFile(e.to_string()))
}

/// Runs every case of `files` against `policies`.
pub async fn run(policies: &Policies, files: &[SourceFile]) -> Result<TestReport, PolicyError> {
    let mut report = TestReport::default();
    for f in files {
        for case in parse(f)? {
            let decision = match case.request() {
                Ok(req) => policies.decide(&req).await,
                Err(e) => policies.refuse(e.to_string()),
            };
            report.outcomes.push(TestOutcome {
                file: f.name(),
                case,
                decision,
            });
        }
    }
    Ok(report)
}
