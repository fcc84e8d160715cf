//! The Policy Decision Point of Gatehouse.
//!
//! Every use of an item — `call_tool`, `read_resource`, `get_prompt`, `complete` — is put to
//! one [`Policies`] as a [`PolicyRequest`]: the same document for every engine. Cedar
//! (`cedar-policy`) and Rego (`regorus`) run in process; an external OPA can be asked over
//! its REST API. A policy set is loaded from files, validated (Cedar: strictly, against the
//! published schema [`GATEHOUSE_SCHEMA`]), tested against the `*.tests.yaml` cases next to it,
//! and identified by a content hash reported with every [`Decision`]. Default deny: a set
//! that permits nothing denies everything.
#![warn(missing_docs)]

mod cedar;
mod decision;
mod http;
mod rego;
mod request;
mod source;
mod testcases;
pub mod time;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_config::{PoliciesConfig, PolicyEngineKind};
use sha2::{Digest, Sha256};

pub use cedar::schema::GATEHOUSE_SCHEMA;
pub use decision::{Decision, Obligation, Verdict};
pub use request::{
    Action, ArgumentsError, ClientInput, ContextInput, ItemKind, MAX_ARGUMENT_DEPTH,
    MAX_ARGUMENT_NODES, PolicyRequest, PrincipalInput, PrincipalKind, ResourceInput,
    normalize_arguments,
};
pub use source::{SourceFile, Sources};
pub use testcases::{Expect, TestCase, TestOutcome, TestReport};

/// Default limit on one in-process decision.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// Default limit on one decision by an external OPA.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a policy set could not be loaded. Every variant names the file (and line where known).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A pattern in `policies.paths` matched nothing.
    #[error("policies.paths: {pattern:?} matches no file")]
    NoFiles {
        /// The pattern (absolute).
        pattern: String,
    },
    /// A pattern in `policies.paths` is not supported.
    #[error("policies.paths: {pattern:?}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// A policy does not parse.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// File name.
        file: String,
        /// 1-based line; 0 when unknown.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A Cedar schema fragment is invalid or clashes with the published schema.
    #[error("{file}:{line}: schema: {message}")]
    Schema {
        /// File name(s).
        file: String,
        /// 1-based line; 0 when unknown.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Cedar policies fail validation against the schema.
    #[error("policies fail schema validation:\n  {}", errors.join("\n  "))]
    Validation {
        /// One line per error: `file:line: policy id: message`.
        errors: Vec<String>,
    },
    /// A `*.tests.yaml` file is malformed.
    #[error("{0}")]
    TestFile(String),
    /// Test cases failed: the set would not decide as its tests expect.
    #[error("{} of {} policy tests failed:\n{}", report.failed(), report.outcomes.len(), report.failures())]
    TestsFailed {
        /// Every outcome.
        report: TestReport,
    },
    /// The `http` engine could not be set up.
    #[error("policies.url: {0}")]
    Http(String),
}

/// A cheap stamp of the files the policy set of `config` is made of: each one's path, size,
/// modification time and inode, read without opening them. A different stamp means a file
/// may have changed ([`fingerprint`] then decides); the same stamp almost always means none did.
pub fn stamp(config: &PoliciesConfig) -> u64 {
    source::stamp(&config.paths)
}

/// A hash of every file the policy set of `config` is made of (or of the reason they cannot be
/// read): it changes whenever a policy, schema or test file is edited, added or removed.
pub fn fingerprint(config: &PoliciesConfig) -> [u8; 32] {
    let ext = match config.engine {
        PolicyEngineKind::Cedar => "cedar",
        PolicyEngineKind::Rego | PolicyEngineKind::Http => "rego",
    };
    let mut hash = Sha256::new();
    match source::collect(&config.paths, ext) {
        Ok(sources) => {
            for f in sources.all() {
                hash.update(f.path.to_string_lossy().as_bytes());
                hash.update([0]);
                hash.update(&f.text);
                hash.update([0]);
            }
        }
        Err(e) => hash.update(e.to_string()),
    }
    hash.finalize().into()
}

/// Where one policy comes from and what it carries (for `policy explain` and decision logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Its id: `@id("…")`, else `<file>:<line>`.
    pub id: String,
    /// File name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// `permit` or `forbid`.
    pub effect: &'static str,
    /// Its `@reason("…")`, logged when it forbids.
    pub reason: Option<String>,
    /// Its `@redact("a,b")` as obligations.
    pub obligations: Vec<Obligation>,
}

/// A Policy Decision Point that decides in process, without I/O: Cedar and Rego implement it.
pub trait DecisionPoint: Send + Sync + std::fmt::Debug {
    /// The engine's name (`cedar`, `rego`).
    fn engine(&self) -> &'static str;
    /// Decides one request. Never fails: an error is a denial with its reason.
    fn decide(&self, req: &PolicyRequest) -> Verdict;
    /// Number of policies (Cedar) or modules (Rego).
    fn count(&self) -> usize;
    /// Where a policy comes from, for engines that name their policies.
    fn info(&self, _id: &str) -> Option<&PolicyInfo> {
        None
    }
    /// Every rule evaluated for `req` (`policy explain`), for engines that can show them.
    fn explain(&self, _req: &PolicyRequest) -> Option<Result<serde_json::Value, String>> {
        None
    }
}

#[derive(Debug)]
enum Engine {
    InProcess(Box<dyn DecisionPoint>),
    Http(http::HttpEngine),
}

/// A loaded, validated policy set: what decides every request while it is active.
#[derive(Debug)]
pub struct Policies {
    engine: Engine,
    version: Arc<str>,
    sources: Sources,
    /// Validation warnings worth showing at load.
    pub warnings: Vec<String>,
}

impl Policies {
    /// Reads, parses and validates the policy set of `config` (without running its tests).
    pub fn compile(config: &PoliciesConfig) -> Result<Policies, PolicyError> {
        let timeout = config.timeout.map(|t| t.get());
        let (engine, sources, warnings) = match config.engine {
            PolicyEngineKind::Cedar => {
                let sources = source::collect(&config.paths, "cedar")?;
                let engine = cedar::CedarEngine::load(&sources.policies, &sources.schemas)?;
                let warnings = engine.warnings.clone();
                (Engine::InProcess(Box::new(engine)), sources, warnings)
            }
            PolicyEngineKind::Rego => {
                let sources = source::collect(&config.paths, "rego")?;
                let engine =
                    rego::RegoEngine::load(&sources.policies, timeout.unwrap_or(DEFAULT_TIMEOUT))?;
                (Engine::InProcess(Box::new(engine)), sources, Vec::new())
            }
            PolicyEngineKind::Http => {
                let sources = source::collect(&config.paths, "rego")?;
                let url = config.url.clone().unwrap_or_default();
                let engine = http::HttpEngine::new(&url, timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT))?;
                (Engine::Http(engine), sources, Vec::new())
            }
        };
        let mut hash = Sha256::new();
        hash.update(config.engine.as_str());
        if let Some(u) = &config.url {
            hash.update(u);
        }
        for f in sources.all() {
            hash.update(f.name());
            hash.update([0]);
            hash.update(&f.text);
            hash.update([0]);
        }
        let digest = hash.finalize();
        let version: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Policies {
            engine,
            version: version.into(),
            sources,
            warnings,
        })
    }

    /// Compiles the set and runs its tests; a failing test rejects the set.
    pub async fn load(config: &PoliciesConfig) -> Result<Policies, PolicyError> {
        let policies = Policies::compile(config)?;
        let report = policies.run_tests().await?;
        if report.failed() > 0 {
            return Err(PolicyError::TestsFailed { report });
        }
        Ok(policies)
    }

    /// Runs the `*.tests.yaml` cases of the set.
    pub async fn run_tests(&self) -> Result<TestReport, PolicyError> {
        testcases::run(self, &self.sources.tests).await
    }

    /// The content hash of the set (policy, schema and test files).
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    /// The engine's name.
    pub fn engine_name(&self) -> &'static str {
        match &self.engine {
            Engine::InProcess(e) => e.engine(),
            Engine::Http(_) => "http",
        }
    }

    /// Number of policies (Cedar) or modules (Rego); 0 for an external OPA.
    pub fn len(&self) -> usize {
        match &self.engine {
            Engine::InProcess(e) => e.count(),
            Engine::Http(_) => 0,
        }
    }

    /// True when the set holds no policy (it denies everything).
    pub fn is_empty(&self) -> bool {
        !matches!(self.engine, Engine::Http(_)) && self.len() == 0
    }

    /// Decides one request.
    pub async fn decide(&self, req: &PolicyRequest) -> Decision {
        let start = Instant::now();
        let verdict = match &self.engine {
            Engine::InProcess(e) => e.decide(req),
            Engine::Http(e) => e.decide(req).await,
        };
        self.finish(verdict, start)
    }

    /// Decides one request in process; `None` for an external engine.
    pub fn decide_now(&self, req: &PolicyRequest) -> Option<Decision> {
        let start = Instant::now();
        let verdict = match &self.engine {
            Engine::InProcess(e) => e.decide(req),
            Engine::Http(_) => return None,
        };
        Some(self.finish(verdict, start))
    }

    /// A denial that never reached an engine (for example, arguments too large to evaluate),
    /// stamped like any other decision.
    pub fn refuse(&self, reason: impl Into<String>) -> Decision {
        self.finish(Verdict::deny(reason), Instant::now())
    }

    fn finish(&self, v: Verdict, start: Instant) -> Decision {
        Decision {
            allowed: v.allowed,
            policies: v.policies,
            reason: v.reason,
            obligations: v.obligations,
            version: self.version.clone(),
            engine: self.engine_name(),
            latency: start.elapsed(),
        }
    }

    /// Where a Cedar policy comes from.
    pub fn policy_info(&self, id: &str) -> Option<&PolicyInfo> {
        match &self.engine {
            Engine::InProcess(e) => e.info(id),
            _ => None,
        }
    }

    /// For Rego, every rule of `package gatehouse` as evaluated for `req`.
    pub fn rego_rules(&self, req: &PolicyRequest) -> Option<Result<serde_json::Value, String>> {
        match &self.engine {
            Engine::InProcess(e) => e.explain(req),
            _ => None,
        }
    }
}

/// The 1-based line of a diagnostic's first label in `text`, 0 without one.
pub(crate) fn diagnostic_line(d: &dyn miette::Diagnostic, text: &str) -> usize {
    d.labels()
        .and_then(|mut l| l.next())
        .map_or(0, |l| source::position(text, l.offset()).0)
}

/// A diagnostic's message with its help, on one line.
pub(crate) fn diagnostic_message(d: &dyn miette::Diagnostic) -> String {
    let mut msg = d.to_string();
    let mut source = std::error::Error::source(d);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !msg.contains(&s_text) {
            msg.push_str(": ");
            msg.push_str(&s_text);
        }
        source = s.source();
    }
    if let Some(help) = d.help() {
        msg.push_str(&format!(" (help: {help})"));
    }
    msg
}
